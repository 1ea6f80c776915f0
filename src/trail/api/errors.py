"""One error shape for every answer that is not a success: ``{"error": ..., "field"?: ...}``.

| exception | status |
|---|---|
| ValidationError, UsageError, Refused, other TrailError; FastAPI's request validation | 400 (``field`` when known) |
| Unauthorized | 401, ``WWW-Authenticate: Bearer`` |
| Forbidden | 403 |
| NotFound; an unknown route | 404 |
| a known route with another method | 405 |
| Conflict | 409 |
| TooLarge | 413 |
| RequestTimeout | 408 |
| RateLimited | 429, ``Retry-After`` |
| StoreError, ConfigError | 503 |
| anything else | 500, with no stack trace (it is logged on the server) |
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from trail.api.responses import JsonResponse, error
from trail.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RequestTimeout,
    StoreError,
    TooLarge,
    TrailError,
    Unauthorized,
    ValidationError,
)
from trail.logging import get_logger

log = get_logger("trail.api")


def for_exception(exc: BaseException) -> JsonResponse:
    if isinstance(exc, ValidationError):
        return error(400, str(exc), exc.field or None)
    if isinstance(exc, Unauthorized):
        return error(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="trail"'})
    if isinstance(exc, Forbidden):
        return error(403, str(exc))
    if isinstance(exc, NotFound):
        return error(404, str(exc))
    if isinstance(exc, Conflict):
        return error(409, str(exc))
    if isinstance(exc, TooLarge):
        return error(413, str(exc))
    if isinstance(exc, RequestTimeout):
        return error(408, str(exc))
    if isinstance(exc, RateLimited):
        return error(429, str(exc), headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, StoreError | ConfigError):
        return error(503, str(exc))
    if isinstance(exc, TrailError):
        return error(400, str(exc))
    log.error("api.internal_error", error=type(exc).__name__, internal=True, exc_info=exc)
    return error(500, f"internal error ({type(exc).__name__}); see the server's log")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors: list[Any] = list(exc.errors())
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ())]
    kind = str(first.get("type", ""))
    if loc[:1] == ["body"] and (len(loc) == 1 or kind in ("json_invalid", "model_attributes_type", "dict_type")):
        return "the request body must be a JSON object" + (f" ({first.get('msg')})" if kind else ""), "body"
    field = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else None)
    msg = str(first.get("msg", "invalid"))
    return (f"{field}: {msg}" if field else msg), field


def _h(exc: HTTPException) -> dict[str, str] | None:
    return dict(exc.headers) if exc.headers else None


def install(app: FastAPI) -> None:
    async def trail_error(_request: Request, exc: Exception) -> JsonResponse:
        return for_exception(exc)

    async def request_invalid(_request: Request, exc: Exception) -> JsonResponse:
        assert isinstance(exc, RequestValidationError)
        message, field = _validation_message(exc)
        return error(400, message, field)

    async def http_error(_request: Request, exc: Exception) -> JsonResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error(404, "no such endpoint; see /openapi.json")
        if exc.status_code == 405:
            return error(405, "this endpoint does not take that method; see /openapi.json", headers=_h(exc))
        return error(exc.status_code, str(exc.detail), headers=_h(exc))

    async def internal(_request: Request, exc: Exception) -> JsonResponse:
        return for_exception(exc)

    app.add_exception_handler(TrailError, trail_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)
