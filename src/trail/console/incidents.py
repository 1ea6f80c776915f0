"""The incident pages, for responders: the board with live clocks, one incident (grade and why,
facts, evidence, obligations, steps, timeline), its documents in both languages (Markdown,
HTML, PDF) and its notices (draft, a second responder's approval, sending with live progress)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from trail.console.core import PREFIX, form, redirect, render, require, services
from trail.documents.kinds import DOCUMENT_KINDS, LANGS, OUTPUT_FORMATS, check_choice
from trail.documents.rendering import render_bytes
from trail.errors import StoreError, TrailError, ValidationError
from trail.incidents.commands import dispatch
from trail.incidents.filing import document_context, plan_document
from trail.incidents.playbook import load_playbook
from trail.logging import get_logger
from trail.notices import workflow

log = get_logger("trail.console")
router = APIRouter()

MEDIA = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def _incidents(request: Request) -> Any:
    inc = services(request).incidents
    if inc is None:
        raise StoreError("incidents are not available in this process")
    return inc


@router.get("/incidents")
def board(request: Request) -> Response:
    v = require(request, "incidents.read", "incidents")
    inc = _incidents(request)
    rows = [r for r in inc.summaries() if r["status"] != "closed"]
    rows.sort(key=lambda r: (r["next_deadline"] is None, r["next_deadline"] or ""))
    v.note.rows = len(rows)
    return render(request, "board.html", incidents=rows, soon=_soon_seconds(inc))


def _soon_seconds(inc: Any) -> float:
    return float(inc.service.playbook.due_soon_hours) * 3600


@router.get("/incidents/{ref}")
def incident(request: Request, ref: str) -> Response:
    v = require(request, "incidents.read", "incidents")
    v.note.attributes["incident"] = ref[:64]
    inc = _incidents(request)
    view = inc.show(ref)
    timeline = inc.timeline(ref)
    v.note.rows = 1 + len(timeline)
    send = _sends(request).get(view["ref"])
    return render(
        request, "incident.html", i=view, timeline=timeline[::-1], kinds=DOCUMENT_KINDS, soon=_soon_seconds(inc),
        send=send,
    )  # fmt: skip


COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    "meet": ("obligation", "how", "reference"),
    "step": ("step", "action", "note"),
    "fact": ("name", "value", "source", "reason"),
    "measure": ("text",),
    "update": ("text",),
    "contain": ("note",),
}


@router.post("/incidents/{ref}/do/{command}")
async def command(request: Request, ref: str, command: str) -> Response:
    v = require(request, "incidents.change", "incidents")
    fields = await form(request)
    if command not in COMMAND_FIELDS:
        raise ValidationError("command", f"one of {', '.join(COMMAND_FIELDS)}")
    assert v.principal is not None
    args: dict[str, Any] = {k: fields[k] for k in COMMAND_FIELDS[command] if fields.get(k, "").strip()}
    args["by"] = v.principal.name
    if fields.get("version", "").isdigit():
        args["expected_version"] = int(fields["version"])
    v.note.attributes["incident"], v.note.attributes["command"] = ref[:64], command
    view = await run_in_threadpool(dispatch, _incidents(request).service, command, ref, args)
    v.note.rows = 1
    return redirect(f"{PREFIX}/incidents/{view['ref']}")


@router.get("/incidents/{ref}/documents/{kind}.{lang}.{fmt}")
def document(request: Request, ref: str, kind: str, lang: str, fmt: str) -> Response:
    v = require(request, "incidents.read", "incidents")
    check_choice("document", kind, DOCUMENT_KINDS)
    check_choice("language", lang, LANGS)
    check_choice("format", fmt, OUTPUT_FORMATS)
    v.note.attributes.update(incident=ref[:64], document=f"{kind}.{lang}.{fmt}")
    svc = services(request)
    view = _incidents(request).show(ref)
    ctx = document_context(view, load_playbook(svc.settings.playbook), svc.settings.timezone)
    body = render_bytes(kind, ctx, lang=lang, fmt=fmt)
    v.note.rows = 1
    return _document_response(body, f"{view['ref']}-{kind}.{lang}.{fmt}", fmt, request)


@router.get("/plan.{lang}.{fmt}")
def plan(request: Request, lang: str, fmt: str) -> Response:
    """The graded emergency plan (the playbook) as a document: Markdown, HTML or PDF."""
    v = require(request, "incidents.read", "incidents")
    check_choice("language", lang, LANGS)
    check_choice("format", fmt, OUTPUT_FORMATS)
    v.note.attributes["document"] = f"emergency_plan.{lang}.{fmt}"
    body = plan_document(services(request).settings, None, lang=lang, fmt=fmt)
    v.note.rows = 1
    return _document_response(body, f"emergency_plan.{lang}.{fmt}", fmt, request)


def _document_response(body: bytes, name: str, fmt: str, request: Request) -> Response:
    inline = fmt == "html" and request.query_params.get("download") is None
    disposition = "inline" if inline else f'attachment; filename="{name}"'
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if fmt == "html":
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return Response(body, media_type=MEDIA[fmt], headers=headers)


# ------------------------------------------------------------------ notices
@dataclass
class Send:
    """One sending of an incident's notices, run in a thread of the API process."""

    ref: str
    by: str
    total: int = 0
    done: int = 0
    state: str = "pending"
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    def public(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "by": self.by, "total": self.total, "done": self.done, "state": self.state,
            "sent": self.result.get("sent"), "failed": self.result.get("failed"), "error": self.error,
        }  # fmt: skip


def _sends(request: Request) -> dict[str, Send]:
    state = request.app.state
    if not hasattr(state, "sends"):
        state.sends = {}
    sends: dict[str, Send] = state.sends
    return sends


@router.post("/incidents/{ref}/notices/{step}")
async def notices(request: Request, ref: str, step: str) -> Response:
    v = require(request, "incidents.change", "incidents")
    await form(request)
    assert v.principal is not None
    by = v.principal.name
    svc = services(request)
    inc = _incidents(request)
    v.note.attributes.update(incident=ref[:64], notices=step[:16])
    if step == "draft":
        out = await run_in_threadpool(workflow.draft, inc, svc.settings, ref, by=by)
        v.note.rows = int(out.get("subjects", 0))
    elif step == "approve":
        await run_in_threadpool(workflow.approve, inc, ref, by=by)
        v.note.rows = 1
    elif step == "send":
        view = inc.show(ref)
        sends = _sends(request)
        running = sends.get(view["ref"])
        if running is None or running.state not in ("pending", "running"):
            job = Send(ref=view["ref"], by=by, total=int((view["notices"].get("drafted") or {}).get("subjects", 0)))
            sends[view["ref"]] = job
            threading.Thread(target=_run_send, args=(job, inc, svc), name=f"notices-{job.ref}", daemon=True).start()
        v.note.rows = 1
    else:
        raise ValidationError("step", "draft, approve or send")
    return redirect(f"{PREFIX}/incidents/{ref}#notices")


def _run_send(job: Send, inc: Any, svc: Any) -> None:
    def progress(done: int, total: int) -> None:
        job.done, job.total, job.state = done, total, "running"

    job.state = "running"
    try:
        job.result = workflow.send(
            inc, svc.settings, job.ref, by=job.by, bootstrap=svc.bootstrap, progress=progress, stop=job.stop
        )
        job.done = int(job.result.get("sent", 0)) + int(job.result.get("failed", 0))
        job.state = str(job.result.get("state", "finished"))
    except TrailError as exc:
        job.state, job.error = "failed", str(exc)
    except Exception as exc:  # the page shows it; the log has the details
        job.state, job.error = "failed", f"internal error ({type(exc).__name__})"
        log.error("console.notices_failed", error=type(exc).__name__, internal=True, exc_info=exc)


@router.get("/incidents/{ref}/notices/progress")
def progress(request: Request, ref: str) -> Response:
    v = require(request, "incidents.read", "incidents")
    v.note.attributes["incident"] = ref[:64]
    job = _sends(request).get(ref)
    v.note.rows = 1 if job else 0
    return JSONResponse(job.public() if job else {"state": ""}, headers={"Cache-Control": "no-store"})
