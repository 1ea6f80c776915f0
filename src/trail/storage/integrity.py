"""The SQL behind integrity: checkpoints, their ranges, retention records and the verification scans.

``trail.integrity`` holds the logic (chains, Merkle trees, signatures, findings); this module
holds every statement it sends to the store. Records are the signed JSON documents as text.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trail.errors import StoreError
from trail.storage.schema import load_migrations, statements
from trail.storage.store import EVENT_COLUMNS, PAGE_JSON_SETTINGS, Store

CHECKPOINT_COLUMNS = ["seq", "hash", "prev", "created_at", "count", "root", "key_id", "signature", "record"]
RANGE_COLUMNS = ["checkpoint_seq", "producer_id", "first_seq", "last_seq", "tip_hash"]


# ------------------------------------------------------------------ the canonical encoding in SQL
def _opt(key: str, col: str) -> str:
    return f"if({col} != '', concat(',\"{key}\":', toJSONString({col})), '')"


def _opt_first(key: str, col: str) -> str:
    return f"if({col} != '', concat('\"{key}\":', toJSONString({col})), '')"


def _list(col: str) -> str:
    return f"concat('[', arrayStringConcat(arrayMap(x -> toJSONString(x), {col}), ','), ']')"


_LOCATION = (
    "concat('{', arrayStringConcat(arrayFilter(x -> x != '', ["
    "if(location_ip != '', concat('\"ip\":', toJSONString(location_ip)), ''), "
    "if(location_region != '', concat('\"region\":', toJSONString(location_region)), ''), "
    "if(location_site != '', concat('\"site\":', toJSONString(location_site)), '')]), ','), '}')"
)
_DESTINATION = (
    "if(destination_kind != '', concat(',\"destination\":{\"kind\":', toJSONString(destination_kind), "
    f"{_opt('name', 'destination_name')}, {_opt('region', 'destination_region')}, '}}'), '')"
)
_TARGET = (
    "concat('{', arrayStringConcat(arrayFilter(x -> x != '', ["
    f"{_opt_first('dataset', 'target_dataset')}, {_opt_first('resource', 'target_resource')}, "
    "concat('\"system\":', toJSONString(target_system))]), ','), '}')"
)
_ATTRIBUTES = (
    "concat('{', arrayStringConcat(arrayMap(k -> concat(toJSONString(k), ':', toJSONString(attributes[k])), "
    "arraySort(mapKeys(attributes))), ','), '}')"
)
#: The canonical encoding (sorted keys, compact, UTF-8) of a stored row without its hash, as SQL.
CANONICAL_SQL = (
    "concat("
    "'{\"action\":', toJSONString(action), "
    "',\"actor\":{', arrayStringConcat(arrayFilter(x -> x != '', ["
    f"{_opt_first('department', 'actor_department')}, concat('\"id\":', toJSONString(actor_id)), "
    f"concat('\"kind\":', toJSONString(actor_kind)), {_opt_first('role', 'actor_role')}]), ','), '}}', "
    f"',\"attributes\":', {_ATTRIBUTES}, "
    f"{_opt('consent_ref', 'consent_ref')}, "
    f"',\"data_categories\":', {_list('data_categories')}, "
    f"{_DESTINATION}, "
    "',\"event_id\":', toJSONString(toString(event_id)), "
    "',\"legal_basis\":', toJSONString(legal_basis), "
    f"',\"location\":', {_LOCATION}, "
    "',\"occurred_at\":\"', formatDateTime(occurred_at, '%Y-%m-%dT%H:%i:%S.%fZ', 'UTC'), '\"', "
    "',\"outcome\":', toJSONString(outcome), "
    '\',"producer":{"id":\', toJSONString(producer_id), \',"prev":\', toJSONString(producer_prev), '
    "',\"seq\":', toString(producer_seq), '}', "
    "',\"purpose\":', toJSONString(purpose), "
    "',\"record_count\":', toString(record_count), "
    '\',"schema":"trail.audit/v1"\', '
    '\',"source":{"environment":\', toJSONString(source_environment), \',"host":\', toJSONString(source_host), '
    "',\"service\":', toJSONString(source_service), '}', "
    f"',\"subject_refs\":', {_list('subject_refs')}, "
    f"',\"target\":', {_TARGET}, "
    "'}')"
)
#: The SHA-256 of that encoding, as lowercase hex: what a stored row's ``hash`` must equal.
RECOMPUTED_SQL = f"lower(hex(SHA256({CANONICAL_SQL})))"
_JSON_SETTINGS = " SETTINGS output_format_json_escape_forward_slashes = 0"


# ------------------------------------------------------------------ checkpoints
def checkpoint_records(store: Store) -> list[str]:
    """Every checkpoint record in the store (there may be several rows per number), by number."""
    return [str(r["record"]) for r in store.query("SELECT record FROM {db}.checkpoints ORDER BY seq")]


def last_checkpoint_record(store: Store) -> str | None:
    rows = store.query("SELECT record FROM {db}.checkpoints ORDER BY seq DESC LIMIT 1")
    return str(rows[0]["record"]) if rows else None


def last_checkpoint_seq(store: Store) -> int:
    """The sequence number of the newest checkpoint in the store (0: none yet)."""
    rows = store.query("SELECT max(seq) AS s FROM {db}.checkpoints")
    return int(rows[0]["s"] or 0) if rows else 0


def checkpoint_record(store: Store, seq: int) -> str | None:
    rows = store.query("SELECT record FROM {db}.checkpoints WHERE seq = {s:UInt64} LIMIT 1", {"s": seq})
    return str(rows[0]["record"]) if rows else None


def insert_checkpoint(store: Store, row: Sequence[Any], ranges: Sequence[Sequence[Any]]) -> None:
    """One checkpoint (``CHECKPOINT_COLUMNS``) and the producer ranges it seals (``RANGE_COLUMNS``)."""
    store.insert_rows("checkpoints", CHECKPOINT_COLUMNS, [list(row)])
    if ranges:
        store.insert_rows("checkpoint_ranges", RANGE_COLUMNS, [list(r) for r in ranges])


def sealed_tips(store: Store) -> dict[str, tuple[int, str]]:
    """Per producer: the last sealed seq and the hash at it."""
    rows = store.query(
        "SELECT producer_id, max(last_seq) AS last, argMax(tip_hash, last_seq) AS tip "
        "FROM {db}.checkpoint_ranges GROUP BY producer_id"
    )
    return {str(r["producer_id"]): (int(r["last"]), str(r["tip"])) for r in rows}


def unsealed_positions(store: Store) -> list[tuple[str, int, str, str]]:
    """``(producer, seq, hash, prev)`` of stored events beyond their producer's sealed tip."""
    rows = store.query(
        "SELECT DISTINCT e.producer_id AS p, e.producer_seq AS s, e.hash AS h, e.producer_prev AS prev "
        "FROM {db}.events AS e LEFT JOIN (SELECT producer_id, max(last_seq) AS last FROM {db}.checkpoint_ranges "
        "GROUP BY producer_id) AS t ON e.producer_id = t.producer_id "
        "WHERE e.producer_seq > t.last"
    )
    return [(str(r["p"]), int(r["s"]), str(r["h"]), str(r["prev"])) for r in rows]


def checkpoint_sealing(store: Store, producer_id: str, seq: int) -> str | None:
    """The record of the first checkpoint whose ranges seal this producer position."""
    rows = store.query(
        "SELECT c.record AS record FROM {db}.checkpoint_ranges AS r INNER JOIN {db}.checkpoints AS c "
        "ON c.seq = r.checkpoint_seq WHERE r.producer_id = {p:String} AND r.first_seq <= {s:UInt64} "
        "AND r.last_seq >= {s:UInt64} ORDER BY c.seq LIMIT 1",
        {"p": producer_id, "s": seq},
    )
    return str(rows[0]["record"]) if rows else None


def checkpoints_created_before(store: Store, before: datetime) -> list[str]:
    rows = store.query(
        "SELECT record FROM {db}.checkpoints WHERE created_at < {b:DateTime64(3, 'UTC')} ORDER BY seq",
        {"b": before.astimezone(UTC).replace(tzinfo=None)},
    )
    return [str(r["record"]) for r in rows]


def range_hashes(store: Store, producer_id: str, first: int, last: int) -> list[tuple[int, str]]:
    """``(seq, hash)`` of one producer's stored events from ``first`` to ``last``, in order."""
    rows = store.query(
        "SELECT DISTINCT producer_seq AS seq, hash FROM {db}.events WHERE producer_id = {p:String} "
        "AND producer_seq BETWEEN {a:UInt64} AND {b:UInt64} ORDER BY seq",
        {"p": producer_id, "a": first, "b": last},
    )
    return [(int(r["seq"]), str(r["hash"])) for r in rows]


# ------------------------------------------------------------------ retention
def retention_records(store: Store) -> list[str]:
    return [str(r["record"]) for r in store.query("SELECT record FROM {db}.retention_records ORDER BY seq")]


def next_retention_seq(store: Store) -> int:
    rows = store.query("SELECT max(seq) AS s FROM {db}.retention_records")
    return int(rows[0]["s"] or 0) + 1 if rows else 1


def insert_retention_record(store: Store, seq: int, digest: str, created_at: str, record: str) -> None:
    store.insert_rows("retention_records", ["seq", "hash", "created_at", "record"], [[seq, digest, created_at, record]])


def delete_range(store: Store, producer_id: str, first: int, last: int) -> None:
    """Delete one producer's events from ``first`` to ``last`` and their index rows."""
    if store.cluster:
        raise StoreError(
            "retention on a ClickHouse cluster is not supported yet: the deletions would have to run on each "
            "shard's local tables; expire with the tables' TTL or per shard, then record it"
        )
    cond = "producer_id = {p:String} AND producer_seq BETWEEN {a:UInt64} AND {b:UInt64}"
    params = {"p": producer_id, "a": first, "b": last}
    for index in ("pages_by_actor", "pages_by_subject"):
        store.command(
            f"DELETE FROM {{db}}.{index} WHERE event_id IN (SELECT event_id FROM {{db}}.events WHERE {cond})",
            params,
        )
    store.command(f"ALTER TABLE {{db}}.events DELETE WHERE {cond} SETTINGS mutations_sync = 2", params)


def ranges_with_events(store: Store, ranges: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Which of these ``(producer, first, last)`` ranges still hold a row in events."""
    if not ranges:
        return []
    table = f"retention_ranges_{uuid.uuid4().hex[:8]}"
    store.command(f"CREATE TABLE {{db}}.{table} (producer_id String, a UInt64, b UInt64) ENGINE = Memory")
    try:
        store.insert_rows(table, ["producer_id", "a", "b"], [list(r) for r in ranges])
        rows = store.query(
            f"SELECT DISTINCT r.producer_id AS p, r.a AS a, r.b AS b FROM {{db}}.events AS e "
            f"INNER JOIN {{db}}.{table} AS r ON e.producer_id = r.producer_id "
            "WHERE e.producer_seq BETWEEN r.a AND r.b"
        )
    finally:
        store.command(f"DROP TABLE IF EXISTS {{db}}.{table}")
    return sorted((str(r["p"]), int(r["a"]), int(r["b"])) for r in rows)


# ------------------------------------------------------------------ verification scans
@dataclass
class ScanSource:
    """The rows a verification reads: all events, or (``--since``) a scope built in the store."""

    sql: str
    tables: tuple[str, ...] = ()

    def drop(self, store: Store) -> None:
        for table in self.tables:
            store.command(f"DROP TABLE IF EXISTS {{db}}.{table}")

    def restrict(self, rows: str) -> str:
        """``rows`` (a table or a subquery with ``producer_id`` and ``producer_seq``) cut to this scope."""
        if not self.tables:
            return rows
        scope, known = self.tables
        return (
            f"(SELECT c.* FROM {rows} AS c LEFT JOIN {{db}}.{scope} AS s ON c.producer_id = s.producer_id "
            f"WHERE (s.producer_id != '' AND c.producer_seq >= s.from_seq) "
            f"OR c.producer_id NOT IN (SELECT producer_id FROM {{db}}.{known}))"
        )


ALL_EVENTS = ScanSource("{db}.events")


def scoped_source(store: Store, from_seq: dict[str, int], known: Sequence[str]) -> ScanSource:
    """Rows of each producer in ``from_seq`` from that seq on, plus every row of producers not in
    ``known``. Built as two small tables joined in the store, so the scan stays in native code."""
    suffix = uuid.uuid4().hex[:8]
    scope, known_table = f"verify_scope_{suffix}", f"verify_known_{suffix}"
    store.command(f"CREATE TABLE {{db}}.{scope} (producer_id String, from_seq UInt64) ENGINE = Memory")
    store.command(f"CREATE TABLE {{db}}.{known_table} (producer_id String) ENGINE = Memory")
    source = ScanSource(
        f"(SELECT e.* FROM {{db}}.events AS e INNER JOIN {{db}}.{scope} AS s ON e.producer_id = s.producer_id "
        "WHERE e.producer_seq >= s.from_seq UNION ALL SELECT * FROM {db}.events "
        f"WHERE producer_id NOT IN (SELECT producer_id FROM {{db}}.{known_table}))",
        (scope, known_table),
    )
    try:
        store.insert_rows(scope, ["producer_id", "from_seq"], [[p, s] for p, s in from_seq.items()])
        store.insert_rows(known_table, ["producer_id"], [[p] for p in known])
    except BaseException:
        source.drop(store)
        raise
    return source


def hash_mismatches(store: Store, source: ScanSource) -> list[tuple[str, int, str, str]]:
    """``(producer, seq, event_id, hash)`` of rows whose content does not hash to their hash in SQL."""
    rows = store.query(
        "SELECT DISTINCT producer_id AS p, producer_seq AS s, toString(event_id) AS e, hash AS h "
        f"FROM {source.sql} WHERE {RECOMPUTED_SQL} != hash" + _JSON_SETTINGS
    )
    return [(str(r["p"]), int(r["s"]), str(r["e"]), str(r["h"])) for r in rows]


def chain_rows(store: Store, source: ScanSource) -> Iterator[list[tuple[Any, ...]]]:
    """Blocks of ``(producer, seq, hash, prev, event_id)``, every distinct row, by producer and seq."""
    yield from store.stream_rows(
        "SELECT DISTINCT producer_id, producer_seq, hash, producer_prev, toString(event_id) AS event_id "
        f"FROM {source.sql} ORDER BY producer_id, producer_seq"
    )


def rows_by_event_ids(store: Store, event_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Every distinct stored row of these events (all columns), for exact checks in Python."""
    select = ", ".join(c if c != "event_id" else "toString(event_id) AS event_id" for c in EVENT_COLUMNS)
    return store.query(
        f"SELECT DISTINCT {select} FROM {{db}}.events WHERE toString(event_id) IN {{ids:Array(String)}}",
        {"ids": list(event_ids)},
    )


# ------------------------------------------------------------------ the copies of events
_COPY_VIEW = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS \{db\}\.\w+ TO \{db\}\.(?P<table>\w+) AS\s+"
    r"(?P<select>SELECT\s.*\sFROM \{db\}\.events\b.*)$",
    re.S,
)
_DROPPED_TABLE = re.compile(r"^DROP TABLE IF EXISTS \{db\}\.(?P<table>\w+)$")
_FROM_EVENTS = "FROM {db}.events"
#: The views' JSON settings, for the queries that rebuild the copies.
_COPY_SETTINGS = " SETTINGS " + ", ".join(f"{k} = {int(v)}" for k, v in PAGE_JSON_SETTINGS.items())


@dataclass(frozen=True)
class EventCopy:
    """A table that holds events again, in another order, filled by a materialized view."""

    table: str
    select: str  # the view's SELECT over {db}.events

    def made_from(self, events: str) -> str:
        """The view's SELECT run over ``events`` (a table or subquery of event rows) instead."""
        return self.select.replace(_FROM_EVENTS, f"FROM {events}", 1)


def event_copies() -> list[EventCopy]:
    """The copies of ``events`` the schema keeps (the page tables), each with its view's SELECT as
    trail's own migrations define it: verify rebuilds a copy from that definition, not from the
    view in the store, which whoever changed the copy could have changed too."""
    copies: dict[str, str] = {}
    for migration in load_migrations():
        for statement in statements(migration.sql):
            if (m := _COPY_VIEW.match(statement)) and m["select"].count(_FROM_EVENTS) == 1:
                copies[m["table"]] = m["select"]
            elif m := _DROPPED_TABLE.match(statement):
                copies.pop(m["table"], None)
    return [EventCopy(table, select) for table, select in sorted(copies.items())]


@dataclass(frozen=True)
class CopyScan:
    """How one verification compares a copy: its columns and a secret key.

    A row's fingerprint is the SHA-256 of all its columns in RowBinary (lengths before values, so
    no two rows encode alike), keyed with SipHash and ``key``, fresh and random for each run: nobody
    who can write to the store can make a changed row, or a changed set of rows, add up to the
    original's fingerprints. (SipHash over the columns themselves took twice as long.)"""

    copy: EventCopy
    columns: tuple[str, ...]
    key: tuple[int, int]

    @classmethod
    def of(cls, store: Store, copy: EventCopy, key: tuple[int, int]) -> CopyScan | str:
        """The scan, or what makes the copy impossible to compare: the table is gone, or its
        columns are not those its view makes (names and types, in order)."""
        exists = store.query(
            "SELECT count() AS n FROM system.tables WHERE database = '{db}' AND name = {t:String}", {"t": copy.table}
        )
        if not exists or not int(exists[0]["n"]):
            return f"{copy.table} is gone from the store"
        have = [(str(r["name"]), str(r["type"])) for r in store.query(f"DESCRIBE TABLE {{db}}.{copy.table}")]
        want = [(str(r["name"]), str(r["type"])) for r in store.query(f"DESCRIBE ({copy.select})")]
        if have != want:
            return f"{copy.table}'s columns are not those its view makes from events: {_shape_change(have, want)}"
        return cls(copy, tuple(name for name, _ in have), key)

    def fingerprint(self, bits: int) -> str:
        k0, k1 = self.key
        row = f"formatRowNoNewline('RowBinary', {', '.join(self.columns)})"
        return f"sipHash{bits}Keyed((toUInt64({int(k0)}), toUInt64({int(k1)})), SHA256({row}))"

    def sides(self, source: ScanSource, where: str, bits: int) -> str:
        """Every row of the copy (side 1) and every row its view makes of the events in scope
        (side 2) that satisfy ``where`` (on event columns), with their fingerprints."""
        fp, key = self.fingerprint(bits), "event_id, producer_id, producer_seq"
        events = f"(SELECT * FROM {source.sql} WHERE {where})"
        return (
            f"SELECT {fp} AS fp, {key}, toUInt8(1) AS side FROM {source.restrict(f'{{db}}.{self.copy.table}')} "
            f"WHERE {where} "
            f"UNION ALL SELECT {fp} AS fp, {key}, toUInt8(2) AS side FROM ({self.copy.made_from(events)})"
        )


def _shape_change(have: list[tuple[str, str]], want: list[tuple[str, str]]) -> str:
    extra = [n for n, _ in have if n not in dict(want)]
    lacking = [n for n, _ in want if n not in dict(have)]
    retyped = [n for n, t in have if n in dict(want) and dict(want)[n] != t]
    parts = [f"{label} {', '.join(names)}" for label, names in
             (("extra", extra), ("missing", lacking), ("retyped", retyped)) if names]  # fmt: skip
    return "; ".join(parts) or "the order differs"


def copy_digests(
    store: Store, scan: CopyScan, source: ScanSource, buckets: int
) -> tuple[dict[int, tuple[int, int]], int]:
    """Per slice of the events (``cityHash64(event_id) % buckets``) whose two sides differ: the
    rows of the copy and of the rebuilt side; and the copy's rows compared. One pass; each side of
    a slice is the sum of its rows' fingerprints, so the memory is the number of slices, not of rows."""
    rows = store.query(
        "SELECT b, sumIf(d, side = 1) != sumIf(d, side = 2) OR sumIf(n, side = 1) != sumIf(n, side = 2) AS differs, "
        "sumIf(n, side = 1) AS copy_n, sumIf(n, side = 2) AS made_n "
        "FROM (SELECT cityHash64(event_id) % {buckets:UInt64} AS b, side, "
        f"count() AS n, sum(fp) AS d FROM ({scan.sides(source, '1', 64)}) GROUP BY b, side) "
        "GROUP BY b" + _COPY_SETTINGS,
        {"buckets": buckets},
    )
    differing = {int(r["b"]): (int(r["copy_n"]), int(r["made_n"])) for r in rows if r["differs"]}
    return differing, sum(int(r["copy_n"]) for r in rows)


def copy_rows(store: Store, scan: CopyScan) -> int:
    rows = store.query(f"SELECT count() AS n FROM {{db}}.{scan.copy.table}")
    return int(rows[0]["n"]) if rows else 0


def copy_mismatch_ids(store: Store, scan: CopyScan, source: ScanSource, buckets: Sequence[int], of: int) -> list[str]:
    """Event ids (one per fingerprint) of rows found on one side only, in these slices."""
    where = f"cityHash64(event_id) % {int(of)} IN ({', '.join(str(int(b)) for b in buckets)})"
    rows = store.query(
        f"SELECT toString(any(event_id)) AS e FROM ({scan.sides(source, where, 128)}) "
        "GROUP BY fp HAVING groupBitOr(side) != 3" + _COPY_SETTINGS
    )
    return [str(r["e"]) for r in rows]


def copy_mismatches(
    store: Store, scan: CopyScan, source: ScanSource, event_ids: Sequence[str]
) -> list[tuple[int, str, str, int]]:
    """``(side, event_id, producer, seq)`` of these events' rows found on one side only: 1, in the
    copy but made by no stored event; 2, made from a stored event but absent from the copy."""
    where = "event_id IN (SELECT toUUID(arrayJoin({ids:Array(String)})))"
    rows = store.query(
        "SELECT groupBitOr(side) AS sides, toString(any(event_id)) AS e, any(producer_id) AS p, "
        f"any(producer_seq) AS s FROM ({scan.sides(source, where, 128)}) "
        "GROUP BY fp HAVING sides != 3 ORDER BY p, s, e, sides" + _COPY_SETTINGS,
        {"ids": list(event_ids)},
    )
    return [(int(r["sides"]), str(r["e"]), str(r["p"]), int(r["s"])) for r in rows]


# ------------------------------------------------------------------ the tamper drill's statements
def tamper_delete_event(store: Store, event_id: str) -> None:
    store.command(
        "ALTER TABLE {db}.events DELETE WHERE event_id = {id:UUID} SETTINGS mutations_sync = 2", {"id": event_id}
    )


def tamper_set_purpose(store: Store, event_id: str, purpose: str) -> None:
    store.command(
        "ALTER TABLE {db}.events UPDATE purpose = {v:String} WHERE event_id = {id:UUID} SETTINGS mutations_sync = 2",
        {"v": purpose, "id": event_id},
    )


def tamper_copy_purpose(store: Store, table: str, event_id: str, purpose: str) -> None:
    """Rewrite the purpose inside the JSON of an event's rows in one copy (``pages_by_*``)."""
    store.command(
        f'ALTER TABLE {{db}}.{table} UPDATE event = replaceRegexpOne(event, \'"purpose":"[^"]*"\', '
        "concat('\"purpose\":', toJSONString({v:String}))) WHERE event_id = {id:UUID} SETTINGS mutations_sync = 2",
        {"v": purpose, "id": event_id},
    )


def tamper_delete_copy_rows(store: Store, table: str, event_id: str) -> None:
    store.command(
        f"ALTER TABLE {{db}}.{table} DELETE WHERE event_id = {{id:UUID}} SETTINGS mutations_sync = 2", {"id": event_id}
    )


def tamper_copy_to_subject(store: Store, event_id: str, subject_ref: str) -> None:
    """Show an event in another person's history: one more ``pages_by_subject`` row, the event's own."""
    store.command(
        "INSERT INTO {db}.pages_by_subject SELECT * REPLACE ({ref:String} AS subject_ref) "
        "FROM {db}.pages_by_subject WHERE event_id = {id:UUID} LIMIT 1",
        {"ref": subject_ref, "id": event_id},
    )


def tamper_delete_checkpoint(store: Store, seq: int) -> None:
    store.command("ALTER TABLE {db}.checkpoints DELETE WHERE seq = {s:UInt64} SETTINGS mutations_sync = 2", {"s": seq})


def range_time_span(store: Store, producer_id: str, first: int, last: int) -> tuple[datetime, datetime] | None:
    """The oldest and newest ``occurred_at`` among one producer's stored events ``first..last``."""
    rows = store.query(
        "SELECT min(occurred_at) AS a, max(occurred_at) AS b, count() AS n FROM {db}.events "
        "WHERE producer_id = {p:String} AND producer_seq BETWEEN {x:UInt64} AND {y:UInt64}",
        {"p": producer_id, "x": first, "y": last},
    )
    if not rows or not int(rows[0]["n"]):
        return None
    a, b = rows[0]["a"], rows[0]["b"]
    return (a if a.tzinfo else a.replace(tzinfo=UTC)), (b if b.tzinfo else b.replace(tzinfo=UTC))
