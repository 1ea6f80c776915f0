"""Events: record (services), read with a cursor, export as a stream, counts and gaps."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from trail.access.principals import same_person
from trail.api.deps import filters, note, permission, principal, services
from trail.api.responses import JsonResponse, ok
from trail.errors import ValidationError
from trail.service import CSV_COLUMNS, csv_row

router = APIRouter(tags=["events"])

NDJSON_BODY = {"requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}, "required": True}}


@router.post(
    "/v1/events",
    response_class=JsonResponse,
    openapi_extra=permission("events.record", **NDJSON_BODY),
    summary="Record events: one v1 audit event per JSON line",
)
async def record_events(request: Request) -> JsonResponse:
    svc = services(request)
    p = principal(request)
    n = note(request, "events")
    body = await request.body()
    check = None
    if p.kind == "service":
        source = {"service": p.name, "host": svc.backend.client.host, "environment": svc.settings.mode}

        def check(raw: dict[str, Any]) -> None:
            given = raw.get("source")
            if given is None:
                raw["source"] = dict(source)
            elif not isinstance(given, dict) or not same_person(str(given.get("service", "")), p.name):
                raise ValidationError(
                    "source.service", f"a service principal records only under its own name ({p.name})"
                )

    result = await run_in_threadpool(svc.backend.emit, body.splitlines(), check)
    n.rows = int(result["accepted"])
    return ok(result)


@router.get(
    "/v1/events",
    response_class=JsonResponse,
    openapi_extra=permission("events.read"),
    summary="Events, oldest first, one page at a time (follow 'next')",
)
def read_events(
    request: Request,
    since: str | None = None,
    until: str | None = None,
    action: str | None = None,
    category: str | None = None,
    destination: str | None = None,
    actor: str | None = None,
    subject_ref: str | None = None,
    limit: int = Query(100, ge=1, le=1_000_000),
    cursor: str | None = None,
) -> JsonResponse:
    svc = services(request)
    n = note(request, "events")
    f = filters(since, until, action, category, limit, destination)
    if subject_ref is not None and (
        len(subject_ref) != 64 or any(c not in "0123456789abcdef" for c in subject_ref.lower())
    ):
        raise ValidationError(
            "subject_ref", "a subject reference (64 hex characters); look people up by id with POST /v1/subjects/events"
        )
    if actor:
        rows, nxt = svc.backend.page("actor", actor, f, cursor)
    elif subject_ref:
        n.subject_refs = [subject_ref.lower()]
        rows, nxt = svc.backend.page("subject", subject_ref.lower(), f, cursor)
    else:
        rows, nxt = svc.backend.page("events", None, f, cursor)
    n.rows = len(rows)
    return ok({"events": rows, "next": nxt})


@router.get(
    "/v1/events/export",
    openapi_extra=permission("events.read"),
    summary="Every matching event as a stream (NDJSON or CSV); audited with the row count when done",
    response_class=StreamingResponse,
)
def export_events(
    request: Request,
    format: Literal["ndjson", "csv"] = "ndjson",  # the query parameter's name
    since: str | None = None,
    until: str | None = None,
    action: str | None = None,
    category: str | None = None,
    destination: str | None = None,
    actor: str | None = None,
    limit: int = Query(1_000_000, ge=1, le=1_000_000),
) -> StreamingResponse:
    import orjson

    svc = services(request)
    n = note(request, "events")
    f = filters(since, until, action, category, limit, destination)
    n.attributes["format"] = format
    blocks = svc.backend.export("actor" if actor else "events", actor or None, f)

    def lines() -> Iterator[bytes]:
        if format == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(CSV_COLUMNS)
            for block in blocks:
                for ev in block:
                    writer.writerow(csv_row(ev))
                n.rows += len(block)
                yield buf.getvalue().encode("utf-8")
                buf.seek(0)
                buf.truncate()
            if buf.tell():
                yield buf.getvalue().encode("utf-8")
            return
        for block in blocks:
            n.rows += len(block)
            yield b"".join(orjson.dumps(ev) + b"\n" for ev in block)

    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(lines(), media_type=media)


@router.get("/v1/gaps", response_class=JsonResponse, openapi_extra=permission("events.gaps"), summary="Sequence gaps")
def gaps(request: Request, producer: str | None = None) -> JsonResponse:
    rows = services(request).backend.gaps(producer)
    note(request, "events").rows = len(rows)
    return ok({"gaps": rows})


@router.get("/v1/counts", response_class=JsonResponse, openapi_extra=permission("events.counts"), summary="Counts")
def counts(request: Request) -> JsonResponse:
    out = services(request).backend.counts()
    note(request, "events").rows = 1
    return ok(out)
