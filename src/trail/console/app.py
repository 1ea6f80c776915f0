"""The console's ASGI application, mounted by the API at ``/console``."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from trail.console import incidents, pages
from trail.console.core import (
    PREFIX,
    ConsoleMiddleware,
    redirect,
    render,
    visit,
)
from trail.console.sessions import Failures, Sessions
from trail.errors import (
    ConfigError,
    Conflict,
    CsrfRefused,
    Forbidden,
    LoginRequired,
    NotFound,
    RateLimited,
    StoreError,
    TrailError,
    Unauthorized,
)
from trail.logging import get_logger

log = get_logger("trail.console")


def create_console(services: Any) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    sessions = Sessions(services.settings.console_session_idle, services.settings.console_session_max)
    app.state.sessions = sessions
    app.state.login_failures = Failures(services.settings.api_auth_failures_per_minute)
    app.router.routes.extend(pages.router.routes)
    app.router.routes.extend(incidents.router.routes)
    app.mount("/static", StaticFiles(directory=str(files("trail.console") / "static")), name="static")
    _errors(app)
    app.add_middleware(ConsoleMiddleware, services=services, sessions=sessions, router=app.router)
    return app


def _errors(app: FastAPI) -> None:
    async def trail_error(request: Request, exc: Exception) -> Response:
        v = visit(request)
        if isinstance(exc, LoginRequired):
            v.reason = "no console session"
            return redirect(f"{PREFIX}/login?next={request.url.path}")
        if isinstance(exc, CsrfRefused):
            v.reason = "form without its CSRF token"
            return render(request, "error.html", 403, title=("forbidden"), message_key="csrf_refused")
        if isinstance(exc, Forbidden):
            v.reason = f"no role that may do this ({exc})"
            return render(
                request, "error.html", 403, title="forbidden", message_key="forbidden_text", permission=str(exc)
            )
        status = 400
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            status, headers = 429, {"Retry-After": str(exc.retry_after)}
        elif isinstance(exc, Unauthorized):
            status = 401
        elif isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, Conflict):
            status = 409
        elif isinstance(exc, StoreError | ConfigError):
            status = 503
        v.reason = str(exc)[:1000]
        out = render(request, "error.html", status, title="error", message=str(exc))
        out.headers.update(headers)
        return out

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render(request, "error.html", exc.status_code, title="error", message=str(exc.detail))

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("console.internal_error", error=type(exc).__name__, internal=True, exc_info=exc)
        return render(request, "error.html", 500, title="error", message=f"internal error ({type(exc).__name__})")

    app.add_exception_handler(TrailError, trail_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)
