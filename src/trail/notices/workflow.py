"""Notices to the people an incident affected: draft → approve (four eyes) → send, each step recorded.

**Draft** writes the notice (zh and en, Markdown and HTML) into the incident's folder and records
the number of people with a digest of their refs; **approve** is a second responder's;
**send** plans and runs a resumable batch (:mod:`trail.notices.runner`) over the organisation's
contact resolver and a channel. Each delivery outcome becomes an audit event in the trail,
through the SDK, with the subject's ref — never a contact detail — and the batch's counts are
recorded on the incident. When every person has been reached, the ``individual_notice``
obligation is met with the batch as proof.

Nothing here prints or handles signals: ``send`` takes a ``stop`` event and a
``progress(done, total)`` callback, which ``trail incidents notify --send`` wires to a progress
bar and to Ctrl-C. The ledger lives beside the incidents (their SQLite file, or a schema of
their PostgreSQL database). Works with either incident backend (in-process or ``trail up``'s API).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlparse, urlunparse

from trail.config import Settings
from trail.detect.rules import NOTICE_JOB
from trail.documents.plaintext import markdown_to_text
from trail.documents.rendering import render, write_documents
from trail.errors import ConfigError
from trail.incidents import evidence
from trail.incidents.domain import Refused
from trail.incidents.filing import document_context, incident_dir
from trail.incidents.playbook import load_playbook
from trail.logging import get_logger
from trail.notices.channels import make_channel
from trail.notices.ledger import NoticeLedger, open_ledger
from trail.notices.model import Contact, RenderedNotice
from trail.notices.resolvers import load_resolver
from trail.notices.runner import DeliveryResult, Render, deliveries, plan_batch, run_batch
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport, KafkaTransport
from trail.storage.writer import store_writer

log = get_logger("trail.notify")
#: The ``source.service`` and ``target.system`` of the delivery audit events.
NOTICE_SYSTEM = NOTICE_JOB
_SUBJECTS = {"zh": "个人信息安全事件告知书", "en": "Notice of a personal information security incident"}


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
def ledger_for(settings: Settings) -> Iterator[NoticeLedger]:
    """The notice ledger beside the incident store, closed on leaving."""
    target, schema = _ledger_target(settings)
    ledger = open_ledger(target, schema=schema) if schema else open_ledger(target)
    try:
        yield ledger
    finally:
        ledger.close()


def draft(backend: Any, settings: Settings, ref: str, *, by: str) -> dict[str, Any]:
    """Write the notice (zh, en; Markdown and HTML) and record the draft with its recipients."""
    view = backend.show(ref)
    refs = backend.subject_refs(view["ref"])
    if not refs:
        raise Refused(
            f"{view['ref']}: the evidence names no affected subjects, so there is no one to address; "
            "for people not identified in the trail, issue a public announcement (trail incidents report "
            "--kind public_announcement)"
        )
    ctx = document_context(view, load_playbook(settings.playbook), settings.timezone)
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
    """Record a second responder's approval of the drafted notice."""
    view = backend.call("notices_approved", ref, {"by": by})
    return {"incident": view["ref"], "approved_by": by}


def status(settings: Settings, backend: Any, ref: str) -> dict[str, Any]:
    """Delivery counts of the incident's notices, and its batches."""
    view = backend.show(ref)
    with ledger_for(settings) as ledger:
        counts = deliveries(ledger, view["id"])
    return {"incident": view["ref"], "deliveries": dict(counts), "batches": view["notices"]["batches"]}


def notice_renderer(ctx: Mapping[str, Any]) -> Render:
    """Render the notice once per language; every person gets the same text (no personal data in it).

    The e-mail's text part is the notice's Markdown as plain text, its HTML part the HTML page.
    """
    cache: dict[str, RenderedNotice] = {}

    def render_for(contact: Contact) -> RenderedNotice:
        lang = contact.language if contact.language in ("zh", "en") else "zh"
        if lang not in cache:
            org = ctx["org"]["name"] if lang == "zh" else ctx["org"].get("name_en") or ctx["org"]["name"]
            cache[lang] = RenderedNotice(
                subject=f"{org}: {_SUBJECTS[lang]}",
                body_text=markdown_to_text(render("individual_notice", ctx, lang=lang, fmt="md")),
                body_html=render("individual_notice", ctx, lang=lang, fmt="html"),
                language=lang,
            )
        return cache[lang]

    return render_for


def audit_client(settings: Settings, backend: Any, bootstrap: str | None = None) -> Client:
    """An SDK client for the audit events of deliveries.

    Through the broker at ``bootstrap`` (the running stack's), else ``TRAIL_KAFKA_BOOTSTRAP``'s,
    else straight into the store the in-process incident backend holds.
    """

    broker = bootstrap or settings.kafka_bootstrap
    transport: Any
    if broker:
        from trail.config import kafka_options

        transport = KafkaTransport(broker, settings.topic("events"), extra=kafka_options(settings))
    else:
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
    bootstrap: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    retry_backoff_s: float = 5.0,
) -> dict[str, Any]:
    """Send (or resume sending) one notice per affected subject; returns the batch summary.

    ``bootstrap`` is the broker the delivery audit events go through (see :func:`audit_client`);
    ``progress(done, total)`` and ``stop`` are handed to :func:`~trail.notices.runner.run_batch`.
    """
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
    ctx = document_context(view, load_playbook(settings.playbook), settings.timezone)
    client = audit_client(settings, backend, bootstrap)
    categories = ["email"] if channel.name.startswith("smtp") or channel.name == "outbox" else ["phone"]
    approved_by = str(view["notices"]["approved"]["by"])

    audit_events = 0

    def on_result(r: DeliveryResult) -> None:
        nonlocal audit_events
        audit_events += 1
        client.record_pseudonymised(
            subject_refs=[r.subject_ref],
            # trail's approved bulk job (see trail.detect.rules.NOTICE_JOB), not the responder's own
            # handling: the responders are named in the attributes.
            actor={"kind": "system", "id": NOTICE_SYSTEM},
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
                "sent_by": by,
                "approved_by": approved_by,
            },
        )

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
            summary = run_batch(
                ledger,
                batch_id,
                resolver=resolver,
                channel=channel,
                render=notice_renderer(ctx),
                on_result=on_result,
                progress=progress,
                stop=stop,
                resend_in_doubt=resend_in_doubt,
                retry_backoff_s=retry_backoff_s,
            )
        finally:
            client.close(timeout=30)
            channel.close()
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
