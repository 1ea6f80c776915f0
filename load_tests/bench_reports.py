"""Benchmark: the subject report and the compliance report (issue targets: the subject report of a
person with 10,000 events in a trail of 10 million under 1 s; the compliance report for a month of
100 million events under 5 minutes).

Generates a trail of N events straight inside the local store (chDB) with bench_query.py's shape,
spread over ``--days`` days from 2025-12-01 (default 30: the whole trail is one month, so the
compliance report covers all N events), plus one person with ``--person-events`` events spread over
the same days. Then it times the product's own code paths: ``build_subject_report`` (what
``POST /v1/subjects/report`` and ``trail subject report`` call) for that person, and
``build_compliance_report`` (every figure's SQL) for the month; ``verify`` is left out of the
compliance figure here (bench_verify.py measures it) and the report is signed as in production.
Writes load_tests/results/reports.json.

``--compliance-only`` measures the compliance report alone (the 100-million-event month): the
store's two by-person and by-actor copies are not filled (their views are dropped in the bench's
own store first), since the compliance report reads neither; the subject report is measured at the
scale its target names, in the default mode.

    nice .venv/bin/python load_tests/bench_reports.py --events 10000000 --out load_tests/results/reports.json
    .venv/bin/python load_tests/bench_reports.py --events 100000000 --compliance-only \
        --out load_tests/results/reports-100m.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import load_tests.bench_query as shape
from load_tests.machine import machine_info
from trail.integrity.keys import generate as generate_key
from trail.logging import configure
from trail.rights.compliance import build_compliance_report, sign
from trail.rights.render import render_report
from trail.rights.subject_report import Period, build_subject_report
from trail.storage.store import Store

HEAVY_REF = "f" * 64


def add_person(store: Store, n: int, days: int) -> None:
    """``n`` events about one person, spread over the trail's days, with recipients among them."""
    span_us = days * 86400 * 1_000_000
    store.command(
        "INSERT INTO {db}.events (event_id, occurred_at, actor_kind, actor_id, actor_role, action, subject_refs, "
        "record_count, data_categories, purpose, legal_basis, source_service, source_host, source_environment, "
        "target_system, target_dataset, destination_kind, destination_name, outcome, producer_id, producer_seq, hash) "
        f"SELECT generateUUIDv4(number), toDateTime64('{shape.START:%Y-%m-%d %H:%M:%S}', 6, 'UTC') "
        f"+ toIntervalMicrosecond(sipHash64(number, 91) % {span_us}), 'staff', "
        "concat('E', toString(100000 + number % 300)), 'support', "
        "['view', 'query', 'use', 'modify', 'provide', 'transfer'][1 + number % 6], "
        f"['{HEAVY_REF}'], 1, ['name', 'phone'], 'customer service', 'contract', 'svc-1', 'host-1', 'production', "
        "'crm', 'customers', multiIf(number % 6 = 4, 'third_party', number % 6 = 5, 'abroad', ''), "
        "if(number % 6 >= 4, concat('org-', toString(number % 7)), ''), 'success', 'bench-heavy', number + 1, "
        f"lower(hex(SHA256(toString(number)))) FROM numbers({n})"
    )


def timed(fn: Any, runs: int) -> tuple[list[float], Any]:
    out = None
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        ms.append(round((time.perf_counter() - t) * 1000, 1))
    return ms, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--person-events", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="chDB directory, kept and reused (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=Path("load_tests/results/reports.json"))
    ap.add_argument("--compliance-only", action="store_true", help="time the compliance report only (see above)")
    args = ap.parse_args()
    configure("warning", "console")
    shape.DAYS = args.days
    root = args.dir or Path(tempfile.mkdtemp(prefix="trail-bench-reports-"))
    store = Store(f"chdb://{root}", shape.DB)
    try:
        store.migrate()
        if args.compliance_only:
            for view in ("pages_by_actor_mv", "pages_by_subject_mv"):
                store.command(f"DROP VIEW IF EXISTS {{db}}.{view}")
        t = time.perf_counter()
        if store.count_events() == 0:  # a kept --dir is reused as it is
            shape.generate(store, args.events, args.chunk)
            if not args.compliance_only:
                add_person(store, args.person_events, args.days)
            store.command("OPTIMIZE TABLE {db}.events FINAL")
        gen_s = time.perf_counter() - t
        total = store.count_events()
        print(f"trail of {total:,} events generated in {gen_s:.0f}s", flush=True)

        subject_ms: list[float] = []
        render_ms: list[float] = [0.0]
        if not args.compliance_only:
            subject_ms, report = timed(lambda: build_subject_report(store, HEAVY_REF, Period(None, None)), args.runs)
            assert len(report["events"]) == args.person_events, len(report["events"])
            render_ms, _ = timed(lambda: render_report("subject_report", report, lang="zh", fmt="html"), 1)
            print(f"subject report, {args.person_events:,} events: {subject_ms} ms", flush=True)

        month = Period(shape.START, shape.START + timedelta(days=args.days))
        key = generate_key()
        compliance_ms, comp = timed(
            lambda: sign(
                build_compliance_report(store, month, verify={"measured_by": "bench_verify.py"}, checkpoint=None),
                key,
            ),
            args.runs,
        )
        print(f"compliance report, {comp['events_total']['events']:,} events: {compliance_ms} ms", flush=True)
        result = {
            "benchmark": "reports",
            "scale": {
                "trail_events": total,
                "days": args.days,
                "person_events": 0 if args.compliance_only else args.person_events,
                "compliance_only": args.compliance_only,
                "month_events": comp["events_total"]["events"],
                "note": "the issue's targets are a person with 10,000 events in a trail of 10 million (subject "
                "report) and a month of 100 million events (compliance report); the month here holds "
                "trail_events",
            },
            "generate_s": round(gen_s, 1),
            "footprint": shape.footprint(store, total),
            "subject_report_ms": subject_ms,
            "subject_report_render_html_ms": render_ms[0],
            "compliance_report_ms": compliance_ms,
            "compliance_events_per_s": round(comp["events_total"]["events"] / (min(compliance_ms) / 1000)),
            "targets": {"subject_report_ms": 1000, "compliance_report_month_100m_s": 300},
            "machine": machine_info(["chdb", "clickhouse-connect"]),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    finally:
        store.close()
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
