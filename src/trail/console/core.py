"""What every console page shares: the session, the principal, the permission check, CSRF,
the language, the organisation's time zone, rendering, and the access log.

:class:`ConsoleMiddleware` runs around every console request (static files aside): it finds
the session from its cookie, checks that the token behind it is still active (revoked,
expired or a disabled principal ends the session at once), and when the answer is complete
records the request in the access log exactly as the API does (principal, role, rows read,
outcome), with the endpoint ``/console/...``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

import anyio
from fastapi import Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trail.access.principals import Principal
from trail.access.recorder import AccessNote
from trail.access.roles import PERMISSIONS, granting_role
from trail.console.i18n import from_accept_language, pick, translate, value_label
from trail.console.sessions import Session, Sessions, same_secret
from trail.errors import CsrfRefused, Forbidden, LoginRequired, TrailError, UsageError
from trail.messages import localised

PREFIX = "/console"
SESSION_COOKIE = "trail_session"
LOGIN_CSRF_COOKIE = "trail_login_csrf"
LANG_COOKIE = "trail_lang"
FORM_MAX = 1 << 20

#: (key, path, permission): the pages, in the order of the navigation.
NAV: tuple[tuple[str, str, str], ...] = (
    ("incidents", "/incidents", "incidents.read"),
    ("alerts", "/alerts", "alerts.read"),
    ("events", "/events", "events.read"),
    ("actor", "/actor", "events.read"),
    ("person", "/person", "subjects.lookup"),
    ("integrity", "/integrity", "integrity.verify"),
    ("access_log", "/access-log", "access_log.read"),
    ("principals", "/principals", "principals.manage"),
)
assert all(p in PERMISSIONS for _k, _p, p in NAV)


@dataclass
class Visit:
    """One console request: who asks, in which language, and what it read (for the access log)."""

    request_id: str
    note: AccessNote
    lang: str
    sid: str | None = None
    session: Session | None = None
    principal: Principal | None = None
    role: str | None = None
    reason: str | None = None
    secure: bool = False
    extra_cookies: dict[str, str] = field(default_factory=dict)


def visit(request: Request) -> Visit:
    v: Visit = request.state.visit
    return v


def services(request: Request) -> Any:
    return request.app.state.services


def sessions(request: Request) -> Sessions:
    s: Sessions = request.app.state.sessions
    return s


def allowed(principal: Principal | None, permission: str) -> str | None:
    if principal is None:
        return None
    return granting_role(principal.roles, permission)


def require(request: Request, permission: str, dataset: str = "") -> Visit:
    """The visit of a signed-in principal whose roles grant ``permission`` (else login or 403)."""
    v = visit(request)
    if v.principal is None:
        raise LoginRequired("log in first")
    role = allowed(v.principal, permission)
    if role is None:
        raise Forbidden(permission)
    v.role = role
    if dataset:
        v.note.dataset = dataset
    return v


async def form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (first value of each field), its CSRF token checked."""
    raw = await request.body()
    if len(raw) > FORM_MAX:
        raise UsageError("the form is too large")
    multi = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    fields = {k: vs[0] for k, vs in multi.items()}
    request.state.form_lists = multi
    v = visit(request)
    expected = v.session.csrf if v.session else request.cookies.get(LOGIN_CSRF_COOKIE)
    if not same_secret(fields.get("csrf"), expected):
        raise CsrfRefused("csrf")
    return fields


def form_list(request: Request, name: str) -> list[str]:
    lists: dict[str, list[str]] = getattr(request.state, "form_lists", {})
    return list(lists.get(name, []))


def local_path(target: str | None, default: str = PREFIX + "/") -> str:
    """A redirect target inside the console only (never another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


# ------------------------------------------------------------------ rendering
_ENV = Environment(loader=PackageLoader("trail.console", "templates"), autoescape=select_autoescape(default=True))


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            out = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return out if out.tzinfo else out.replace(tzinfo=UTC)
    return None


def local_time(value: Any, zone: str) -> str:
    """A time in the organisation's time zone, ``2026-11-30 21:05:00 CST`` style (UTC offset shown)."""
    at = _as_datetime(value)
    if at is None:
        return str(value or "")
    local = at.astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.strftime("%Z") or local.strftime("UTC%z"))


def utc_iso(value: Any) -> str:
    at = _as_datetime(value)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else ""


def plain(value: Any) -> str:
    """A value of a record as text: lists joined, objects as ``key value`` pairs, nothing as a dash."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, dict):
        return " ".join(str(v) for v in value.values() if v not in (None, ""))
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    return str(value)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    v = visit(request)
    svc = services(request)
    zone = svc.settings.timezone
    lang = v.lang

    def t(key: str, **params: Any) -> str:
        return translate(lang, key, **params)

    nav = [(k, PREFIX + p) for k, p, perm in NAV if allowed(v.principal, perm)]
    csrf = (
        v.session.csrf
        if v.session
        else v.extra_cookies.get(LOGIN_CSRF_COOKIE) or request.cookies.get(LOGIN_CSRF_COOKIE, "")
    )
    html = _ENV.get_template(template).render(
        t=t,
        lang=lang,
        other_lang="en" if lang == "zh" else "zh",
        principal=v.principal,
        nav=nav,
        csrf=csrf,
        here=request.url.path + (("?" + request.url.query) if request.url.query else ""),
        path=request.url.path,
        base=PREFIX,
        when=lambda x: local_time(x, zone),
        iso=utc_iso,
        zone=zone,
        quote=quote,
        say=lambda raw, fallback: localised(raw, lang, str(fallback or "")),
        lbl=lambda kind, value: value_label(lang, kind, value),
        plain=plain,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def set_cookie(response: Response, v: Visit, name: str, value: str, *, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="strict", secure=v.secure)


def redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303, headers={"Cache-Control": "no-store"})


# ------------------------------------------------------------------ the middleware
class ConsoleMiddleware:
    def __init__(self, app: ASGIApp, *, services: Any, sessions: Sessions, router: Any) -> None:
        self.app, self.services, self.sessions, self.router = app, services, sessions, router

    def _template(self, scope: Scope) -> str | None:
        for route in self.router.routes:
            match, _child = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "path", ""))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        template = self._template(scope)
        if template is not None and template.startswith("/static"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        headers = conn.headers
        secure = scope.get("scheme") == "https" or headers.get("x-forwarded-proto", "").lower() == "https"
        lang = conn.cookies.get(LANG_COOKIE)
        v = Visit(
            request_id=uuid.uuid4().hex[:16],
            note=AccessNote(),
            lang=pick(lang) if lang else from_accept_language(headers.get("accept-language")),
            secure=secure,
        )
        v.sid = conn.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(v.sid)
        if session is not None:
            tok_principal = await anyio.to_thread.run_sync(self._still_valid, session)
            if tok_principal is None:
                self.sessions.end(v.sid)
                v.reason = "the session's token is no longer active"
            else:
                v.session, v.principal = session, tok_principal
        scope.setdefault("state", {})["visit"] = v
        status = 500

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", v.request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        finally:
            if template is not None:  # an unknown page: 404, like the API's unknown routes, unrecorded
                self._record(scope, conn, v, template, status)

    def _record(self, scope: Scope, conn: HTTPConnection, v: Visit, template: str, status: int) -> None:
        self.services.recorder.record(
            principal=v.principal,
            role=v.role,
            method=scope["method"],
            endpoint=PREFIX + template,
            status=status,
            ip=conn.client.host if conn.client else None,
            request_id=v.request_id,
            note=v.note,
            token_id=v.session.token_id if v.session else None,
            reason=v.reason,
        )

    def _still_valid(self, session: Session) -> Principal | None:
        access = self.services.access
        try:
            tok = access.get_token(session.token_id)
            if tok.state() != "active":
                return None
            p: Principal = access.get_principal(tok.principal)
        except TrailError:
            return None
        return None if p.disabled else p
