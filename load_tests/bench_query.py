"""Benchmark: the trail's queries at 100 million events (issue targets: one person's history
<= 50 ms p99, one actor's day <= 100 ms p99, a filtered day <= 500 ms p99).

Generates a trail of N events straight inside the local store (chDB) with a realistic shape —
people with one to thousands of events (a power law), staff and services with very different
volumes, a year of time, provisions with destinations — through the real ``events`` table, so
the subject and actor indexes fill through their materialised views as they do in production.
Then it times the product's own query path (``trail.service.query`` → ``Store.find_events``,
what the API, the console and the command line call) over many keys, first in a fresh process
(cold: nothing of these keys read before; the OS page cache is dropped when the machine allows
it) and then again in the same process (hot). Writes load_tests/results/query.json.

The generated rows are not hash-chained (``verify`` is measured by bench_verify.py); the rows
are otherwise valid events.

    .venv/bin/python load_tests/bench_query.py --events 100000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_tests.machine import machine_info
from trail.logging import configure
from trail.service import QueryFilters, query
from trail.storage.store import Store

DB = "bench"
START = datetime(2025, 12, 1, tzinfo=UTC)
DAYS = 365
PEOPLE_PER_EVENT = 0.2  # 20 M people in a trail of 100 M events
STAFF = 3000
SERVICES = 60
#: The tables holding every event: the log and its copies ordered by person and by actor.
COPIES = ("events", "pages_by_subject", "pages_by_actor")
TARGETS = {"person_p99_ms": 50, "actor_day_p99_ms": 100, "filtered_day_p99_ms": 500}


def _u(salt: int) -> str:
    """A uniform number in [0, 1) from the row number (deterministic, independent per salt)."""
    return f"(sipHash64(number, {salt}) % 1000000007) / 1000000007.0"


def generate(store: Store, events: int, chunk: int, days: int = DAYS) -> None:
    people = max(1, int(events * PEOPLE_PER_EVENT))
    span_us = days * 86400 * 1_000_000
    for first in range(0, events, chunk):
        n = min(chunk, events - first)
        # person: P * u^2 gives the heaviest people thousands of events and most people one or two;
        # actor: 45 % of events by services (a few very busy), the rest by staff (a power law).
        select = f"""
        SELECT
            generateUUIDv4(number) AS event_id,
            toDateTime64('{START:%Y-%m-%d %H:%M:%S}', 6, 'UTC')
                + toIntervalMicrosecond(sipHash64(number, 1) % {span_us}) AS occurred_at,
            if({_u(2)} < 0.45, 'service', 'staff') AS actor_kind,
            if(actor_kind = 'service', concat('svc-', toString(toUInt32({SERVICES} * pow({_u(3)}, 3)))),
               concat('E', toString(100000 + toUInt32({STAFF} * pow({_u(3)}, 2))))) AS actor_id,
            if(actor_kind = 'staff', 'support', '') AS actor_role,
            if(actor_kind = 'staff', ['customer-care', 'risk', 'marketing', 'it'][1 + sipHash64(actor_id) % 4], '')
                AS actor_department,
            ['view', 'view', 'view', 'query', 'query', 'use', 'modify', 'collect', 'export', 'transfer',
             'provide', 'delete'][1 + toUInt32({_u(4)} * 12)] AS action,
            if({_u(5)} < 0.05,
               [lower(hex(SHA256(concat('p', toString(toUInt64({people} * pow({_u(6)}, 2))))))),
                lower(hex(SHA256(concat('p', toString(toUInt64({people} * pow({_u(7)}, 2)))))))],
               [lower(hex(SHA256(concat('p', toString(toUInt64({people} * pow({_u(6)}, 2)))))))]) AS subject_refs,
            if(action = 'export', toUInt64(1 + sipHash64(number, 8) % 20000), toUInt64(length(subject_refs)))
                AS record_count,
            [['name', 'phone'], ['name', 'address'], ['financial_account', 'name'], ['health'],
             ['id_number', 'name']][1 + sipHash64(number, 9) % 5] AS data_categories,
            'customer service' AS purpose,
            ['contract', 'consent', 'legal_obligation'][1 + sipHash64(number, 10) % 3] AS legal_basis,
            if(legal_basis = 'consent', concat('C-', toString(sipHash64(number, 11) % 100000)), '') AS consent_ref,
            concat('svc-', toString(sipHash64(actor_id) % {SERVICES})) AS source_service,
            concat('host-', toString(sipHash64(number, 12) % 40)) AS source_host,
            'production' AS source_environment,
            '' AS location_ip, 'dc1' AS location_site, 'CN-GD' AS location_region,
            ['crm', 'billing', 'risk', 'marketing'][1 + sipHash64(number, 13) % 4] AS target_system,
            'customers' AS target_dataset, '' AS target_resource,
            multiIf(action IN ('transfer', 'provide'),
                    ['third_party', 'third_party', 'abroad'][1 + sipHash64(number, 14) % 3],
                    action = 'export', 'file', '') AS destination_kind,
            if(destination_kind = '', '', concat('org-', toString(sipHash64(number, 15) % 30))) AS destination_name,
            '' AS destination_region,
            if(sipHash64(number, 16) % 100 = 0, 'denied', 'success') AS outcome,
            map('ticket', concat('T-', toString(number))) AS attributes,
            concat('bench-', toString(number % 1000)) AS producer_id,
            toUInt64(intDiv(number, 1000) + 1) AS producer_seq,
            '' AS producer_prev,
            lower(hex(SHA256(toString(number)))) AS hash
        FROM numbers({first}, {n})
        """
        store.command(
            "INSERT INTO {db}.events (event_id, occurred_at, actor_kind, actor_id, actor_role, actor_department, "
            "action, subject_refs, record_count, data_categories, purpose, legal_basis, consent_ref, source_service, "
            "source_host, source_environment, location_ip, location_site, location_region, target_system, "
            "target_dataset, target_resource, destination_kind, destination_name, destination_region, outcome, "
            "attributes, producer_id, producer_seq, producer_prev, hash) " + select
        )
        print(f"generated {first + n:,} events", flush=True)


def footprint(store: Store, events: int) -> dict[str, Any]:
    rows = store.query(
        "SELECT table, sum(bytes_on_disk) AS bytes, sum(rows) AS rows FROM system.parts "
        "WHERE database = {d:String} AND active GROUP BY table",
        {"d": store.db},
    )
    by_table = {r["table"]: int(r["bytes"]) for r in rows}
    total = sum(by_table.values())
    return {
        "bytes_by_table": by_table,
        "bytes_total": total,
        "bytes_per_million_events": round(total / (events / 1_000_000)),
    }


def pick_keys(store: Store, n: int, seed: int, days: int = DAYS) -> dict[str, list[Any]]:
    """Keys the way lookups come: people and actors drawn through random events (so busy ones
    are looked up more often, as in life), days uniformly over the year."""
    rows = store.query(
        "SELECT subject_refs[1] AS ref, actor_id FROM {db}.events "
        f"WHERE sipHash64(event_id, {seed}) % 1000 = 0 LIMIT {n}"
    )
    rnd = random.Random(seed)
    days_ = [START + timedelta(days=rnd.randrange(days)) for _ in range(n)]
    return {"people": [r["ref"] for r in rows], "actors": [r["actor_id"] for r in rows], "days": days_}


def _time(fn: Any) -> tuple[float, int]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, len(out)


def _stats(ms: list[float], rows: list[int]) -> dict[str, Any]:
    ms_sorted = sorted(ms)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms_sorted), 2),
        "p99_ms": round(ms_sorted[min(len(ms_sorted) - 1, int(len(ms_sorted) * 0.99))], 2),
        "max_ms": round(ms_sorted[-1], 2),
        "rows_p50": int(statistics.median(sorted(rows))) if rows else 0,
        "rows_max": max(rows) if rows else 0,
    }


def run_queries(store: Store, keys: dict[str, list[Any]], page: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    people, actors, days = keys["people"], keys["actors"], keys["days"]

    def measure(name: str, calls: list[Any]) -> None:
        ms, rows = [], []
        for call in calls:
            t, r = _time(call)
            ms.append(t)
            rows.append(r)
        out[name] = _stats(ms, rows)

    measure("person", [lambda r=r: query(store, "subject", r, QueryFilters(limit=page)) for r in people])
    measure(
        "actor_day",
        [
            lambda a=a, d=d: query(store, "actor", a, QueryFilters(since=d, until=d + timedelta(days=1), limit=page))
            for a, d in zip(actors, days, strict=True)
        ],
    )
    measure(
        "actor_month",
        [
            lambda a=a, d=d: query(store, "actor", a, QueryFilters(since=d, until=d + timedelta(days=30), limit=page))
            for a, d in zip(actors, days, strict=True)
        ],
    )
    filters = [
        ("export", "name", "file"),
        ("transfer", "financial_account", "abroad"),
        ("provide", None, "third_party"),
    ]
    measure(
        "filtered_day",
        [
            lambda d=d, f=filters[i % 3]: query(
                store,
                "events",
                None,
                QueryFilters(
                    since=d, until=d + timedelta(days=1), action=f[0], category=f[1], destination=f[2], limit=page
                ),
            )
            for i, d in enumerate(days)
        ],
    )
    measure(
        "counts_month",
        [
            lambda d=d: store.counts_by_action(since=d, until=d + timedelta(days=30))
            for d in days[: max(5, len(days) // 10)]
        ],
    )
    return out


def query_phase(store_dir: str, keys_file: str, page: int) -> None:
    """Run in a fresh process: the first pass is cold, the second hot."""
    configure("warning", "json")
    keys = json.loads(Path(keys_file).read_text())
    keys["days"] = [datetime.fromisoformat(d) for d in keys["days"]]
    store = Store(f"chdb://{store_dir}", DB)
    warm_up_s = store.warm_up()  # what the API does when it starts (Store.warm_up)
    cold = run_queries(store, keys, page)
    hot = run_queries(store, keys, page)
    store.close()
    print(json.dumps({"cold": cold, "hot": hot, "warm_up_ms": round(warm_up_s * 1000, 1)}))


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--keys", type=int, default=200, help="keys per query kind")
    ap.add_argument("--page", type=int, default=1000, help="rows per query (one API page)")
    ap.add_argument("--chunk", type=int, default=5_000_000)
    ap.add_argument(
        "--days",
        type=int,
        default=DAYS,
        help="spread the events over this many days (fewer events over fewer days keep a big trail's rows per day)",
    )
    ap.add_argument("--dir", help="keep the store here (reused if it already holds --events events)")
    ap.add_argument("--out", default="load_tests/results/query.json")
    ap.add_argument("--query-phase", nargs=2, metavar=("STORE", "KEYS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.query_phase:
        query_phase(args.query_phase[0], args.query_phase[1], args.page)
        return
    configure("warning", "json")
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="trail-bench-query-"))
    tmp.mkdir(parents=True, exist_ok=True)
    store_dir = tmp / "store"
    result: dict[str, Any] = {
        "benchmark": "trail queries",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(["chdb", "clickhouse-connect"]),
        "targets": TARGETS,
        "parameters": {"page_rows": args.page, "keys_per_kind": args.keys, "days": args.days},
        "definitions": {
            "person": "one person's history from pages_by_subject (trail.service.query 'subject'), one page",
            "actor_day": "one actor's events in one day from pages_by_actor (trail.service.query 'actor'), one page",
            "actor_month": "one actor's events in 30 days from pages_by_actor, one page",
            "filtered_day": "one day filtered by action, category and destination kind, one page",
            "counts_month": "event counts by action over 30 days (one row per event)",
            "cold": "a fresh process that has read none of these keys (OS page cache dropped if allowed), after "
            "the store's start-up warm-up, as the API does (warm_up_ms: the lookup tables' key indexes loaded)",
            "hot": "the same keys again in the same process",
        },
    }
    try:
        store = Store(f"chdb://{store_dir}", DB)
        upgraded = store.migrate()  # a kept store made by an older trail is upgraded (and backfilled) here
        have = store.count_events()
        t = time.monotonic()
        if have != args.events:
            for table in COPIES:
                store.command(f"TRUNCATE TABLE {{db}}.{table}")
            generate(store, args.events, args.chunk, args.days)
        if have != args.events or upgraded:
            for table in COPIES:
                store.command(f"OPTIMIZE TABLE {{db}}.{table} FINAL")
        result["generate_s"] = round(time.monotonic() - t, 1)
        result["events"] = store.count_events()
        result["people"] = int(store.query("SELECT uniqExact(subject_ref) AS n FROM {db}.pages_by_subject")[0]["n"])
        heaviest = store.query(
            "SELECT count() AS n FROM {db}.pages_by_subject GROUP BY subject_ref ORDER BY n DESC LIMIT 1"
        )
        result["heaviest_person_events"] = int(heaviest[0]["n"]) if heaviest else 0
        result["actors"] = int(store.query("SELECT uniqExact(actor_id) AS n FROM {db}.pages_by_actor")[0]["n"])
        result.update(footprint(store, result["events"]))
        keys = pick_keys(store, args.keys, seed=7, days=args.days)
        store.close()
        keys_file = tmp / "keys.json"
        keys_file.write_text(json.dumps({**keys, "days": [d.isoformat() for d in keys["days"]]}))
        result["page_cache_dropped"] = drop_page_cache()
        proc = subprocess.run(
            [sys.executable, __file__, "--page", str(args.page), "--query-phase", str(store_dir), str(keys_file)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"the query phase failed:\n{proc.stderr[-3000:]}")
        timings = json.loads(proc.stdout.strip().splitlines()[-1])
        result["cold"], result["hot"] = timings["cold"], timings["hot"]
        result["warm_up_ms"] = timings["warm_up_ms"]
        for kind in ("person", "actor_day", "actor_month", "filtered_day", "counts_month"):
            result[f"{kind}_p50_ms"] = timings["hot"][kind]["p50_ms"]
            result[f"{kind}_p99_ms"] = timings["hot"][kind]["p99_ms"]
            result[f"{kind}_cold_p99_ms"] = timings["cold"][kind]["p99_ms"]
        result["targets_met"] = {
            k: max(result[k], result[k.replace("_p99_ms", "_cold_p99_ms")]) <= v for k, v in TARGETS.items()
        }
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "definitions", "cold", "hot")}, indent=2))


if __name__ == "__main__":
    main()
