"""An incident's documents: its record as the documents' context, rendered, written and recorded.

:func:`document_context` turns an incident's view and the playbook (organisation, notice texts)
into the plain-dict context :mod:`trail.documents` renders; :func:`write_incident_documents`
writes the documents into the incident's folder of the outbox and records each as issued, with
a digest of its files. :func:`plan_document` renders the graded emergency plan itself as the
filing document (Xiamen Art. 8(4)), its drill schedule counted from the last drill the incident
store holds. Used by ``trail incidents report``, ``trail playbook render``, drills, the notices'
workflow and the demo, with either incident backend (in-process or ``trail up``'s API).
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trail.config import Settings
from trail.documents.kinds import PLAN_KIND
from trail.documents.rendering import render_bytes, write_documents
from trail.incidents.application import IncidentService
from trail.incidents.playbook import Playbook, load_playbook


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


def incident_dir(settings: Settings, ref: str) -> Path:
    """The incident's folder in the outbox (documents, the notice text)."""
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
    view = backend.show(ref)
    ctx = document_context(view, load_playbook(settings.playbook), settings.timezone)
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


def plan_document(settings: Settings, path: Path | None, *, lang: str, fmt: str) -> bytes:
    """The graded emergency plan as a filing document (Xiamen Art. 8(4)): Markdown, HTML or PDF bytes."""
    playbook = load_playbook(path or settings.playbook)
    ctx = plan_context(playbook, settings.timezone, last_drill(settings))
    return render_bytes(PLAN_KIND, ctx, lang=lang, fmt=fmt)


def last_drill(settings: Settings) -> str | None:
    """The date of the last drill recorded in the incident store (``trail drill``), if any."""
    if not settings.incident_store and not settings.incident_store_path.exists():
        return None
    service = IncidentService.from_settings(settings)
    try:
        drills = [r["discovered_at"] for r in service.summaries() if r["drill"]]
    finally:
        service.shutdown()
    return max(drills)[:10] if drills else None


def plan_context(playbook: Playbook, timezone: str, last_drill: str | None = None) -> dict[str, Any]:
    """The plan's context; ``last_drill`` (a date) wins over the playbook's ``drills.last`` when later."""
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
