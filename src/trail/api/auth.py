"""Authentication, authorisation, limits and the access log, for every request (DESIGN.md §9).

A pure ASGI middleware in front of the routes, so a request is judged before its body is read:

1. the route is found (unknown routes: 404 from the router, unaudited; ``GET /v1/health`` and
   ``GET /openapi.json`` are open and unaudited);
2. a client address with too many failed authentications gets 429 (``Retry-After``);
3. ``Authorization: Bearer TOKEN`` is checked against the access store now (revocation and
   expiry count at once): missing, unknown, expired, revoked or disabled is 401;
4. a principal over its request rate gets 429; a principal none of whose roles grants the
   route's permission (``x-permission`` in the OpenAPI document) gets 403;
5. a body announced over the route's limit is 413 unread, one that grows past it is cut off at
   the limit (413), and one that does not arrive in time is 408;
6. when the answer is complete — for a streamed export, after its last row — the access-log
   event of the request is handed to the SDK (success, denied, error).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import OrderedDict
from typing import Any

import anyio
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trail import metrics
from trail.access.recorder import AccessNote
from trail.access.roles import granting_role
from trail.access.store import Authenticated
from trail.api.errors import for_exception
from trail.errors import Forbidden, RateLimited, RequestTimeout, TooLarge, TrailError, Unauthorized

OPEN: frozenset[str] = frozenset({"/v1/health", "/openapi.json", "/metrics"})
#: The web console authenticates with its session cookie and records its own requests (trail.console).
CONSOLE = "/console"
JSON_BODY_MAX = 1 << 20


class _Buckets:
    """Token buckets per key (bounded in number: the least recently used are forgotten)."""

    def __init__(self, rate: float, burst: float, size: int = 10_000) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 if allowed now, else the seconds until it would be."""
        now = time.monotonic()
        tokens, last = self._b.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._b[key] = (tokens, now)
        if len(self._b) > self.size:
            self._b.popitem(last=False)
        return wait

    def blocked(self, key: str) -> float:
        now = time.monotonic()
        tokens, last = self._b.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate


class AccessMiddleware:
    def __init__(self, app: ASGIApp, *, services: Any, router_app: Any) -> None:
        self.app = app
        self.services = services
        self.router_app = router_app
        s = services.settings
        self.max_body = s.api_max_body_bytes
        self.body_timeout = s.api_body_timeout
        self.principals = _Buckets(s.api_rate_per_principal, 2 * s.api_rate_per_principal)
        self.failures = _Buckets(s.api_auth_failures_per_minute / 60.0, s.api_auth_failures_per_minute)
        self.threads = s.api_worker_threads
        self._limiter_set = False

    def _route(self, scope: Scope) -> tuple[Any, str | None]:
        partial = None
        for route in self.router_app.routes:
            match, _child = route.matches(scope)
            if match == Match.FULL:
                return route, route.path
            if match == Match.PARTIAL and partial is None:
                partial = route
        return None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._limiter_set:  # the thread pool of the store-bound handlers, once per loop
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
            self._limiter_set = True
        route, template = self._route(scope)
        started = time.monotonic()
        answered = 500

        async def send_counted(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = int(message["status"])
                metrics.API_SECONDS.labels(template or "unmatched").observe(time.monotonic() - started)
            await send(message)

        try:
            await self._serve(scope, receive, send_counted, route, template)
        finally:
            metrics.API_REQUESTS.labels(scope["method"], template or "unmatched", str(answered)).inc()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, route: Any, template: str | None) -> None:
        if route is None or template in OPEN or template == CONSOLE:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        client = scope.get("client")
        ip = client[0] if client else None
        request_id = uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        note = AccessNote()
        state["note"], state["request_id"] = note, request_id
        auth = Authenticated("unknown")
        role: str | None = None
        status = 500
        reason: str | None = None

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            try:
                auth, role = await self._judge(scope, route, ip or "")
            except (TrailError, _WithAuth) as exc:
                refusal: TrailError
                if isinstance(exc, _WithAuth):
                    auth, refusal = exc.auth, exc.exc
                else:
                    refusal = exc
                reason = str(refusal)
                await for_exception(refusal)(scope, receive, send_wrapped)
                return
            state["principal"], state["role"], state["token_id"] = auth.principal, role, auth.token_id
            if template != "/v1/events":
                _json_content_type(scope)
            try:
                replay = await self._read_body(scope, receive, template or "")
            except TrailError as exc:
                reason = str(exc)
                await _refusal(exc)(scope, receive, send_wrapped)
                return
            await self.app(scope, replay, send_wrapped)
        finally:
            self.services.recorder.record(
                principal=auth.principal if auth.state != "unknown" else None,
                role=role,
                method=method,
                endpoint=template or scope["path"],
                status=status,
                ip=ip,
                request_id=request_id,
                note=note,
                token_id=auth.token_id,
                reason=reason or (None if status < 400 else state.get("error_reason")),
            )

    async def _judge(self, scope: Scope, route: Any, ip: str) -> tuple[Authenticated, str | None]:
        wait = self.failures.blocked(ip)
        if wait > 0:
            raise RateLimited("too many failed authentications from this address; wait and retry", math.ceil(wait))
        token = _bearer(scope)
        if token is None:
            self.failures.take(ip)
            raise Unauthorized("authentication required: send Authorization: Bearer TOKEN")
        auth = await anyio.to_thread.run_sync(self.services.access.authenticate, token)
        if auth.state != "active":
            self.failures.take(ip)
            what = {
                "unknown": "unknown",
                "expired": "expired",
                "revoked": "revoked",
                "disabled": "of a disabled principal",
            }
            err = Unauthorized(f"the token is {what[auth.state]}: ask an administrator for a new one")
            raise _WithAuth(err, auth)
        assert auth.principal is not None
        wait = self.principals.take(auth.principal.name)
        if wait > 0:
            raise _WithAuth(RateLimited("over this principal's request rate; slow down", math.ceil(wait)), auth)
        permission = (getattr(route, "openapi_extra", None) or {}).get("x-permission")
        role = granting_role(auth.principal.roles, permission) if permission else None
        if role is None:
            raise _WithAuth(
                Forbidden(f"{auth.principal.name} has no role that may do this ({permission or 'no permission'})"),
                auth,
            )
        return auth, role

    async def _read_body(self, scope: Scope, receive: Receive, template: str) -> Receive:
        """Read the whole body before the route runs: over its limit, 413 (unread if announced);
        not arrived by the deadline, 408. The route then reads it from memory."""
        limit = self.max_body if template == "/v1/events" else JSON_BODY_MAX
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise TooLarge(f"request body over {limit} bytes; send it in parts")
        chunks: list[bytes] = []
        received = 0
        deadline = time.monotonic() + self.body_timeout
        more = scope["method"] not in ("GET", "HEAD")
        while more:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {self.body_timeout:.0f} s") from None
            if message["type"] == "http.disconnect":
                raise RequestTimeout("the client went away before sending its body")
            body = message.get("body", b"")
            received += len(body)
            if received > limit:
                raise TooLarge(f"request body over {limit} bytes; send it in parts")
            chunks.append(body)
            more = bool(message.get("more_body"))
        data = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        return replay


class _WithAuth(Exception):  # control flow inside this module, never raised past it
    """A refusal that knows whose token it was (for the access log); control flow only."""

    def __init__(self, exc: TrailError, auth: Authenticated) -> None:
        super().__init__(str(exc))
        self.exc, self.auth = exc, auth


def _refusal(exc: TrailError) -> Any:
    return for_exception(exc)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            text = str(value.decode("latin-1")).strip()
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _json_content_type(scope: Scope) -> None:
    """Bodies other than ``POST /v1/events`` are JSON: a missing or form content type (what
    ``curl -d`` and urllib send by default) is read as JSON rather than refused."""
    headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
    given = dict(scope.get("headers") or []).get(b"content-type", b"")
    kind = given.split(b";")[0].strip().lower()
    if kind in (b"", b"application/x-www-form-urlencoded", b"text/plain"):
        scope["headers"] = [*headers, (b"content-type", b"application/json")]
