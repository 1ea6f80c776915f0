"""``GET /v1/health``: liveness and the state of the parts; open, unaudited, no trail data."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from trail.api.deps import services
from trail.api.responses import JsonResponse, ok
from trail.metrics import REGISTRY

router = APIRouter(tags=["health"])


@router.get("/v1/health", response_class=JsonResponse, summary="Liveness (open, unaudited)")
def health(request: Request) -> JsonResponse:
    svc = services(request)
    out = svc.backend.health()
    out["access_log"] = {"recorded": svc.recorder.recorded, "failed": svc.recorder.failed}
    return ok(out)


@router.get(
    "/metrics",
    response_class=Response,
    include_in_schema=False,  # operations, not the API: documented in trail.metrics and the README
    summary="Prometheus metrics (open, unaudited: counts, no trail data)",
)
def prometheus_metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
