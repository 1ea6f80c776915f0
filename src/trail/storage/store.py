"""The ClickHouse store: connection, migrations, the columnar writer and the queries.

The same code runs on a ClickHouse server (``http://...``) and on chDB in-process
(``chdb:///dir``), both through clickhouse-connect. A chDB directory can be opened by one
process at a time; threads in that process share this object (calls are serialised).

Reads show one row per ``event_id`` (``LIMIT 1 BY event_id``; counts over ``FINAL``), whatever
was delivered more than once.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from trail.errors import StoreError
from trail.events.model import format_timestamp
from trail.logging import get_logger
from trail.storage.schema import cluster_preamble, load_migrations, rewrite, statements

log = get_logger("trail.storage")

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

#: Column order of the events table as the writer fills it.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "actor_role",
    "actor_department",
    "action",
    "subject_refs",
    "record_count",
    "data_categories",
    "purpose",
    "legal_basis",
    "consent_ref",
    "source_service",
    "source_host",
    "source_environment",
    "location_ip",
    "location_site",
    "location_region",
    "target_system",
    "target_dataset",
    "target_resource",
    "destination_kind",
    "destination_name",
    "destination_region",
    "outcome",
    "attributes",
    "producer_id",
    "producer_seq",
    "producer_prev",
    "hash",
)

#: The event columns as stored: ``event_id`` stays a UUID here (row_to_event makes it text), so the
#: paging cursor ``(occurred_at, event_id) > ...`` and ``ORDER BY event_id`` mean the column, in the
#: order of the tables' keys, not an alias of its text.
_SELECT = ", ".join(EVENT_COLUMNS)

#: What a page of ``pages_by_subject`` or ``pages_by_actor`` (migration 0013) reads: the key columns
#: and the rest of the event as one JSON object, six columns instead of 32. The id and the time come
#: as the wire's text (formatted by the server, not by Python's datetime and uuid: a third of a
#: 1,000-event page's conversion), under names of their own so that ORDER BY still means the columns.
PAGE_SELECT = (
    "toString(event_id) AS event_id_text, formatDateTime(occurred_at, '%Y-%m-%dT%H:%i:%S.%fZ') AS occurred_at_text, "
    "producer_id, producer_seq, event"
)


def event_row(ev: Mapping[str, Any]) -> tuple[Any, ...]:
    """One row of the events table (``EVENT_COLUMNS`` order) from a validated wire event."""
    actor = ev["actor"]
    src = ev["source"]
    loc = ev["location"]
    tgt = ev["target"]
    dest = ev.get("destination") or {}
    prod = ev["producer"]
    return (
        ev["event_id"],
        ev["occurred_at"],
        actor["kind"],
        actor["id"],
        actor.get("role", ""),
        actor.get("department", ""),
        ev["action"],
        ev["subject_refs"],
        ev["record_count"],
        ev["data_categories"],
        ev["purpose"],
        ev["legal_basis"],
        ev.get("consent_ref", ""),
        src["service"],
        src["host"],
        src["environment"],
        loc.get("ip", ""),
        loc.get("site", ""),
        loc.get("region", ""),
        tgt["system"],
        tgt.get("dataset", ""),
        tgt.get("resource", ""),
        dest.get("kind", ""),
        dest.get("name", ""),
        dest.get("region", ""),
        ev["outcome"],
        ev["attributes"],
        prod["id"],
        prod["seq"],
        prod["prev"],
        ev["hash"],
    )


#: Where a row of :func:`event_row` holds the producer's id, seq and prev, and the hash.
ROW_PRODUCER_ID, ROW_PRODUCER_SEQ, ROW_PRODUCER_PREV, ROW_HASH = (
    EVENT_COLUMNS.index(c) for c in ("producer_id", "producer_seq", "producer_prev", "hash")
)


def rows_to_columns(rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Column-oriented data from rows in ``EVENT_COLUMNS`` order (one transpose, in C)."""
    return list(zip(*rows, strict=True)) if rows else [[] for _ in EVENT_COLUMNS]


def events_to_columns(events: Sequence[Mapping[str, Any]]) -> list[Sequence[Any]]:
    """Column-oriented data for the events table from validated wire events."""
    return rows_to_columns([event_row(ev) for ev in events])


def _opt(obj: dict[str, str], key: str, value: str) -> None:
    if value:
        obj[key] = value


def row_to_event(row: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the wire event (as hashed) from a stored row.

    Exact, because a valid event has no empty strings: '' in a column means "absent".
    """
    at = row["occurred_at"]
    actor = {"kind": row["actor_kind"], "id": row["actor_id"]}
    _opt(actor, "role", row["actor_role"])
    _opt(actor, "department", row["actor_department"])
    location: dict[str, str] = {}
    _opt(location, "ip", row["location_ip"])
    _opt(location, "site", row["location_site"])
    _opt(location, "region", row["location_region"])
    target = {"system": row["target_system"]}
    _opt(target, "dataset", row["target_dataset"])
    _opt(target, "resource", row["target_resource"])
    ev: dict[str, Any] = {
        "schema": "trail.audit/v1",
        "event_id": str(row["event_id"]),
        "occurred_at": format_timestamp(at if at.tzinfo else at.replace(tzinfo=UTC))
        if isinstance(at, datetime)
        else str(at),
        "actor": actor,
        "action": row["action"],
        "subject_refs": list(row["subject_refs"]),
        "record_count": int(row["record_count"]),
        "data_categories": list(row["data_categories"]),
        "purpose": row["purpose"],
        "legal_basis": row["legal_basis"],
        "source": {
            "service": row["source_service"],
            "host": row["source_host"],
            "environment": row["source_environment"],
        },
        "location": location,
        "target": target,
        "outcome": row["outcome"],
        "attributes": dict(row["attributes"]),
        "producer": {"id": row["producer_id"], "seq": int(row["producer_seq"]), "prev": row["producer_prev"]},
        "hash": row["hash"],
    }
    if row["consent_ref"]:
        ev["consent_ref"] = row["consent_ref"]
    if row["destination_kind"]:
        dest = {"kind": row["destination_kind"]}
        _opt(dest, "name", row["destination_name"])
        _opt(dest, "region", row["destination_region"])
        ev["destination"] = dest
    return ev


@dataclass(frozen=True)
class Gap:
    producer_id: str
    first_missing: int
    last_missing: int

    @property
    def count(self) -> int:
        return self.last_missing - self.first_missing + 1


class Store:
    """One connection to the store and the database holding trail's tables."""

    def __init__(self, dsn: str, database: str = "trail", *, cluster: str | None = None) -> None:
        if not _DB_NAME.match(database):
            raise StoreError(f"database name {database!r} is not a plain identifier")
        if cluster is not None and not _DB_NAME.match(cluster):
            raise StoreError(f"cluster name {cluster!r} is not a plain identifier")
        self.dsn = dsn
        self.db = database
        #: The ClickHouse cluster the tables are sharded and replicated over (None: one server).
        self.cluster = cluster
        self._lock = threading.RLock()
        try:
            import clickhouse_connect

            self._client = clickhouse_connect.get_client(dsn=dsn)
        except Exception as exc:  # noqa: BLE001  # any driver failure becomes one clear error
            raise StoreError(f"cannot open the store at {_safe_dsn(dsn)}: {_short(exc)}") from None

    # -- plumbing ---------------------------------------------------------------------
    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            try:
                return self._client.command(sql.replace("{db}", self.db), parameters=parameters)
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"store command failed: {_short(exc)}") from None

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            try:
                result = self._client.query(sql.replace("{db}", self.db), parameters=parameters)
                rows = result.result_rows  # converted here, lazily: a conversion error surfaces now
            except (ValueError, OverflowError):
                # A stored time the driver cannot turn into a datetime (one wild row, e.g. the last
                # microsecond of year 9999): read the times as integers and convert them here.
                return self._query_exact_times(sql, parameters)
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"store query failed: {_short(exc)}") from None
            names = result.column_names
            return [dict(zip(names, row, strict=True)) for row in rows]

    def _query_exact_times(self, sql: str, parameters: dict[str, Any] | None) -> list[dict[str, Any]]:
        try:
            result = self._client.query(
                sql.replace("{db}", self.db),
                parameters=parameters,
                query_formats={"DateTime64": "int", "DateTime": "int", "Date": "int", "Date32": "int"},
            )
            rows = result.result_rows
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"store query failed: {_short(exc)}") from None
        names = result.column_names
        converters = [_exact_time(t.name) for t in result.column_types]
        return [
            {
                n: (conv(v) if conv is not None and isinstance(v, int) else v)
                for n, conv, v in zip(names, converters, row, strict=True)
            }
            for row in rows
        ]

    def stream_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> Iterator[list[tuple[Any, ...]]]:
        """Blocks of row tuples, for reads too large to hold at once (holds the store lock)."""
        with self._lock:
            try:
                with self._client.query_row_block_stream(sql.replace("{db}", self.db), parameters=parameters) as stream:
                    yield from stream
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"store query failed: {_short(exc)}") from None

    def warm_up(self) -> float:
        """Load the primary indexes of the tables lookups read, as the API does when it starts:
        otherwise the first queries after a restart wait for them (100-400 ms at 100 M events on
        this project's machines, against 15-40 ms for a cold query after). Nothing matches the
        filters; each query reads only the key's index. Returns the seconds it took; a store
        that does not answer is logged, not raised (the API starts anyway and says so)."""
        started = time.monotonic()
        try:
            for table, condition in WARM_UP:
                self.query(f"SELECT 1 AS n FROM {{db}}.{table} WHERE {condition} LIMIT 1")
        except StoreError as exc:
            log.warning("store.warm_up_failed", reason=str(exc)[:300])
        took = time.monotonic() - started
        log.info("store.warmed_up", seconds=round(took, 3))
        return took

    def close(self) -> None:
        with self._lock:
            try:
                self._client.close()
            except Exception as exc:  # noqa: BLE001  # closing twice or a dead server is fine
                log.debug("store.close_failed", error=_short(exc))

    def ping(self) -> bool:
        try:
            self.query("SELECT 1 AS ok")
            return True
        except StoreError:
            return False

    # -- schema -----------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations not yet applied; returns the versions applied now. On a cluster
        (``cluster``), each statement in its cluster form (:mod:`trail.storage.schema`)."""
        if self.cluster:
            for stmt in cluster_preamble(self.db, self.cluster):
                self.command(stmt)
        else:
            self.command("CREATE DATABASE IF NOT EXISTS {db}")
            self.command(
                "CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
                "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
                "ENGINE = MergeTree ORDER BY version"
            )
        done = {r["version"] for r in self.query("SELECT version FROM {db}.schema_migrations")}
        applied = []
        for mig in load_migrations():
            if mig.version in done:
                continue
            for stmt in statements(mig.sql):
                for each in rewrite(stmt, self.cluster, self.db) if self.cluster else [stmt]:
                    self.command(each)
            with self._lock:
                self._client.insert(
                    f"{self.db}.schema_migrations", [[mig.version, mig.name]], column_names=["version", "name"]
                )
            applied.append(mig.version)
            log.info("store.migrated", version=mig.version, name=mig.name)
        return applied

    # -- writing ----------------------------------------------------------------------
    def insert_events(self, events: Sequence[dict[str, Any]], *, timeout_s: float | None = None) -> None:
        """Insert validated wire events, columnar. ``timeout_s`` bounds the insert on the server's
        side (``max_execution_time``); callers that must not hang also bound the wait (the
        consumer loop's :class:`~trail.ingest.timeout.TimeLimit`)."""
        self.insert_event_rows([event_row(ev) for ev in events], timeout_s=timeout_s)

    def insert_event_rows(self, rows: Sequence[Sequence[Any]], *, timeout_s: float | None = None) -> None:
        """Insert rows of validated events in ``EVENT_COLUMNS`` order (:func:`event_row`).

        The rows go as JSON lines (``JSONCompactEachRow``), encoded in one call in C by msgspec:
        clickhouse-connect's Native encoding ran in Python, under the interpreter lock the sink's
        decoding needs, and cost about a third of an insert's time on the client. The stored
        columns are the same as a columnar Native insert's, byte for byte (a test compares them
        over odd text and the store's first and last instants); the server parses the JSON."""
        if not rows:
            return
        with self._lock:
            try:
                body = _JSON_LINES.encode_lines(rows)
                self._client.raw_insert(
                    f"{self.db}.events",
                    list(EVENT_COLUMNS),
                    body,
                    fmt="JSONCompactEachRow",
                    # Rows of one insert are not de-duplicated at insert (what a ReplacingMergeTree
                    # does by default): every read shows one row per event anyway, merges collapse
                    # exact copies, and the sort it saves is a fifth of an insert's time.
                    settings={
                        "optimize_on_insert": 0,
                        **EVENT_INPUT_SETTINGS,
                        **PAGE_JSON_SETTINGS,
                        **(_time_limit(timeout_s) or {}),
                    },
                )
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"insert of {len(rows)} events failed: {_insert_reason(exc)}") from None

    def insert_rows(
        self, table: str, columns: list[str], rows: list[list[Any]], *, timeout_s: float | None = None
    ) -> None:
        """Row-oriented insert into one of trail's own tables (``timeout_s`` as for events)."""
        if not rows:
            return
        with self._lock:
            try:
                self._client.insert(f"{self.db}.{table}", rows, column_names=columns, settings=_time_limit(timeout_s))
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"insert into {table} failed: {_short(exc)}") from None

    # -- reading ----------------------------------------------------------------------
    def find_events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        category: str | None = None,
        actor_id: str | None = None,
        subject_ref: str | None = None,
        limit: int = 100,
        newest_first: bool = False,
        after: tuple[datetime, str] | None = None,
        service: str | None = None,
        exclude_service: str | None = None,
        system: str | None = None,
        outcome: str | None = None,
        destination: str | None = None,
    ) -> list[dict[str, Any]]:
        """Events matching the filters, oldest first (``after``: keyset paging on
        ``(occurred_at, event_id)``; ``service``/``exclude_service``: by ``source.service``;
        ``system``, ``outcome``, ``destination``: the target system, the outcome, the
        destination's kind)."""
        where = ["1"]
        params: dict[str, Any] = {"limit": int(limit)}
        for column, value in (("target_system", system), ("outcome", outcome), ("destination_kind", destination)):
            if value:
                where.append(f"{column} = {{{column}:String}}")
                params[column] = value
        if after is not None:
            where.append("(occurred_at, event_id) > ({after_at:DateTime64(6, 'UTC')}, {after_id:UUID})")
            params["after_at"], params["after_id"] = after
        if service:
            where.append("source_service = {service:String}")
            params["service"] = service
        if exclude_service:
            where.append("source_service != {xservice:String}")
            params["xservice"] = exclude_service
        if since is not None:
            where.append("occurred_at >= {since:DateTime64(6, 'UTC')}")
            params["since"] = since
        if until is not None:
            where.append("occurred_at < {until:DateTime64(6, 'UTC')}")
            params["until"] = until
        if action:
            where.append("action = {action:String}")
            params["action"] = action
        if category:
            where.append("has(data_categories, {category:String})")
            params["category"] = category
        order = "DESC" if newest_first else "ASC"
        table = "events"
        if subject_ref:
            # pages_by_subject holds every event by person: one range read of six columns.
            table = "pages_by_subject"
            where.append("subject_ref = {ref:String}")
            params["ref"] = subject_ref
        if actor_id:
            where.append("actor_id = {actor:String}")
            params["actor"] = actor_id
            if not subject_ref:
                # pages_by_actor holds every event by actor, then time: one range read of six columns.
                table = "pages_by_actor"
        paged = table != "events"
        sql = (
            # LIMIT 1 BY event_id already shows one row per event (exact redeliveries are identical rows),
            # so no FINAL: merging parts at read time cost 4-5x on a one-day actor query.
            f"SELECT {PAGE_SELECT if paged else _SELECT} FROM {{db}}.{table} WHERE {' AND '.join(where)} "
            f"ORDER BY occurred_at {order}, event_id, producer_id, producer_seq "
            "LIMIT 1 BY event_id LIMIT {limit:UInt64}"
        )
        rows = self.query(sql, params)
        return [row_to_event(self.page_row(r) if paged else r) for r in rows]

    def page_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """The stored columns of the event in one row of a page table (``PAGE_SELECT``), with its id
        and time as the wire's text: its JSON object and the key columns, or, where the text is not
        the JSON object the views write (not valid UTF-8, not an object, fields missing: stored some
        other way than trail's writer), the row read from events."""
        try:
            doc = orjson.loads(row["event"])
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not doc.keys() >= PAGE_JSON_FIELDS:
            rows = self.query(
                f"SELECT {_SELECT} FROM {{db}}.events WHERE event_id = {{id:UUID}} AND producer_id = {{p:String}} "
                "AND producer_seq = {s:UInt64} LIMIT 1",
                {"id": row["event_id_text"], "p": row["producer_id"], "s": row["producer_seq"]},
            )
            if not rows:
                raise StoreError(f"event {row['event_id_text']} is in a page table but not in events") from None
            return rows[0]
        # attributes: an object, or pairs if the server writes maps so (row_to_event makes either a dict)
        doc["event_id"] = row["event_id_text"]
        doc["occurred_at"] = row["occurred_at_text"]
        doc["producer_id"] = row["producer_id"]
        doc["producer_seq"] = row["producer_seq"]
        return doc

    def find_events_by_id(self, event_id: str) -> list[dict[str, Any]]:
        """Every delivery of one event (normally one), oldest ingestion first."""
        import uuid

        try:
            uid = str(uuid.UUID(event_id))
        except ValueError:
            return []
        rows = self.query(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM {{db}}.events FINAL WHERE event_id = {{id:UUID}} "
            "ORDER BY ingested_at",
            {"id": uid},
        )
        return [row_to_event(r) for r in rows]

    def counts(self, exclude_service: str | None = None) -> dict[str, Any]:
        where = "WHERE source_service != {x:String}" if exclude_service else ""
        params = {"x": exclude_service} if exclude_service else None
        rows = self.query(
            "SELECT uniqExact(event_id) AS events, count() AS deliveries, "
            "uniqExact(producer_id) AS producers, sum(record_count) AS records "
            f"FROM {{db}}.events FINAL {where}",
            params,
        )
        by_action = self.query(
            "SELECT action, uniqExact(event_id) AS events, sum(record_count) AS records "
            "FROM (SELECT event_id, any(action) AS action, any(record_count) AS record_count "
            f"FROM {{db}}.events FINAL {where} GROUP BY event_id) GROUP BY action ORDER BY action",
            params,
        )
        out = dict(rows[0]) if rows else {}
        out["by_action"] = {r["action"]: {"events": r["events"], "records": r["records"]} for r in by_action}
        return {k: (int(v) if isinstance(v, int) else v) for k, v in out.items()}

    def counts_by_action(self, *, since: datetime, until: datetime) -> dict[str, int]:
        """Events (one per ``event_id``) by action with ``since <= occurred_at < until``."""
        rows = self.query(
            "SELECT action, uniqExact(event_id) AS events FROM {db}.events "
            "WHERE occurred_at >= {since:DateTime64(6, 'UTC')} AND occurred_at < {until:DateTime64(6, 'UTC')} "
            "GROUP BY action ORDER BY action",
            {"since": since, "until": until},
        )
        return {r["action"]: int(r["events"]) for r in rows}

    def count_events(self) -> int:
        rows = self.query("SELECT uniqExact(event_id) AS n FROM {db}.events")
        return int(rows[0]["n"]) if rows else 0

    def gaps(self, producer_id: str | None = None) -> list[Gap]:
        """Missing ``producer.seq`` ranges, per producer (1 .. highest seq seen)."""
        where = "WHERE producer_id = {pid:String}" if producer_id else ""
        params = {"pid": producer_id} if producer_id else None
        rows = self.query(
            "SELECT producer_id, prev_seq + 1 AS first_missing, seq - 1 AS last_missing FROM ("
            "  SELECT producer_id, seq, lagInFrame(seq, 1, 0) OVER "
            "    (PARTITION BY producer_id ORDER BY seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev_seq"
            f"  FROM (SELECT DISTINCT producer_id, producer_seq AS seq FROM {{db}}.events {where})"
            ") WHERE seq - prev_seq > 1 ORDER BY producer_id, first_missing",
            params,
        )
        return [Gap(r["producer_id"], int(r["first_missing"]), int(r["last_missing"])) for r in rows]

    def producers(self) -> list[dict[str, Any]]:
        return self.query(
            "SELECT producer_id, any(source_service) AS service, count() AS events, "
            "max(producer_seq) AS last_seq, min(occurred_at) AS first_at, max(occurred_at) AS last_at "
            "FROM {db}.events FINAL GROUP BY producer_id ORDER BY producer_id"
        )


_EPOCH = datetime(1970, 1, 1)
_DT64 = re.compile(r"DateTime64\((\d+)")


def _exact_time(type_name: str) -> Any:
    """A converter of a time column read as integers to naive UTC datetimes (as the driver
    gives them), exact to the microsecond and clamped to what Python can hold; None for others."""
    base = type_name.removeprefix("Nullable(").removeprefix("LowCardinality(")
    m = _DT64.match(base)
    if m is not None:
        per_us = 10 ** int(m.group(1)) / 1_000_000
        return lambda ticks: _clamped(int(ticks / per_us) if per_us != 1 else ticks)
    if base.startswith("DateTime"):
        return lambda seconds: _clamped(seconds * 1_000_000)
    if base.startswith("Date"):
        return lambda days: _clamped(days * 86_400_000_000).date()
    return None


def _clamped(micros: int) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return datetime.max if micros > 0 else datetime.min


def open_store(dsn: str, database: str = "trail", *, migrate: bool = True, cluster: str | None = None) -> Store:
    store = Store(dsn, database, cluster=cluster)
    if migrate:
        store.migrate()
    return store


#: The lookups' tables and a condition on the first column of each one's key that no row meets.
#: (Not ``events``: its partitions are by month of ``occurred_at``, its key's first column, so any
#: such condition skips every part without opening its index; a day's query opens one month's.)
WARM_UP: tuple[tuple[str, str], ...] = (
    ("pages_by_subject", "subject_ref = ''"),
    ("pages_by_actor", "actor_id = ''"),
)

#: Every row of an events insert is encoded by this (JSON lines; see ``Store.insert_event_rows``).
_JSON_LINES = msgspec.json.Encoder()

#: Pinned for every events insert, whatever a server profile says: ``occurred_at`` arrives as the
#: wire's RFC 3339 text (``...T09:22:16.183158Z``), which the basic parser does not read; and a
#: profile that tolerates bad rows in text formats (``input_format_allow_errors_*``) would let
#: an insert skip a row it cannot parse and report success, a silent loss.
EVENT_INPUT_SETTINGS: dict[str, Any] = {
    "date_time_input_format": "best_effort",
    "input_format_allow_errors_num": 0,
    "input_format_allow_errors_ratio": 0,
}


#: How the page tables' views write an event's JSON, pinned for every insert into events and for
#: verify's rebuild of the copies: a server default that changes (an upgrade, a profile) would
#: otherwise make the rebuilt JSON differ from the stored one. The values are ClickHouse 26's
#: defaults, with which the copies were first written.
PAGE_JSON_SETTINGS: dict[str, int] = {
    "output_format_json_escape_forward_slashes": 1,
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_64bit_floats": 0,
    "output_format_json_quote_decimals": 0,
    "output_format_json_quote_denormals": 0,
    "output_format_json_map_as_array_of_tuples": 0,
    "output_format_json_named_tuples_as_objects": 1,
    "output_format_json_validate_utf8": 0,
}

#: What the JSON of a page table's row holds: every event column but the row's own key columns.
PAGE_JSON_FIELDS = frozenset(EVENT_COLUMNS) - {"event_id", "occurred_at", "producer_id", "producer_seq"}


def _time_limit(timeout_s: float | None) -> dict[str, Any] | None:
    """The server-side bound of one statement: ClickHouse and chDB stop it with TIMEOUT_EXCEEDED."""
    if not timeout_s or timeout_s <= 0:
        return None
    return {"max_execution_time": max(1, math.ceil(timeout_s))}


def _safe_dsn(dsn: str) -> str:
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return f"{scheme}://****@{rest.rsplit('@', 1)[1]}"
    return dsn


def _insert_reason(exc: BaseException) -> str:
    """Why an insert failed, without the data: a text format's parse error quotes the input
    around the failure (``... before: '<row text>'``, ``parsed text: ...``), which may be an
    attribute's value. Keeps ClickHouse's code, its reason up to its first detail, the column
    and row it names, and the error's name."""
    whole = str(exc).strip()
    # chDB puts ClickHouse's message first (its prefix sometimes twice); over HTTP it follows the
    # driver's own first line. The message proper starts after the prefixes at the line's start.
    prefix = re.compile(r"\s*(?:Code: (\d+)\. )?DB::Exception: ")
    line = next((text for text in whole.splitlines() if prefix.match(text)), None)
    if line is None:
        return _short(exc)
    code, rest = None, line
    while (m := prefix.match(rest)) is not None:
        code, rest = m.group(1) or code, rest[m.end() :]
    # The reason up to its first detail, with anything it quotes (a value: "Cannot parse string
    # '<value>' as UInt64") replaced.
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", rest.split(": ", 1)[0].split(". ", 1)[0])[:120]
    parts = [f"{'Code: ' + code + '. ' if code else ''}{reason}"]
    # ClickHouse appends these after any quoted input, so the last of each is its own; the error's
    # name ends the whole message (before the server's version, over HTTP).
    column = ([None, *re.findall(r"\(while reading the value of key (\w+)\)", line)])[-1]
    row = ([None, *re.findall(r"\(at row (\d+)\)", line)])[-1]
    ending = re.search(r"\(([A-Z][A-Z0-9_]{2,})\)(?:\s*\(version [^)]*\))?\.?\s*$", whole)
    name = ending.group(1) if ending else None
    parts += [f"column {column}"] if column else []
    parts += [f"row {row}"] if row else []
    parts += [f"({name})"] if name else []
    return ", ".join(parts[:-1]) + " " + parts[-1] if name and len(parts) > 1 else ", ".join(parts)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def iter_chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
