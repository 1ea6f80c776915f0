"""Subject rights and compliance: ``POST /v1/subjects/report`` (investigator; the raw id only in
the body, turned into its reference here) and ``POST /v1/compliance/report`` (auditor; signed
with the checkpoint key). Both answer the report's JSON form; the client renders documents
from it. Each is recorded in the access log (the subject report with the person as subject, so
their next report shows it)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from trail.api.deps import note, permission, services
from trail.api.responses import JsonResponse, ok
from trail.errors import ValidationError
from trail.rights.subject_report import build_subject_report, period_of

router = APIRouter(tags=["rights"])


class SubjectReportIn(BaseModel):
    subject_id: str = Field(..., min_length=1, max_length=256, description="the person's raw id")
    purpose: str | None = Field(None, max_length=1024, description="why the report is made (required)")
    from_: str | None = Field(None, alias="from", description="2026-11-01 or RFC 3339; default: the beginning")
    to: str | None = Field(None, description="2026-12-01 or RFC 3339 (exclusive); default: now")


def require_purpose(text: str | None) -> str:
    purpose = (text or "").strip()
    if len(purpose) < 3:
        raise ValidationError("purpose", "state why this report is made (kept in the access log); required")
    return purpose


@router.post(
    "/v1/subjects/report",
    response_class=JsonResponse,
    openapi_extra=permission("subjects.report"),
    summary="One person's subject report (PIPL Art. 45) by raw id, with a stated purpose",
)
def subject_report(request: Request, body: SubjectReportIn) -> JsonResponse:
    svc = services(request)
    n = note(request, "subject_report")
    n.subject_ids = [body.subject_id]
    n.purpose = require_purpose(body.purpose)
    n.action = "query"
    report = build_subject_report(
        svc.backend.store,
        svc.backend.subject_ref(body.subject_id),
        period_of(body.from_, body.to),
        show_staff=svc.settings.report_staff_ids == "yes",
    )
    n.rows = len(report["events"])
    return ok(report)
