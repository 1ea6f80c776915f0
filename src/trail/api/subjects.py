"""``POST /v1/subjects/events``: one person's history by their raw id, for investigators.

The raw id travels only in the body (never in a URL) and is turned into its reference here,
with the organisation's key: clients do not hold it. Every lookup states a purpose, is refused
without one, and is recorded in the access log with the person as subject (so their own
report shows that they were looked up).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from trail.api.deps import filters, note, permission, services
from trail.api.responses import JsonResponse, ok
from trail.errors import ValidationError

router = APIRouter(tags=["subjects"])


class SubjectLookup(BaseModel):
    subject_id: str = Field(..., min_length=1, max_length=256, description="the person's raw id")
    purpose: str | None = Field(None, max_length=1024, description="why this person is looked up (required)")
    since: str | None = None
    until: str | None = None
    action: str | None = None
    category: str | None = None
    destination: str | None = None
    limit: int = Field(100, ge=1, le=10_000)


@router.post(
    "/v1/subjects/events",
    response_class=JsonResponse,
    openapi_extra=permission("subjects.lookup"),
    summary="One person's history by raw id, with a stated purpose",
)
def subject_events(request: Request, body: SubjectLookup) -> JsonResponse:
    svc = services(request)
    n = note(request, "subjects")
    n.subject_ids = [body.subject_id]
    purpose = (body.purpose or "").strip()
    if len(purpose) < 3:
        raise ValidationError("purpose", "state why you look this person up (kept in the access log); required")
    n.purpose = purpose
    f = filters(body.since, body.until, body.action, body.category, body.limit, body.destination)
    rows = svc.backend.query("subject", svc.backend.subject_ref(body.subject_id), f)
    n.rows = len(rows)
    return ok({"events": rows})
