"""The access log (auditors), principals and tokens (admins), legal holds (auditors place them)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from trail.access.tokens import parse_expiry
from trail.api.deps import filters, note, permission, principal, services
from trail.api.responses import JsonResponse, ok
from trail.errors import Refused
from trail.events.model import parse_timestamp

router = APIRouter(tags=["access"])


@router.get(
    "/v1/access-log",
    response_class=JsonResponse,
    openapi_extra=permission("access_log.read"),
    summary="The access log: one event per request to this API (reading it is logged too)",
)
def access_log(
    request: Request,
    since: str | None = None,
    until: str | None = None,
    principal_name: str | None = Query(None, alias="principal"),
    limit: int = Query(100, ge=1, le=1_000_000),
    cursor: str | None = None,
) -> JsonResponse:
    n = note(request, "access-log")
    rows, nxt = services(request).backend.page(
        "access", principal_name, filters(since, until, None, None, limit), cursor
    )
    n.rows = len(rows)
    return ok({"events": rows, "next": nxt})


# ------------------------------------------------------------------ principals and tokens
class NewPrincipal(BaseModel):
    name: str = Field(..., min_length=1, max_length=64)
    roles: list[str] = Field(..., min_length=1, max_length=6)
    kind: Literal["staff", "service"] = "staff"


class NewToken(BaseModel):
    principal: str = Field(..., min_length=1, max_length=64)
    expires: str | None = Field("90d", description="12h, 90d, 2w, 1y or 'never'")


@router.get(
    "/v1/principals", response_class=JsonResponse, openapi_extra=permission("principals.manage"), summary="Principals"
)
def principals(request: Request) -> JsonResponse:
    rows = [p.public() for p in services(request).access.principals()]
    note(request, "principals").rows = len(rows)
    return ok({"principals": rows})


@router.post(
    "/v1/principals", response_class=JsonResponse, openapi_extra=permission("principals.manage"), summary="Add one"
)
def add_principal(request: Request, body: NewPrincipal) -> JsonResponse:
    n = note(request, "principals")
    p = services(request).access.add_principal(body.name, body.roles, kind=body.kind, by=principal(request).name)
    n.rows, n.attributes["principal"], n.attributes["roles"] = 1, p.name, ",".join(p.roles)
    return ok(p.public(), 201)


@router.post(
    "/v1/principals/{name}/{change}",
    response_class=JsonResponse,
    openapi_extra=permission("principals.manage"),
    summary="Disable or enable a principal (its tokens stop or start working at once)",
)
def change_principal(request: Request, name: str, change: Literal["disable", "enable"]) -> JsonResponse:
    svc = services(request)
    n = note(request, "principals")
    n.attributes["principal"], n.attributes["change"] = name[:64], change
    target = svc.access.get_principal(name)
    if change == "disable" and "admin" in target.roles and svc.access.active_admins() == [target.name]:
        raise Refused(f"{target.name} is the last active admin; add another admin first")
    p = svc.access.set_disabled(name, change == "disable")
    n.rows = 1
    return ok(p.public())


@router.get("/v1/tokens", response_class=JsonResponse, openapi_extra=permission("principals.manage"), summary="Tokens")
def tokens(request: Request, principal_name: str | None = Query(None, alias="principal")) -> JsonResponse:
    rows = [t.public() for t in services(request).access.tokens(principal_name)]
    note(request, "tokens").rows = len(rows)
    return ok({"tokens": rows})


@router.post(
    "/v1/tokens",
    response_class=JsonResponse,
    openapi_extra=permission("principals.manage"),
    summary="A new token (the secret is in this answer only)",
)
def create_token(request: Request, body: NewToken) -> JsonResponse:
    n = note(request, "tokens")
    tok, secret = services(request).access.create_token(
        body.principal, by=principal(request).name, expires_at=parse_expiry(body.expires)
    )
    n.rows, n.attributes["principal"], n.attributes["token"] = 1, tok.principal, tok.id
    return ok({"id": tok.id, "principal": tok.principal, "token": secret, "expires_at": tok.expires_at}, 201)


@router.post(
    "/v1/tokens/{token_id}/revoke",
    response_class=JsonResponse,
    openapi_extra=permission("principals.manage"),
    summary="Revoke a token (at once)",
)
def revoke_token(request: Request, token_id: str) -> JsonResponse:
    n = note(request, "tokens")
    n.attributes["token"] = token_id[:64]
    tok = services(request).access.revoke_token(token_id, by=principal(request).name)
    n.rows = 1
    return ok(tok.public())


# ------------------------------------------------------------------ legal holds
class NewHold(BaseModel):
    start: str = Field(..., alias="from", description="RFC 3339: the oldest event time held")
    end: str = Field(..., alias="to", description="RFC 3339: held up to this time")
    reason: str = Field(..., min_length=1, max_length=1000)


@router.get("/v1/holds", response_class=JsonResponse, openapi_extra=permission("holds.read"), summary="Legal holds")
def holds(request: Request) -> JsonResponse:
    rows = services(request).access.holds()
    note(request, "holds").rows = len(rows)
    return ok({"holds": rows})


@router.post("/v1/holds", response_class=JsonResponse, openapi_extra=permission("holds.change"), summary="Add a hold")
def add_hold(request: Request, body: NewHold) -> JsonResponse:
    n = note(request, "holds")
    hold = services(request).access.add_hold(
        parse_timestamp("from", body.start), parse_timestamp("to", body.end), body.reason, by=principal(request).name
    )
    n.rows, n.attributes["hold"] = 1, str(hold["id"])
    return ok(hold, 201)


@router.post(
    "/v1/holds/{hold_id}/release",
    response_class=JsonResponse,
    openapi_extra=permission("holds.change"),
    summary="Release a hold",
)
def release_hold(request: Request, hold_id: str) -> JsonResponse:
    n = note(request, "holds")
    n.attributes["hold"] = hold_id[:64]
    hold = services(request).access.release_hold(hold_id, by=principal(request).name)
    n.rows = 1
    return ok(hold)
