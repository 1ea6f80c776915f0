"""Individuals' requests (PIPL Art. 50; NDSR Art. 23): each an event-sourced aggregate.

Kinds: access, copy, correction, deletion, consent_withdrawal, portability. Commands check their
rules first and raise :class:`Refused` without recording anything; event bodies never refuse,
so a request's history always replays. States: ``open`` → ``responded`` (an answer given, with
the documents handed over) → ``closed`` (with the outcome); ``open``/``responded`` →
``refused`` (with the reason, which is required: PIPL Art. 50 "reasons given for refusals").

The person is held only by their keyed reference; the raw id never reaches this module. The
deadline is fixed when the request is opened (``deadline``: days, unit, due_at, source,
verification status) so a later change of configuration does not move an existing clock.

This module's path is storage schema (stored events record their class path): do not move it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from eventsourcing.domain import Aggregate, event

from trail.errors import Refused, ValidationError

KINDS: Final = ("access", "copy", "correction", "deletion", "consent_withdrawal", "portability")
OUTCOMES: Final = ("done", "partial", "withdrawn")
DEFAULT_WORKING_DAYS: Final = 15
#: GB/T 35273-2020 §8.7: answer within 30 days (the outer bound whatever is configured).
OUTER_BOUND_DAYS: Final = 30
DUE_SOON: Final = timedelta(days=3)
DEFAULT_SOURCE: Final = (
    "trail default: 15 working days (PIPL Art. 50 sets no number; MIIT Order 24 Art. 12 answers "
    "complaints within 15 days)"
)
OUTER_SOURCE: Final = "GB/T 35273-2020 §8.7: at most 30 days"
#: What a deletion or withdrawal closed as done makes the trail expect for the person.
EXPECTS: Final[dict[str, tuple[str, ...]]] = {
    "deletion": ("delete", "destroy", "anonymize"),
    "consent_withdrawal": ("consent_withdraw",),
}


def request_ref(rid: uuid.UUID) -> str:
    return "REQ-" + rid.hex[:8].upper()


def add_working_days(start: datetime, days: int) -> datetime:
    """``start`` plus ``days`` working days (Monday to Friday) at the same time of day.
    Public holidays are not known to trail: configure fewer days where they matter."""
    at = start
    left = days
    while left > 0:
        at += timedelta(days=1)
        if at.weekday() < 5:
            left -= 1
    return at


def parse_deadlines(text: str) -> dict[str, int]:
    """``TRAIL_REQUEST_DEADLINES``: ``deletion=10,access=15`` (working days per kind)."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        kind, _, days = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS or not days.strip().isdigit() or not 1 <= int(days) <= OUTER_BOUND_DAYS:
            raise ValidationError(
                "TRAIL_REQUEST_DEADLINES",
                f"'{part}': give kind=working days (1-{OUTER_BOUND_DAYS}), kinds {', '.join(KINDS)}",
            )
        out[kind] = int(days)
    return out


def deadline_for(kind: str, received_at: datetime, configured: dict[str, int]) -> dict[str, Any]:
    days = configured.get(kind, DEFAULT_WORKING_DAYS)
    due = add_working_days(received_at, days)
    outer = received_at + timedelta(days=OUTER_BOUND_DAYS)
    capped = outer < due
    return {
        "days": days,
        "unit": "working days",
        "due_at": fmt(min(due, outer)),
        "source": "TRAIL_REQUEST_DEADLINES" if kind in configured else DEFAULT_SOURCE,
        "outer_bound": OUTER_SOURCE,
        "capped_by_outer_bound": capped,
        "status": "verify",
    }


def fmt(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def clock(due_at: str, answered_at: str | None, now: datetime) -> dict[str, Any]:
    """``state``: answered_on_time | answered_late | ok | due_soon | overdue; the flags shown."""
    due = parse(due_at)
    if answered_at:
        on_time = parse(answered_at) <= due
        return {"state": "answered_on_time" if on_time else "answered_late", "due_soon": False, "overdue": False}
    left = due - now
    if left < timedelta(0):
        return {"state": "overdue", "due_soon": False, "overdue": True}
    if left <= DUE_SOON:
        return {"state": "due_soon", "due_soon": True, "overdue": False}
    return {"state": "ok", "due_soon": False, "overdue": False}


class SubjectRequest(Aggregate):
    @event("Opened")
    def __init__(
        self,
        id: uuid.UUID,
        kind: str,
        subject_ref: str,
        received_at: str,
        channel: str,
        note: str,
        deadline: dict[str, Any],
        at: str,
        by: str,
    ) -> None:
        self.ref = request_ref(id)
        self.kind = kind
        self.subject_ref = subject_ref
        self.received_at = received_at
        self.channel = channel
        self.note = note
        self.deadline = dict(deadline)
        self.opened_at = at
        self.opened_by = by
        self.status = "open"
        self.responses: list[dict[str, Any]] = []
        self.documents: list[str] = []
        self.answered_at: str | None = None
        self.refusal: dict[str, Any] | None = None
        self.outcome: dict[str, Any] | None = None

    # ------------------------------------------------------------------ commands
    def respond(self, summary: str, documents: list[str], *, at: str, by: str) -> None:
        if self.status not in ("open", "responded"):
            raise Refused(f"{self.ref} is {self.status}; a response is recorded only while it is open")
        if not summary.strip():
            raise Refused("--summary: say what was answered or handed over")
        self._responded(summary=summary.strip()[:2000], documents=[d[:256] for d in documents][:50], at=at, by=by)

    def refuse(self, reason: str, *, at: str, by: str) -> None:
        if self.status not in ("open", "responded"):
            raise Refused(f"{self.ref} is {self.status}; only an open request can be refused")
        if len(reason.strip()) < 3:
            raise Refused("--reason: a refusal must give its reason (PIPL Art. 50); nothing was recorded")
        self._refused(reason=reason.strip()[:2000], at=at, by=by)

    def close(self, outcome: str, note: str, *, at: str, by: str) -> None:
        if self.status not in ("open", "responded"):
            raise Refused(f"{self.ref} is {self.status} already")
        if outcome not in OUTCOMES:
            raise Refused(f"--outcome: one of {', '.join(OUTCOMES)}")
        if outcome == "done" and self.status == "open" and self.kind in ("access", "copy", "portability"):
            raise Refused(f"{self.ref}: record what was handed over first (`trail requests respond`)")
        expects = list(EXPECTS.get(self.kind, ())) if outcome == "done" else []
        self._closed(outcome=outcome, note=note.strip()[:2000], expects=expects, at=at, by=by)

    # ------------------------------------------------------------------ events
    @event("Responded")
    def _responded(self, summary: str, documents: list[str], at: str, by: str) -> None:
        self.responses.append({"summary": summary, "documents": list(documents), "at": at, "by": by})
        self.documents.extend(documents)
        self.status = "responded"
        if self.answered_at is None:
            self.answered_at = at

    @event("Refused")
    def _refused(self, reason: str, at: str, by: str) -> None:
        self.refusal = {"reason": reason, "at": at, "by": by}
        self.status = "refused"
        if self.answered_at is None:
            self.answered_at = at

    @event("Closed")
    def _closed(self, outcome: str, note: str, expects: list[str], at: str, by: str) -> None:
        self.outcome = {"outcome": outcome, "note": note, "expects": list(expects), "at": at, "by": by}
        self.status = "closed"
        if self.answered_at is None:
            self.answered_at = at
