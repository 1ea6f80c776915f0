"""Facts from the trail: what the alerts of an incident say was touched, computed in the store.

The scope of an incident opened from alerts is the events the alerts cite, plus every event
that moved data (copy, export, print, transfer, provide, disclose) by the same actors inside
the alerts' windows. From that scope the store computes the distinct subjects affected, those
of them touched with sensitive categories, the categories, the time window, actors, systems
and destinations. The result is frozen into the incident together with the query that
produced it and a digest over the (event id, hash) pairs in scope, so anyone can re-run the
query later and prove the evidence still describes the same, unaltered events.

People affected: the distinct subject refs in scope, plus the ``record_count`` of events in
scope that did not list their subjects (a bulk export of 50,000 rows without subject ids is
counted as 50,000 people: an upper bound, marked as such).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from trail.detect.alerts import parse_rfc3339
from trail.events.model import MOVING_ACTIONS, SENSITIVE_CATEGORIES
from trail.storage import evidence as sql
from trail.storage.store import Store

EVIDENCE_VERSION = 1


def scope_of(alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The query reference: which events are in scope, as plain data (kept in the incident)."""
    windows = sorted(
        {(str(a["actor"]), str(a["window_start"]), str(a["window_end"])) for a in alerts if a.get("actor")}
    )
    event_ids = sorted({str(e) for a in alerts for e in a.get("evidence", [])})
    return {
        "version": EVIDENCE_VERSION,
        "table": "events",
        "alert_ids": sorted(str(a["alert_id"]) for a in alerts),
        "event_ids": event_ids,
        "actor_windows": [{"actor": a, "from": s, "to": e} for a, s, e in windows],
        "moving_actions": sorted(MOVING_ACTIONS),
        "rule": "events cited by the alerts, plus moving actions by the alerts' actors inside the alerts' windows",
    }


def _query(scope: Mapping[str, Any]) -> tuple[list[str], list[sql.ActorWindow], list[str]]:
    windows = [
        (
            str(w["actor"]),
            datetime.fromtimestamp(parse_rfc3339(w["from"]), UTC),
            datetime.fromtimestamp(parse_rfc3339(w["to"]), UTC),
        )
        for w in scope["actor_windows"]
    ]
    return list(scope["event_ids"]), windows, list(scope["moving_actions"])


def compute(store: Store, scope: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """The evidence for ``scope``, computed in the store (ClickHouse does the counting)."""
    agg, subj = sql.aggregates(store, *_query(scope), sorted(SENSITIVE_CATEGORIES))
    pairs = sorted((str(e), str(h)) for e, h in agg.get("pairs", []))
    digest = hashlib.sha256("\n".join(f"{e} {h}" for e, h in pairs).encode()).hexdigest()
    distinct = int(subj["distinct_subjects"])
    unlisted = int(agg.get("unlisted") or 0)
    categories = sorted(c for c in agg.get("categories", []) if c)
    dests = [{"kind": k, "name": n, "region": r} for k, n, r in sorted(agg.get("destinations", [])) if k or n or r]
    events = int(agg.get("events") or 0)
    return {
        "computed_at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "query": dict(scope),
        "events": events,
        "records": int(agg.get("records") or 0),
        "distinct_subjects": distinct,
        "sensitive_subjects": int(subj["sensitive_subjects"]),
        "unlisted_records": unlisted,
        "people_affected": distinct + unlisted,
        "people_affected_is_upper_bound": unlisted > 0,
        "sensitive_people": int(subj["sensitive_subjects"]) + int(agg.get("unlisted_sensitive") or 0),
        "categories": categories,
        "sensitive_categories": [c for c in categories if c in SENSITIVE_CATEGORIES],
        "window_start": _ts(agg.get("first")) if events else None,
        "window_end": _ts(agg.get("last")) if events else None,
        "actors": sorted(a for a in agg.get("actors", []) if a),
        "systems": sorted(s for s in agg.get("systems", []) if s),
        "destinations": dests,
        "alert_ids": list(scope["alert_ids"]),
        "digest": digest,
    }


def subject_refs(store: Store, scope: Mapping[str, Any], *, chunk: int = 10_000) -> Iterator[str]:
    """The distinct subject refs in scope, sorted, streamed (for notices at scale)."""
    yield from sql.subject_refs(store, *_query(scope))


def subjects_digest(refs: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(refs)).encode()).hexdigest()


def _ts(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)
