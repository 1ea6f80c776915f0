"""The SQL behind retention classes and the ``retention_overdue`` detector.

Class predicates are built from validated enumerations (actions, destination kinds, actor kinds,
categories of the event contract), never from free text, so they are written into the query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from trail.storage.store import Store


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def class_predicate(
    actions: Sequence[str], destination_kinds: Sequence[str], actor_kinds: Sequence[str], categories: Sequence[str]
) -> str:
    """A retention class as a condition: an event is in the class when it matches any of the listed
    criteria; a class without criteria holds every event. The names are validated enumerations."""

    def quoted(items: Sequence[str]) -> str:
        return ", ".join("'" + x.replace("\\", "").replace("'", "") + "'" for x in items)

    parts = []
    if actions:
        parts.append(f"action IN ({quoted(actions)})")
    if destination_kinds:
        parts.append(f"destination_kind IN ({quoted(destination_kinds)})")
    if actor_kinds:
        parts.append(f"actor_kind IN ({quoted(actor_kinds)})")
    if categories:
        parts.append(f"hasAny(data_categories, [{quoted(categories)}])")
    return "(" + " OR ".join(parts) + ")" if parts else "1"


def class_spans(
    store: Store, ranges: Sequence[tuple[str, int, int]], predicates: dict[str, str]
) -> dict[str, tuple[int, datetime | None]]:
    """For one checkpoint's ranges: per class, the events it holds and the newest ``occurred_at``."""
    if not ranges or not predicates:
        return {}
    where = " OR ".join(
        f"(producer_id = {{p{i}:String}} AND producer_seq BETWEEN {{a{i}:UInt64}} AND {{b{i}:UInt64}})"
        for i in range(len(ranges))
    )
    params: dict[str, Any] = {}
    for i, (p, a, b) in enumerate(ranges):
        params[f"p{i}"], params[f"a{i}"], params[f"b{i}"] = p, a, b
    names = list(predicates)
    cols = ", ".join(
        f"countIf({predicates[n]}) AS n{i}, maxIf(occurred_at, {predicates[n]}) AS t{i}" for i, n in enumerate(names)
    )
    rows = store.query(f"SELECT {cols} FROM {{db}}.events WHERE {where}", params)
    out: dict[str, tuple[int, datetime | None]] = {}
    row = rows[0] if rows else {}
    for i, n in enumerate(names):
        count = int(row.get(f"n{i}") or 0)
        out[n] = (count, _aware(row[f"t{i}"]) if count else None)
    return out


def overdue_people(store: Store, system: str, dataset: str, collected_before: datetime) -> dict[str, Any]:
    """People whose data was collected into ``system/dataset`` before ``collected_before`` and not
    deleted, destroyed, anonymised or de-identified there since their last collection: the count,
    the oldest collection, and a few collection events as evidence."""
    rows = store.query(
        "SELECT count() AS people, min(collected) AS oldest, groupArray(10)(evidence) AS evidence FROM ("
        "  SELECT ref, max(c_at) AS collected, argMax(eid, c_at) AS evidence, max(d_at) AS deleted FROM ("
        "    SELECT arrayJoin(subject_refs) AS ref,"
        "      if(action = 'collect', occurred_at, toDateTime64(0, 6, 'UTC')) AS c_at,"
        "      if(action IN ('delete', 'destroy', 'anonymize', 'deidentify'), occurred_at,"
        "         toDateTime64(0, 6, 'UTC')) AS d_at,"
        "      toString(event_id) AS eid"
        "    FROM {db}.events"
        "    WHERE target_system = {s:String} AND target_dataset = {d:String} AND outcome = 'success'"
        "      AND action IN ('collect', 'delete', 'destroy', 'anonymize', 'deidentify')"
        "  ) GROUP BY ref"
        "  HAVING collected > toDateTime64(0, 6, 'UTC') AND collected < {before:DateTime64(6, 'UTC')}"
        "     AND deleted < collected"
        ")",
        {"s": system, "d": dataset, "before": collected_before},
    )
    row = rows[0] if rows else {"people": 0, "oldest": None, "evidence": []}
    people = int(row["people"] or 0)
    return {
        "people": people,
        "oldest": _aware(row["oldest"]) if people else None,
        "evidence": [str(e) for e in row["evidence"]] if people else [],
    }
