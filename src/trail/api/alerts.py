"""Alerts, for analysts: the review queue and reviews (the reviewer is the principal)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from trail.api.deps import acting_as, note, permission, services
from trail.api.responses import JsonResponse, ok
from trail.detect.review import get_alert, list_alerts, review_alert
from trail.events.model import parse_timestamp

router = APIRouter(tags=["alerts"])


@router.get("/v1/alerts", response_class=JsonResponse, openapi_extra=permission("alerts.read"), summary="Alerts")
def alerts(
    request: Request,
    status: str | None = None,
    rule: str | None = None,
    severity: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    limit: int = Query(100, ge=1, le=100_000),
) -> JsonResponse:
    found = list_alerts(
        services(request).alerts,
        status=status,
        rule=rule,
        severity=severity,
        actor=actor,
        since=parse_timestamp("since", since) if since else None,
        limit=limit,
    )
    note(request, "alerts").rows = len(found)
    return ok({"alerts": [a.public() for a in found]})


@router.get(
    "/v1/alerts/{alert_id}", response_class=JsonResponse, openapi_extra=permission("alerts.read"), summary="One alert"
)
def alert(request: Request, alert_id: str) -> JsonResponse:
    n = note(request, "alerts")
    n.attributes["alert_id"] = alert_id[:64]
    a = get_alert(services(request).alerts, alert_id)
    n.rows = 1
    return ok(a.public())


class Review(BaseModel):
    decision: Literal["ack", "dismiss"]
    reason: str = Field(..., min_length=1, max_length=1000)
    reviewer: str | None = Field(None, description="only the local principal names the reviewer it acts for")


@router.post(
    "/v1/alerts/{alert_id}/review",
    response_class=JsonResponse,
    openapi_extra=permission("alerts.review"),
    summary="Acknowledge or dismiss an alert",
)
def review(request: Request, alert_id: str, body: Review) -> JsonResponse:
    svc = services(request)
    n = note(request, "alerts")
    n.attributes["alert_id"] = alert_id[:64]
    reviewer = acting_as(request, body.reviewer, "reviewer")
    a = review_alert(svc.alerts, svc.backend.client, alert_id, body.decision, reviewer=reviewer, reason=body.reason)
    n.rows = 1
    return ok({"alert_id": a.alert_id, "status": a.status, "reviewer": a.reviewer})
