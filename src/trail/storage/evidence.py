"""The SQL behind an incident's evidence: the events in a scope, counted in the store.

A scope is plain data: event ids cited by alerts, and actor windows in which the actor's
moving actions count. ``trail.incidents.evidence`` decides what a scope is and what the
counts mean; this module only turns a scope into statements.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from trail.storage.store import Store

#: (actor id, from, to) — inclusive at both ends.
ActorWindow = tuple[str, datetime, datetime]


def _scoped(
    event_ids: Sequence[str], windows: Sequence[ActorWindow], actions: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"ids": list(event_ids), "moving": list(actions)}
    clauses = ["event_id IN {ids:Array(UUID)}"] if event_ids else []
    for i, (actor, start, end) in enumerate(windows):
        params[f"a{i}"], params[f"s{i}"], params[f"e{i}"] = actor, start, end
        clauses.append(
            f"(actor_id = {{a{i}:String}} AND occurred_at >= {{s{i}:DateTime64(6, 'UTC')}} "
            f"AND occurred_at <= {{e{i}:DateTime64(6, 'UTC')}} AND action IN {{moving:Array(String)}})"
        )
    where = ("(" + " OR ".join(clauses) + ")") if clauses else "0"
    sql = (
        "SELECT event_id, hash, occurred_at, actor_id, action, subject_refs, record_count, data_categories, "
        "target_system, destination_kind, destination_name, destination_region "
        f"FROM {{db}}.events FINAL WHERE {where} ORDER BY event_id, producer_id, producer_seq LIMIT 1 BY event_id"
    )
    return sql, params


def aggregates(
    store: Store,
    event_ids: Sequence[str],
    windows: Sequence[ActorWindow],
    actions: Sequence[str],
    sensitive: Sequence[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Counts over the events in scope (once each), and over the subjects they name."""
    inner, params = _scoped(event_ids, windows, actions)
    params["sensitive"] = list(sensitive)
    [agg] = store.query(
        "SELECT count() AS events, sum(record_count) AS records, "
        "sumIf(record_count, empty(subject_refs)) AS unlisted, "
        "sumIf(record_count, empty(subject_refs) AND hasAny(data_categories, {sensitive:Array(String)})) "
        "AS unlisted_sensitive, "
        "min(occurred_at) AS first, max(occurred_at) AS last, "
        "groupUniqArrayArray(data_categories) AS categories, groupUniqArray(actor_id) AS actors, "
        "groupUniqArray(target_system) AS systems, "
        "groupUniqArray(tuple(destination_kind, destination_name, destination_region)) AS destinations, "
        "groupArray(tuple(toString(event_id), hash)) AS pairs "
        f"FROM ({inner})",
        params,
    )
    [subjects] = store.query(
        "SELECT uniqExact(ref) AS distinct_subjects, "
        "uniqExactIf(ref, hasAny(cats, {sensitive:Array(String)})) AS sensitive_subjects "
        f"FROM (SELECT arrayJoin(subject_refs) AS ref, data_categories AS cats FROM ({inner}))",
        params,
    )
    return agg, subjects


def subject_refs(
    store: Store, event_ids: Sequence[str], windows: Sequence[ActorWindow], actions: Sequence[str]
) -> Iterator[str]:
    """The distinct subject refs in scope, sorted, streamed."""
    inner, params = _scoped(event_ids, windows, actions)
    for block in store.stream_rows(
        f"SELECT DISTINCT arrayJoin(subject_refs) AS ref FROM ({inner}) ORDER BY ref", params
    ):
        for row in block:
            yield str(row[0])


def stored_count(store: Store, event_ids: Sequence[str]) -> int:
    """How many of these events the store holds (each once, however often delivered)."""
    [row] = store.query(
        "SELECT uniqExact(event_id) AS n FROM {db}.events WHERE event_id IN {ids:Array(UUID)}", {"ids": list(event_ids)}
    )
    return int(row["n"])
