"""The ASGI application, built from the application services."""

from __future__ import annotations

import weakref
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from trail import __version__, metrics
from trail.api import access, alerts, errors, events, health, incidents, integrity, retention, rights, sql, subjects
from trail.api.auth import OPEN, AccessMiddleware
from trail.api.responses import JsonResponse
from trail.console import create_console
from trail.service import ApiServices
from trail.wiring import watch_incidents


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="trail",
        version=__version__,
        description=(
            "The audit trail of every operation on personal information. Every endpoint except GET /v1/health "
            "and GET /metrics needs `Authorization: Bearer TOKEN`; `x-permission` names what the principal's "
            "roles must grant; "
            'every request is recorded in the access log. Errors: {"error", "field"?}.'
        ),
        docs_url=None,  # no pages that load scripts from a CDN; the document is at /openapi.json
        redoc_url=None,
        default_response_class=JsonResponse,
    )
    app.state.services = services
    clients = [weakref.ref(services.backend.client), weakref.ref(services.recorder.client)]
    app.state.unwatch_spool = metrics.watch(
        "trail_spool_bytes", lambda: [((c.service,), float(c.spool_bytes)) for ref in clients if (c := ref())]
    )
    local_incidents = getattr(services, "incidents", None)
    if local_incidents is not None:  # open incidents and overdue obligations on /metrics
        app.state.unwatch_incidents = watch_incidents(local_incidents.service)
    for module in (health, events, subjects, integrity, alerts, incidents, access, sql, retention, rights):
        app.router.routes.extend(module.router.routes)  # flat, so the middleware matches each route itself
    app.mount("/console", create_console(services))  # the web console: its own sessions, the same access log
    errors.install(app)

    app.add_middleware(AccessMiddleware, services=services, router_app=app.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, ops in schema.get("paths", {}).items():
                for op in ops.values():
                    if isinstance(op, dict) and path not in OPEN:
                        op["security"] = [{"bearer": []}]
                        op.setdefault("responses", {}).update(
                            {
                                "400": {"description": "bad request: {error, field?}"},
                                "401": {"description": "no valid token"},
                                "403": {"description": "no role that grants x-permission"},
                                "429": {"description": "too many requests (Retry-After)"},
                            }
                        )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
