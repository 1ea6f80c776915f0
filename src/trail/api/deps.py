"""What the resource modules share: the services, the request's principal and its access note."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from trail.access.principals import Principal, same_person
from trail.access.recorder import AccessNote
from trail.errors import Refused, Unauthorized, UsageError, ValidationError
from trail.service import ApiServices, QueryFilters


def services(request: Request) -> ApiServices:
    svc: ApiServices = request.app.state.services
    return svc


def note(request: Request, dataset: str) -> AccessNote:
    n: AccessNote = request.state.note
    n.dataset = dataset
    return n


def principal(request: Request) -> Principal:
    p = getattr(request.state, "principal", None)
    if p is None:  # the middleware lets no request through without one
        raise Unauthorized("authentication required")
    assert isinstance(p, Principal)
    return p


def acting_as(request: Request, given: Any, what: str = "by") -> str:
    """Who a change is recorded under: the authenticated principal. Only the local principal of
    ``trail up`` names the responder it acts for (as direct mode does); any other principal that
    sends a different ``by`` is refused, so nobody acts under another's name."""
    p = principal(request)
    text = given.strip() if isinstance(given, str) else ""
    if p.delegates:
        if not text:
            raise UsageError(f"{what}: required (the responder the local principal acts for)")
        return text
    if text and not same_person(text, p.name):
        raise Refused(f"{what}: changes are recorded under your principal {p.name}; leave {what} out")
    return p.name


def permission(name: str, **extra: Any) -> dict[str, Any]:
    """The route's ``openapi_extra``: the permission the middleware checks (see trail.access.roles)."""
    return {"x-permission": name, **extra}


def filters(
    since: str | None,
    until: str | None,
    action: str | None,
    category: str | None,
    limit: int,
    destination: str | None = None,
) -> QueryFilters:
    if limit < 1 or limit > 1_000_000:
        raise ValidationError("limit", "must be a whole number from 1 to 1000000")
    return QueryFilters.parse(since, until, action, category, limit, destination)
