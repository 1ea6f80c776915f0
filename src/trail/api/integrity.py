"""Integrity, for auditors: verify, inclusion proofs, checkpoints."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from trail.api.deps import note, permission, services
from trail.api.responses import JsonResponse, ok

router = APIRouter(tags=["integrity"])


@router.get("/v1/verify", response_class=JsonResponse, openapi_extra=permission("integrity.verify"), summary="Verify")
def verify(
    request: Request,
    since: int | None = Query(None, ge=1, le=2**63 - 1),  # a checkpoint number (UInt64 in the store)
    strict: str | None = None,
    public_key: str | None = Query(None, description="the public key's 64 hex characters (never a file name)"),
) -> JsonResponse:
    out = services(request).backend.verify(since, strict in ("1", "true"), public_key, key_text_only=True)
    note(request, "integrity").rows = int(out["summary"]["events_checked"])
    return ok(out)


@router.get(
    "/v1/proof/{event_id}", response_class=JsonResponse, openapi_extra=permission("integrity.verify"), summary="Proof"
)
def proof(request: Request, event_id: str) -> JsonResponse:
    n = note(request, "integrity")
    n.attributes["event_id"] = event_id[:64]
    out = services(request).backend.proof(event_id)
    n.rows = 1
    return ok(out)


@router.get(
    "/v1/checkpoints", response_class=JsonResponse, openapi_extra=permission("integrity.verify"), summary="Checkpoints"
)
def checkpoints(request: Request, limit: int = Query(100, ge=1, le=10_000)) -> JsonResponse:
    rows = services(request).backend.checkpoints(limit)
    note(request, "integrity").rows = len(rows)
    return ok({"checkpoints": rows})
