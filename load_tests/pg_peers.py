"""The peers a team would pick instead of trail: the same events written into PostgreSQL.

Three writers of the same wire events (pseudonymised and hashed by the SDK, as trail stores
them) into one table with the columns of trail's events table, each on a fresh table in a
database of its own (created and dropped here) on the local PostgreSQL:

* ``single``: one INSERT per event, each its own transaction (autocommit) — what a service does
  when it writes its audit row inline;
* ``batched``: INSERTs of 1,000 events per transaction (psycopg's ``executemany``, pipelined);
* ``copy``: ``COPY … FROM STDIN`` in blocks of 10,000.

Each reports rows/s and, for ``single``, the per-call latency (the caller's cost of writing an
audit row synchronously, to set beside ``record()``). Nothing here is tuned beyond PostgreSQL's
defaults on this machine (``synchronous_commit`` on, as an audit trail needs).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

COLUMNS = (
    "event_id uuid, occurred_at timestamptz, actor_kind text, actor_id text, actor_role text, actor_department text, "
    "action text, subject_refs text[], record_count bigint, data_categories text[], purpose text, legal_basis text, "
    "consent_ref text, source_service text, source_host text, source_environment text, target_system text, "
    "target_dataset text, destination_kind text, outcome text, attributes jsonb, producer_id text, "
    "producer_seq bigint, producer_prev text, hash text, PRIMARY KEY (event_id, producer_id, producer_seq)"
)
NAMES = (
    "event_id, occurred_at, actor_kind, actor_id, actor_role, actor_department, action, subject_refs, record_count, "
    "data_categories, purpose, legal_basis, consent_ref, source_service, source_host, source_environment, "
    "target_system, target_dataset, destination_kind, outcome, attributes, producer_id, producer_seq, producer_prev, "
    "hash"
)
INSERT = f"INSERT INTO audit_events ({NAMES}) VALUES ({', '.join(['%s'] * 25)})"


def row(ev: dict[str, Any]) -> tuple[Any, ...]:
    actor, src, tgt, prod = ev["actor"], ev["source"], ev["target"], ev["producer"]
    return (
        ev["event_id"], ev["occurred_at"], actor["kind"], actor["id"], actor.get("role"), actor.get("department"),
        ev["action"], ev["subject_refs"], ev["record_count"], ev["data_categories"], ev["purpose"],
        ev["legal_basis"], ev.get("consent_ref"), src["service"], src["host"], src["environment"], tgt["system"],
        tgt.get("dataset"), (ev.get("destination") or {}).get("kind"), ev["outcome"],
        orjson.dumps(ev["attributes"]).decode(), prod["id"], prod["seq"], prod["prev"], ev["hash"],
    )  # fmt: skip


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {f"p{int(q * 100)}": round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1) for q in (0.5, 0.99)}


def measure(dsn: str, events: Sequence[dict[str, Any]], single_n: int = 20_000) -> dict[str, Any]:
    """Rows/s of each writer for ``events`` (``single`` writes the first ``single_n``)."""
    db = f"trail_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    target = psycopg.conninfo.make_conninfo(dsn, dbname=db)
    rows = [row(ev) for ev in events]
    out: dict[str, Any] = {"events": len(rows), "server_version": None}
    try:
        with psycopg.connect(target, autocommit=True) as conn:
            out["server_version"] = conn.info.server_version
            out["synchronous_commit"] = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]

            def fresh() -> None:
                conn.execute("DROP TABLE IF EXISTS audit_events")
                conn.execute(f"CREATE TABLE audit_events ({COLUMNS})")
                conn.execute("CREATE INDEX ON audit_events (actor_id, occurred_at)")

            fresh()
            lat: list[float] = []
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                for r in rows[:single_n]:
                    t = time.perf_counter_ns()
                    cur.execute(INSERT, r)
                    lat.append((time.perf_counter_ns() - t) / 1000)
            elapsed = time.perf_counter() - t0
            out["single"] = {
                "rows": min(single_n, len(rows)),
                "rows_per_s": round(min(single_n, len(rows)) / elapsed),
                "call_us": _percentiles(lat),
            }

            fresh()
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                for i in range(0, len(rows), 1000):
                    with conn.transaction():
                        cur.executemany(INSERT, rows[i : i + 1000])
            out["batched"] = {"rows": len(rows), "per_transaction": 1000,
                              "rows_per_s": round(len(rows) / (time.perf_counter() - t0))}  # fmt: skip

            fresh()
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                for i in range(0, len(rows), 10_000):
                    with conn.transaction(), cur.copy(f"COPY audit_events ({NAMES}) FROM STDIN") as copy:
                        for r in rows[i : i + 10_000]:
                            copy.write_row(r)
            out["copy"] = {"rows": len(rows), "per_transaction": 10_000,
                           "rows_per_s": round(len(rows) / (time.perf_counter() - t0))}  # fmt: skip
            count = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]  # type: ignore[index]
            out["copy"]["stored"] = count
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db}")
    return out
