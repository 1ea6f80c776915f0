"""Retention, for admins: a request, a second admin's approval, then the deletion (and each of
the three is in the access log); refused under the floor or over a legal hold."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from trail.api.deps import note, permission, principal, services
from trail.api.responses import JsonResponse, ok
from trail.events.model import parse_timestamp

router = APIRouter(tags=["retention"])


class RetentionIn(BaseModel):
    before: str = Field(..., description="RFC 3339: expire the checkpoints sealed before this time, whole")
    reason: str = Field(..., min_length=1, max_length=1000)


@router.get(
    "/v1/retention", response_class=JsonResponse, openapi_extra=permission("retention.read"), summary="Requests"
)
def requests(request: Request) -> JsonResponse:
    rows = services(request).access.retention_requests()
    note(request, "retention").rows = len(rows)
    return ok({"requests": rows})


@router.post(
    "/v1/retention",
    response_class=JsonResponse,
    openapi_extra=permission("retention.change"),
    summary="Request a retention (a second admin approves it)",
)
def request_retention(request: Request, body: RetentionIn) -> JsonResponse:
    n = note(request, "retention")
    req = services(request).retention.request(
        parse_timestamp("before", body.before), body.reason, by=principal(request).name
    )
    n.rows, n.attributes["retention_request"] = 1, str(req["id"])
    return ok({"request": req}, 201)


@router.post(
    "/v1/retention/{request_id}/approve",
    response_class=JsonResponse,
    openapi_extra=permission("retention.change"),
    summary="Approve another admin's request; the expiry runs now",
)
def approve(request: Request, request_id: str) -> JsonResponse:
    n = note(request, "retention")
    n.attributes["retention_request"] = request_id[:64]
    out = services(request).retention.approve(request_id, by=principal(request).name)
    n.action = "delete"
    n.rows = int(out.get("events", 0))
    return ok(out)
