"""Subject rights and compliance: ``POST /v1/subjects/report`` (investigator; the raw id only in
the body, turned into its reference here) and ``POST /v1/compliance/report`` (auditor; signed
with the checkpoint key). Both answer the report's JSON form; the client renders documents
from it. Each is recorded in the access log (the subject report with the person as subject, so
their next report shows it)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from trail.api.deps import note, permission, principal, services
from trail.api.responses import JsonResponse, ok
from trail.config import Settings
from trail.detect.alerts import alert_row
from trail.detect.retention_overdue import check_retention
from trail.errors import ValidationError
from trail.integrity.keys import checkpoint_signing_key
from trail.rights.compliance import build_compliance_report, sign
from trail.rights.request_service import RequestService
from trail.rights.subject_report import build_subject_report, parse_bound, period_of
from trail.storage.alerts import insert_alerts

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


class PeriodIn(BaseModel):
    from_: str = Field(..., alias="from", description="2026-11-01 or RFC 3339")
    to: str = Field(..., description="2026-12-01 or RFC 3339 (exclusive)")


def compliance_report(
    backend: Any, incidents: Any, settings: Settings, start: str, end: str, requests: RequestService | None = None
) -> dict[str, Any]:
    """The signed compliance report over the store of ``backend`` (the API's or the data directory's)."""
    period = period_of(start, end)
    if period.start is None or period.end is None:
        raise ValidationError("from", "a compliance report covers a period: give --from and --to")
    verified = backend.verify(None, False)
    cps = backend.checkpoints(1)
    views = [incidents.service.view(s["ref"]) for s in incidents.summaries()] if incidents is not None else []
    report = build_compliance_report(
        backend.store,
        period,
        verify=verified["summary"],
        checkpoint=cps[-1] if cps else None,
        incidents=views,
        requests=requests.summary(period.start, period.end) if requests is not None else None,
    )
    return sign(report, checkpoint_signing_key(settings))


@router.post(
    "/v1/compliance/report",
    response_class=JsonResponse,
    openapi_extra=permission("compliance.report"),
    summary="The signed compliance report over a period (auditor)",
)
def compliance(request: Request, body: PeriodIn) -> JsonResponse:
    svc = services(request)
    n = note(request, "compliance_report")
    n.action = "query"
    n.purpose = "compliance report"
    report = compliance_report(
        svc.backend, svc.incidents, svc.settings, body.from_, body.to, requests=request_service(request)
    )
    n.rows = int(report["events_total"]["events"])
    return ok(report)


# ------------------------------------------------------------------ requests (PIPL Art. 50)
_REQUESTS_LOCK = threading.Lock()


def request_service(request: Request) -> RequestService:
    """The request store of this API process, opened on first use."""
    state = request.app.state
    with _REQUESTS_LOCK:
        svc = getattr(state, "requests", None)
        if svc is None:
            s = services(request)
            svc = state.requests = RequestService.from_settings(s.settings, s.backend.store)
    assert isinstance(svc, RequestService)
    return svc


class RequestIn(BaseModel):
    kind: str = Field(..., description="access, copy, correction, deletion, consent_withdrawal, portability")
    subject_id: str = Field(..., min_length=1, max_length=256, description="the person's raw id")
    received_at: str | None = Field(None, description="RFC 3339; default: now")
    channel: str = Field("", max_length=200)
    note: str = Field("", max_length=2000)


class RespondIn(BaseModel):
    summary: str = Field(..., max_length=2000)
    documents: list[str] = Field(default_factory=list, max_length=50)


class RefuseIn(BaseModel):
    reason: str | None = Field(None, max_length=2000)


class CloseIn(BaseModel):
    outcome: str = Field(..., description="done, partial, withdrawn")
    note: str = Field("", max_length=2000)


@router.post(
    "/v1/requests",
    response_class=JsonResponse,
    openapi_extra=permission("requests.change"),
    summary="Record an individual's request; its clock starts when it was received",
)
def open_request(request: Request, body: RequestIn) -> JsonResponse:
    n = note(request, "requests")
    n.subject_ids = [body.subject_id]
    ref = services(request).backend.subject_ref(body.subject_id)
    out = request_service(request).open(
        kind=body.kind,
        subject_ref=ref,
        by=principal(request).name,
        received_at=body.received_at,
        channel=body.channel,
        note=body.note,
    )
    n.rows, n.attributes["request"] = 1, out["ref"]
    return ok({"request": out}, 201)


@router.get("/v1/requests", response_class=JsonResponse, openapi_extra=permission("requests.read"), summary="Requests")
def list_requests(request: Request, status: str | None = None) -> JsonResponse:
    rows = request_service(request).list(status)
    note(request, "requests").rows = len(rows)
    return ok({"requests": rows})


@router.get(
    "/v1/requests/{ref}", response_class=JsonResponse, openapi_extra=permission("requests.read"), summary="A request"
)
def show_request(request: Request, ref: str) -> JsonResponse:
    n = note(request, "requests")
    n.attributes["request"] = ref[:32]
    out = request_service(request).view(ref)
    n.rows = 1
    return ok({"request": out})


@router.post(
    "/v1/requests/{ref}/respond",
    response_class=JsonResponse,
    openapi_extra=permission("requests.change"),
    summary="Record the answer and the documents handed over",
)
def respond_request(request: Request, ref: str, body: RespondIn) -> JsonResponse:
    note(request, "requests").attributes["request"] = ref[:32]
    return ok(
        {"request": request_service(request).respond(ref, body.summary, body.documents, by=principal(request).name)}
    )


@router.post(
    "/v1/requests/{ref}/refuse",
    response_class=JsonResponse,
    openapi_extra=permission("requests.change"),
    summary="Refuse a request, with its reason (required)",
)
def refuse_request(request: Request, ref: str, body: RefuseIn) -> JsonResponse:
    note(request, "requests").attributes["request"] = ref[:32]
    return ok({"request": request_service(request).refuse(ref, body.reason or "", by=principal(request).name)})


@router.post(
    "/v1/requests/{ref}/close",
    response_class=JsonResponse,
    openapi_extra=permission("requests.change"),
    summary="Close a request with its outcome",
)
def close_request(request: Request, ref: str, body: CloseIn) -> JsonResponse:
    note(request, "requests").attributes["request"] = ref[:32]
    return ok({"request": request_service(request).close(ref, body.outcome, body.note, by=principal(request).name)})


# ------------------------------------------------------------------ retention classes
@router.get(
    "/v1/retention/plan",
    response_class=JsonResponse,
    openapi_extra=permission("retention.read"),
    summary="What a retention would expire, and what keeps the rest (classes, holds, floor)",
)
def retention_plan(request: Request, before: str | None = None) -> JsonResponse:
    n = note(request, "retention")
    out = services(request).retention.plan(parse_bound("before", before) if before else None)
    n.rows = len(out["checkpoints"])
    return ok(out)


@router.post(
    "/v1/retention/check",
    response_class=JsonResponse,
    openapi_extra=permission("retention.read"),
    summary="Run retention_overdue over the declared datasets; alerts go to the review queue",
)
def retention_check(request: Request) -> JsonResponse:
    svc = services(request)
    n = note(request, "retention")
    n.action = "query"
    alerts = run_retention_check(svc.backend.store, svc.retention.policy)
    n.rows = len(alerts)
    return ok({"alerts": alerts, "datasets": len(svc.retention.policy.datasets)})


def run_retention_check(store: Any, policy: Any) -> list[dict[str, Any]]:
    """The retention_overdue alerts of today, written to the alerts table (idempotent per day)."""
    found = check_retention(store, [(d.system, d.dataset, d.days, d.source) for d in policy.datasets])
    if found:
        insert_alerts(store, [alert_row(a) for a in found])
    return [a.public() for a in found]
