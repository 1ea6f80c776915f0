"""Documents and notices of an incident: from its record to files, mail and webhooks.

This joins the parts: the incident's view (:mod:`application`), the playbook's organisation
and notice texts, the document templates (:mod:`documents`), and the delivery machinery
(:mod:`delivery`, :mod:`notices`). Used by ``trail incidents report|notify``, the demo and
drills, with either backend (in-process or ``trail up``'s API).

Notices go through three recorded steps: **draft** (the notice text in zh and en, and the
number of people with a digest of their refs), **approve** (a second responder: four eyes),
**send** (a resumable batch; each delivery outcome becomes an audit event in the trail with
the subject's ref — never a contact detail — and the batch's counts are recorded on the
incident). When every person has been reached, the ``individual_notice`` obligation is met
with the batch as proof.
"""

from __future__ import annotations

import hashlib
import re
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse, urlunparse

from trail.config import Settings
from trail.errors import ConfigError
from trail.incidents.domain import Refused
from trail.incidents.playbook import Playbook, load_playbook
from trail.logging import get_logger

log = get_logger("trail.notify")
NOTICE_SYSTEM = "trail-notices"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def document_context(view: Mapping[str, Any], playbook: Playbook, timezone: str) -> dict[str, Any]:
    """The documents' context (see :mod:`trail.documents`) for one incident view."""
    facts = view.get("facts", {})
    categories: list[str] = []
    if "categories" in facts and isinstance(facts["categories"]["value"], list):
        categories = [str(c) for c in facts["categories"]["value"]]
    elif view.get("evidence"):
        categories = list(view["evidence"].get("categories", []))
    return {
        "generated_at": _now(),
        "timezone": timezone,
        "org": playbook.org_dict(),
        "incident": dict(view),
        "notice": playbook.notice_dict(categories),
        "recipient": None,
    }


def _playbook(settings: Settings) -> Playbook:
    return load_playbook(settings.playbook)


def incident_dir(settings: Settings, ref: str) -> Path:
    return settings.effective_outbox_dir / ref


def write_incident_documents(
    backend: Any,
    settings: Settings,
    ref: str,
    *,
    by: str,
    kinds: Sequence[str],
    langs: Sequence[str] = ("zh", "en"),
    fmts: Sequence[str] = ("md", "html"),
    out_dir: Path | None = None,
) -> list[Path]:
    """Render ``kinds`` from the incident's record and record each as issued (with a digest)."""
    from trail.documents import write_documents

    view = backend.show(ref)
    ctx = document_context(view, _playbook(settings), settings.timezone)
    out = out_dir or incident_dir(settings, view["ref"]) / "documents"
    written: list[Path] = []
    for kind in kinds:
        files = write_documents(ctx, out, [kind], langs=tuple(langs), fmts=tuple(fmts))
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(files))).hexdigest()
        backend.call(
            "document", view["ref"], {"kind": kind, "by": by, "files": [str(p) for p in files], "digest": digest}
        )
        written.extend(files)
    return written


def plan_document(settings: Settings, path: Path | None, *, lang: str, fmt: str) -> str:
    """The graded emergency plan as a filing document (Xiamen Art. 8(4))."""
    from trail.documents import render_plan

    playbook = load_playbook(path or settings.playbook)
    return render_plan(plan_context(playbook, settings.timezone, last_drill(settings)), lang=lang, fmt=fmt)


def last_drill(settings: Settings) -> str | None:
    """The date of the last drill recorded in the incident store (``trail drill``), if any."""
    from trail.incidents.trigger import incident_service

    if not settings.incident_store and not settings.incident_store_path.exists():
        return None
    service = incident_service(settings)
    try:
        drills = [r["discovered_at"] for r in service.summaries() if r["drill"]]
    finally:
        service.shutdown()
    return max(drills)[:10] if drills else None


def plan_context(playbook: Playbook, timezone: str, last_drill: str | None = None) -> dict[str, Any]:
    """The plan's context; ``last_drill`` (a date) wins over the playbook's ``drills.last`` when later."""
    import calendar

    last = max(x for x in (last_drill, playbook.drills.last) if x) if (last_drill or playbook.drills.last) else None
    next_due = None
    if last:
        d = datetime.fromisoformat(last[:10])
        month = d.month - 1 + playbook.drills.every_months
        year, month = d.year + month // 12, month % 12 + 1
        day = min(d.day, calendar.monthrange(year, month)[1])
        next_due = d.replace(year=year, month=month, day=day).date().isoformat()
    plan = playbook.to_plan_dict(next_due)
    plan["drills"]["last"] = last
    return {"generated_at": _now(), "timezone": timezone, "org": playbook.org_dict(), "playbook": plan}


# --------------------------------------------------------------------------- notices
def _ledger_target(settings: Settings) -> tuple[str, str]:
    """Where the notice ledger lives: beside the incidents (SQLite file or PostgreSQL schema)."""
    url = settings.incident_store
    if url and url.startswith(("postgresql://", "postgres://")):
        u = urlparse(url)
        schema = parse_qs(u.query).get("schema", ["trail"])[0]
        return urlunparse(u._replace(query="")), schema
    if url and url.startswith("sqlite://"):
        return url.removeprefix("sqlite://"), ""
    return str(settings.incident_store_path), ""


@contextmanager
def ledger_for(settings: Settings) -> Iterator[Any]:
    from trail.incidents.notices import open_ledger

    target, schema = _ledger_target(settings)
    ledger = open_ledger(target, schema=schema) if schema else open_ledger(target)
    try:
        yield ledger
    finally:
        ledger.close()


def draft(backend: Any, settings: Settings, ref: str, *, by: str) -> dict[str, Any]:
    """Write the notice (zh, en; Markdown and HTML) and record the draft with its recipients."""
    from trail.documents import write_documents
    from trail.incidents import evidence

    view = backend.show(ref)
    refs = backend.subject_refs(view["ref"])
    if not refs:
        raise Refused(
            f"{view['ref']}: the evidence names no affected subjects, so there is no one to address; "
            "for people not identified in the trail, issue a public announcement (trail incidents report "
            "--kind public_announcement)"
        )
    ctx = document_context(view, _playbook(settings), settings.timezone)
    out = incident_dir(settings, view["ref"]) / "notice"
    files = write_documents(ctx, out, ["individual_notice"], langs=("zh", "en"), fmts=("md", "html"))
    digest = evidence.subjects_digest(refs)
    backend.call(
        "notices_drafted",
        view["ref"],
        {"by": by, "subjects": len(refs), "subjects_digest": digest, "files": [str(p) for p in files]},
    )
    return {"incident": view["ref"], "subjects": len(refs), "subjects_digest": digest, "files": [str(p) for p in files]}


def approve(backend: Any, ref: str, *, by: str) -> dict[str, Any]:
    view = backend.call("notices_approved", ref, {"by": by})
    return {"incident": view["ref"], "approved_by": by}


def status(settings: Settings, backend: Any, ref: str) -> dict[str, Any]:
    from trail.incidents.notices import deliveries

    view = backend.show(ref)
    with ledger_for(settings) as ledger:
        counts = deliveries(ledger, view["id"])
    return {"incident": view["ref"], "deliveries": dict(counts), "batches": view["notices"]["batches"]}


def _renderer(ctx: Mapping[str, Any]) -> Any:
    """Render the notice once per language; every person gets the same text (no personal data in it)."""
    from trail.documents import render
    from trail.incidents.delivery import RenderedNotice

    cache: dict[str, RenderedNotice] = {}
    subjects = {"zh": "个人信息安全事件告知书", "en": "Notice of a personal information security incident"}

    def render_for(contact: Any) -> RenderedNotice:
        lang = contact.language if contact.language in ("zh", "en") else "zh"
        if lang not in cache:
            org = ctx["org"]["name"] if lang == "zh" else ctx["org"].get("name_en") or ctx["org"]["name"]
            cache[lang] = RenderedNotice(
                subject=f"{org}: {subjects[lang]}",
                body_text=markdown_to_text(render("individual_notice", ctx, lang=lang, fmt="md")),
                body_html=render("individual_notice", ctx, lang=lang, fmt="html"),
                language=lang,
            )
        return cache[lang]

    return render_for


_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~<])")


def markdown_to_text(md: str) -> str:
    """The notice's Markdown as plain text for the e-mail's text part (no escapes, no bold marks)."""
    text = md.replace("**", "").replace("<br>", "\n")
    return _MD_ESCAPE.sub(r"\1", text)


def _audit_client(settings: Settings, backend: Any) -> Any:
    """An SDK client for the audit events of deliveries: to trail up's broker, else to the store."""
    from trail.local.stack import running_server
    from trail.sdk.client import Client
    from trail.sdk.transport import CallbackTransport, KafkaTransport

    info = running_server(settings)
    transport: Any
    if info:
        transport = KafkaTransport(str(info["kafka"]), settings.topic("events"))
    elif settings.kafka_bootstrap:
        transport = KafkaTransport(settings.kafka_bootstrap, settings.topic("events"))
    else:
        from trail.service import store_writer

        store = getattr(getattr(backend, "service", None), "store", None)
        if store is None:
            raise ConfigError("no broker and no store to record the delivery audit events in")
        transport = CallbackTransport(store_writer(store))
    return Client(
        service=NOTICE_SYSTEM,
        transport=transport,
        subject_key=settings.require_subject_key(),
        spool_dir=settings.effective_spool_dir,
        environment=settings.mode,
    )


def send(
    backend: Any,
    settings: Settings,
    ref: str,
    *,
    by: str,
    channel_spec: str | None = None,
    resolver_spec: str | None = None,
    resend_in_doubt: bool = False,
    progress: bool = False,
    stop: threading.Event | None = None,
    retry_backoff_s: float = 5.0,
) -> dict[str, Any]:
    """Send (or resume sending) one notice per affected subject; returns the batch summary."""
    from trail.incidents import evidence
    from trail.incidents.delivery import load_resolver, make_channel
    from trail.incidents.notices import plan_batch, run_batch

    view = backend.show(ref)
    inc_ref = view["ref"]
    drafted = view["notices"].get("drafted")
    if not drafted:
        raise Refused(f"{inc_ref}: draft the notices first (trail incidents notify {inc_ref} --draft --by ...)")
    if not view["notices"].get("approved"):
        raise Refused(f"{inc_ref}: the notices need a second responder's approval (--approve) before sending")
    spec = resolver_spec or settings.contact_resolver
    if not spec:
        raise ConfigError(
            "TRAIL_CONTACT_RESOLVER is not set: trail holds no contact details; configure the organisation's "
            "resolver (module:attr, entrypoint:NAME or command:PROGRAM) — see examples/contact_resolver.py"
        )
    refs = backend.subject_refs(inc_ref)
    digest = evidence.subjects_digest(refs)
    if digest != drafted["subjects_digest"]:
        raise Refused(
            f"{inc_ref}: the affected subjects changed since the notice was drafted "
            f"({drafted['subjects']} then, {len(refs)} now): draft and approve again"
        )
    resolver = load_resolver(spec)
    channel = make_channel(channel_spec or settings.notice_channel, settings.effective_outbox_dir / "notices")
    ctx = document_context(view, _playbook(settings), settings.timezone)
    render = _renderer(ctx)
    stop_event = stop or threading.Event()
    client = _audit_client(settings, backend)
    categories = ["email"] if channel.name.startswith("smtp") or channel.name == "outbox" else ["phone"]

    audit_events = 0

    def on_result(r: Any) -> None:
        nonlocal audit_events
        audit_events += 1
        client.record_pseudonymised(
            subject_refs=[r.subject_ref],
            actor={"kind": "staff", "id": by},
            action="use",
            data_categories=categories,
            purpose=f"notice to the individual of incident {inc_ref} (PIPL Art. 57)",
            legal_basis="law",
            target={"system": NOTICE_SYSTEM, "dataset": inc_ref},
            outcome="success" if r.status == "sent" else "error",
            attributes={
                "incident": inc_ref,
                "notice_id": r.notice_id,
                "batch": r.batch_id,
                "channel": r.channel,
                "delivery": r.status,
                "attempt": str(r.attempt),
            },
        )

    bar: Any = None
    task: Any = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        bar = Progress("notices", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False)

    def on_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(task, completed=done, total=total)

    previous = None
    if stop is None and threading.current_thread() is threading.main_thread():

        def on_signal(_signum: int, _frame: Any) -> None:
            stop_event.set()
            print("\nstopping after the notice in flight; run the same command again to resume", file=sys.stderr)

        previous = signal.signal(signal.SIGINT, on_signal)
    with ledger_for(settings) as ledger:
        batch_id = plan_batch(ledger, view["id"], refs, channel.name)
        backend.call(
            "notice_batch",
            inc_ref,
            {
                "by": by,
                "batch": {"batch_id": batch_id, "state": "started", "channel": channel.name, "total": len(refs)},
            },
        )
        try:
            if bar is not None:
                bar.start()
                task = bar.add_task("send", total=len(refs))
            summary = run_batch(
                ledger,
                batch_id,
                resolver=resolver,
                channel=channel,
                render=render,
                on_result=on_result,
                progress=on_progress,
                stop=stop_event,
                resend_in_doubt=resend_in_doubt,
                retry_backoff_s=retry_backoff_s,
            )
        finally:
            if bar is not None:
                bar.stop()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            client.close(timeout=30)
            close = getattr(channel, "close", None)
            if callable(close):
                close()
    state = "interrupted" if summary.interrupted else ("finished" if summary.finished else "incomplete")
    counts = {
        "batch_id": batch_id,
        "state": state,
        "channel": channel.name,
        "total": summary.total,
        "sent": summary.sent,
        "failed": summary.failed,
        "in_doubt": summary.in_doubt,
        "pending": summary.pending,
        "skipped": summary.skipped,
    }
    backend.call("notice_batch", inc_ref, {"by": by, "batch": counts})
    after = backend.show(inc_ref)
    ob = next((o for o in after["obligations"] if o["id"] == "individual_notice"), None)
    if summary.finished and summary.failed == 0 and ob is not None and ob["status"] == "open":
        backend.call(
            "meet",
            inc_ref,
            {
                "obligation": "individual_notice",
                "by": by,
                "how": f"{summary.sent} notices via {channel.name}, batch {batch_id}",
                "reference": batch_id,
            },
        )
    log.info("notify.batch_done", incident=inc_ref, **{k: v for k, v in counts.items() if k != "channel"})
    return {
        **counts,
        "interrupted": summary.interrupted,
        "elapsed_s": round(summary.elapsed, 2),
        "audit_events": audit_events,
    }
