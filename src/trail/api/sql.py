"""``POST /v1/sql``: read-only SQL over the trail's tables for analysts (see trail.access.sql)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from trail.access.sql import query_digest
from trail.api.deps import note, permission, services
from trail.api.responses import JsonResponse, ok

router = APIRouter(tags=["sql"])


class SqlQuery(BaseModel):
    query: str = Field(..., min_length=1, max_length=20_000, description="one SELECT over trail's tables")


@router.post("/v1/sql", response_class=JsonResponse, openapi_extra=permission("sql.query"), summary="Read-only SQL")
def run_sql(request: Request, body: SqlQuery) -> JsonResponse:
    n = note(request, "sql")
    n.attributes["sql"] = body.query[:1000]
    n.attributes["sql_sha256"] = query_digest(body.query)
    result = services(request).sql.run(body.query)
    n.rows = len(result.rows)
    return ok(result.as_dict())
