"""The subject report (PIPL Art. 45, Shenzhen Art. 28, Xiamen Art. 13): for one person, every
operation on their data, oldest first, who holds it now and for what, whom it was given to,
and every time the trail itself was searched for them.

Built from the store by the person's keyed reference only: the raw id never reaches this
module. Staff ids appear only where the organisation allows it (``TRAIL_REPORT_STAFF_IDS=yes``);
otherwise a staff actor is shown by role and department. The JSON form is a contract:
``{"subject_ref", "period", "events", "recipients", "lookups"}`` (plus ``summary`` and
``generated_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from trail.errors import ValidationError
from trail.events.model import SENSITIVE_CATEGORIES, format_timestamp, parse_timestamp
from trail.storage.reports import subject_rows
from trail.storage.store import Store

#: At most this many of the person's events in one report (a person with more gets a clear error).
MAX_EVENTS: Final = 1_000_000
DELETING: Final = frozenset({"delete", "destroy"})
ANONYMISING: Final = frozenset({"anonymize", "deidentify"})
RECIPIENT_KINDS: Final = ("third_party", "abroad", "public")


@dataclass(frozen=True)
class Period:
    start: datetime | None
    end: datetime | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "from": format_timestamp(self.start) if self.start else None,
            "to": format_timestamp(self.end) if self.end else None,
        }


def parse_bound(field: str, text: str | None) -> datetime | None:
    """``2026-11-01`` (midnight UTC) or an RFC 3339 timestamp; None when not given."""
    if not text:
        return None
    text = text.strip()
    if len(text) == 10:
        try:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise ValidationError(field, "a date like 2026-11-01 or an RFC 3339 timestamp") from None
    return parse_timestamp(field, text)


def period_of(start: str | None, end: str | None) -> Period:
    p = Period(parse_bound("from", start), parse_bound("to", end))
    if p.start and p.end and p.end <= p.start:
        raise ValidationError("to", "must be later than --from")
    return p


def _actor(row: dict[str, Any], show_staff: bool) -> dict[str, str]:
    out = {"kind": row["actor_kind"]}
    if row["actor_kind"] != "staff" or show_staff:
        out["id"] = row["actor_id"]
    if row["actor_role"]:
        out["role"] = row["actor_role"]
    if row["actor_department"]:
        out["department"] = row["actor_department"]
    return out


def event_row(r: dict[str, Any], show_staff: bool) -> dict[str, Any]:
    """One operation as the report shows it, from a stored row (``storage.reports.subject_rows``)."""
    cats = list(r["data_categories"])
    dest = {k: r[f"destination_{k}"] for k in ("kind", "name", "region") if r[f"destination_{k}"]}
    return {
        "occurred_at": r["occurred_at"],
        "event_id": r["event_id"],
        "action": r["action"],
        "service": r["source_service"],
        "department": r["actor_department"],
        "actor": _actor(r, show_staff),
        "purpose": r["purpose"],
        "legal_basis": r["legal_basis"],
        "consent_ref": r["consent_ref"],
        "categories": cats,
        "sensitive": sorted(c for c in cats if c in SENSITIVE_CATEGORIES),
        "system": r["target_system"],
        "dataset": r["target_dataset"],
        "recipient": dest or None,
        "deletion": r["action"] in DELETING,
        "anonymisation": r["action"] in ANONYMISING,
        "outcome": r["outcome"],
    }


def lookup_row(r: dict[str, Any], show_staff: bool) -> dict[str, Any]:
    return {
        "occurred_at": r["occurred_at"],
        "by": _actor(r, show_staff),
        "purpose": r["purpose"],
        "endpoint": r["target_resource"],
        "outcome": r["outcome"],
    }


def recipients(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every third party, place abroad and publication the person's data went to (successful
    operations only), with the categories given, the purposes, and the first and last time."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        rec = r["recipient"]
        if not rec or rec.get("kind") not in RECIPIENT_KINDS or r["outcome"] != "success":
            continue
        key = (rec["kind"], rec.get("name", ""), rec.get("region", ""))
        item = out.setdefault(
            key,
            {
                "kind": key[0],
                "name": key[1],
                "region": key[2],
                "first_at": r["occurred_at"],
                "last_at": r["occurred_at"],
                "categories": [],
                "purposes": [],
                "times": 0,
            },
        )
        item["last_at"] = r["occurred_at"]
        item["times"] += 1
        for c in r["categories"]:
            if c not in item["categories"]:
                item["categories"].append(c)
        if r["purpose"] not in item["purposes"]:
            item["purposes"].append(r["purpose"])
    return list(out.values())


def holders(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Who holds the data now: every system/dataset that recorded a successful operation on it,
    since when, for which purposes, and whether it was deleted or anonymised since (then it is
    no longer held there)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["outcome"] != "success":
            continue
        key = (r["system"], r["dataset"])
        item = out.get(key)
        if item is None or item["deleted_at"]:
            item = out[key] = {
                "system": key[0],
                "dataset": key[1],
                "service": r["service"],
                "since": r["occurred_at"],
                "purposes": [],
                "categories": [],
                "deleted_at": None,
            }
        if r["deletion"] or r["anonymisation"]:
            item["deleted_at"] = r["occurred_at"]
            continue
        if r["purpose"] not in item["purposes"]:
            item["purposes"].append(r["purpose"])
        for c in r["categories"]:
            if c not in item["categories"]:
                item["categories"].append(c)
    return list(out.values())


def build_subject_report(
    store: Store,
    subject_ref: str,
    period: Period,
    *,
    show_staff: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report's JSON form, from the person's keyed reference."""
    events = subject_rows(store, subject_ref, period.start, period.end, access_log=False, limit=MAX_EVENTS + 1)
    if len(events) > MAX_EVENTS:
        raise ValidationError("from", f"more than {MAX_EVENTS} events in the period; give a shorter --from/--to")
    looked = subject_rows(store, subject_ref, period.start, period.end, access_log=True, limit=MAX_EVENTS)
    rows = [event_row(e, show_staff) for e in events]
    held = holders(rows)
    current = [h for h in held if not h["deleted_at"]]
    return {
        "subject_ref": subject_ref,
        "period": period.as_dict(),
        "generated_at": format_timestamp(now or datetime.now(UTC)),
        "staff_ids_shown": show_staff,
        "events": rows,
        "recipients": recipients(rows),
        "lookups": [lookup_row(e, show_staff) for e in looked],
        "summary": {
            "events": len(rows),
            "first_at": rows[0]["occurred_at"] if rows else None,
            "last_at": rows[-1]["occurred_at"] if rows else None,
            "held_by": current,
            "no_longer_held_by": [h for h in held if h["deleted_at"]],
            "purposes": sorted({p for h in current for p in h["purposes"]}),
            "sensitive_categories": sorted({c for r in rows for c in r["sensitive"]}),
            "deletions": sum(1 for r in rows if r["deletion"]),
            "anonymisations": sum(1 for r in rows if r["anonymisation"]),
            "lookups": len(looked),
        },
    }
