"""Incidents, for responders: read, open, and every command of trail.incidents.commands.

Every change is recorded under the authenticated principal (``by`` from the body is refused if
it names someone else; only the local principal of ``trail up`` names the responder it acts
for). A refused command answers 400 and records nothing; a change that lost a race with
another responder, or a stale ``If-Match``, answers 409.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from trail.api.deps import acting_as, note, permission, services
from trail.api.responses import JsonResponse, ok
from trail.errors import StoreError, UsageError

router = APIRouter(tags=["incidents"])


def _incidents(request: Request) -> Any:
    inc = services(request).incidents
    if inc is None:
        raise StoreError("incidents are not available in this process")
    return inc


OBJECT_BODY = {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}, "required": False}}


async def _args(request: Request) -> dict[str, Any]:
    """The JSON object of arguments, whatever Content-Type the client sent (empty: no arguments)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise UsageError("the request body must be a JSON object of arguments") from None
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object of arguments")
    return body


@router.get("/v1/playbook", response_class=JsonResponse, openapi_extra=permission("incidents.read"), summary="Plan")
def playbook(request: Request) -> JsonResponse:
    out = _incidents(request).playbook_plan()
    note(request, "incidents").rows = 1
    return ok(out)


@router.get("/v1/incidents", response_class=JsonResponse, openapi_extra=permission("incidents.read"), summary="List")
def list_incidents(request: Request, status: str | None = None) -> JsonResponse:
    rows = _incidents(request).summaries(status)
    note(request, "incidents").rows = len(rows)
    return ok({"incidents": rows})


@router.post(
    "/v1/incidents",
    response_class=JsonResponse,
    openapi_extra=permission("incidents.change", **OBJECT_BODY),
    summary="Open",
)
async def open_incident(request: Request) -> JsonResponse:
    from trail.incidents.commands import open_incident as do_open

    n = note(request, "incidents")
    args = await _args(request)
    args["by"] = acting_as(request, args.get("by"))
    view = await run_in_threadpool(do_open, _incidents(request).service, args)
    n.rows, n.attributes["incident"] = 1, str(view["ref"])
    return ok(view, 201)


@router.get(
    "/v1/incidents/{ref}", response_class=JsonResponse, openapi_extra=permission("incidents.read"), summary="Show"
)
def show(request: Request, ref: str) -> JsonResponse:
    n = note(request, "incidents")
    n.attributes["incident"] = ref[:64]
    view = _incidents(request).show(ref)
    n.rows = 1
    return ok(view)


@router.get(
    "/v1/incidents/{ref}/timeline",
    response_class=JsonResponse,
    openapi_extra=permission("incidents.read"),
    summary="Timeline",
)
def timeline(request: Request, ref: str) -> JsonResponse:
    n = note(request, "incidents")
    n.attributes["incident"] = ref[:64]
    rows = _incidents(request).timeline(ref)
    n.rows = len(rows)
    return ok({"timeline": rows})


@router.get(
    "/v1/incidents/{ref}/subjects",
    response_class=JsonResponse,
    openapi_extra=permission("incidents.read"),
    summary="Subject refs in the evidence",
)
def subjects(request: Request, ref: str) -> JsonResponse:
    n = note(request, "incidents")
    n.attributes["incident"] = ref[:64]
    refs = _incidents(request).subject_refs(ref)
    n.rows = len(refs)
    return ok({"subject_refs": refs})


@router.post(
    "/v1/incidents/{ref}/{command}",
    response_class=JsonResponse,
    openapi_extra=permission("incidents.change", **OBJECT_BODY),
    summary="A responder's command (fact, grade, step, meet, waive, ..., close)",
)
async def command(
    request: Request,
    ref: str,
    command: str,
    if_match: str | None = Header(None, alias="If-Match"),
) -> JsonResponse:
    from trail.incidents.commands import dispatch

    n = note(request, "incidents")
    n.attributes["incident"], n.attributes["command"] = ref[:64], command[:64]
    args = await _args(request)
    if if_match:
        if not if_match.strip('"').isdigit():
            raise UsageError("If-Match: the incident version you read (a whole number)")
        args["expected_version"] = int(if_match.strip('"'))
    args["by"] = acting_as(request, args.get("by"))
    view = await run_in_threadpool(dispatch, _incidents(request).service, command, ref, args)
    n.rows = 1
    return ok(view)
