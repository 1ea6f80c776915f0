"""Integrity, for auditors: verify, inclusion proofs, checkpoints."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from trail.api.deps import note, permission, principal, services
from trail.api.responses import JsonResponse, ok
from trail.errors import NotFound
from trail.service import Verifications

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


class VerificationIn(BaseModel):
    since: int | None = Field(None, ge=1, le=2**63 - 1, description="verify from this checkpoint number on")
    strict: bool = Field(False, description="events not yet sealed count as findings")
    public_key: str | None = Field(None, description="the public key's 64 hex characters (never a file name)")


def _jobs(request: Request) -> Verifications:
    jobs = services(request).verifications
    if jobs is None:
        raise NotFound("verifications as jobs are not served by this process")
    return jobs


@router.post(
    "/v1/verifications",
    response_class=JsonResponse,
    status_code=202,
    openapi_extra=permission("integrity.verify"),
    summary="Start a verification (answers at once; read its result by id)",
)
def start_verification(request: Request, body: VerificationIn | None = None) -> JsonResponse:
    """A full verification takes minutes at 100 M events, longer than clients and proxies wait
    for one answer: this starts it and answers 202 with its id at once; ``GET
    /v1/verifications/{id}`` gives its status and, when done, the same result as ``/v1/verify``.
    One runs at a time (409 names the one running)."""
    body = body or VerificationIn(since=None, strict=False, public_key=None)
    note(request, "integrity")
    job = _jobs(request).start(body.since, body.strict, body.public_key, by=principal(request).name)
    return ok(job.as_dict(), status=202, headers={"Location": f"/v1/verifications/{job.id}"})


@router.get(
    "/v1/verifications",
    response_class=JsonResponse,
    openapi_extra=permission("integrity.verify"),
    summary="The recent verifications of this process, newest first (without their findings)",
)
def verifications(request: Request) -> JsonResponse:
    rows = []
    for job in _jobs(request).recent():
        row = job.as_dict()
        row.pop("findings", None)
        rows.append(row)
    note(request, "integrity").rows = len(rows)
    return ok({"verifications": rows})


@router.get(
    "/v1/verifications/{job_id}",
    response_class=JsonResponse,
    openapi_extra=permission("integrity.verify"),
    summary="One verification: running, done (with its summary and findings) or failed",
)
def verification(request: Request, job_id: str = Path(..., min_length=1, max_length=64)) -> JsonResponse:
    n = note(request, "integrity")
    job = _jobs(request).get(job_id)
    if job is None:
        raise NotFound(
            f"no verification {job_id[:64]} in this process (the last 20 are kept, in memory; "
            "GET /v1/verifications lists them)"
        )
    out = job.as_dict()
    n.rows = int(out.get("summary", {}).get("events_checked", 0))
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
