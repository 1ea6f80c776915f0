"""``GET /v1/health``: liveness and the state of the parts; open, unaudited, no trail data."""

from __future__ import annotations

from fastapi import APIRouter, Request

from trail.api.deps import services
from trail.api.responses import JsonResponse, ok

router = APIRouter(tags=["health"])


@router.get("/v1/health", response_class=JsonResponse, summary="Liveness (open, unaudited)")
def health(request: Request) -> JsonResponse:
    svc = services(request)
    out = svc.backend.health()
    out["access_log"] = {"recorded": svc.recorder.recorded, "failed": svc.recorder.failed}
    return ok(out)
