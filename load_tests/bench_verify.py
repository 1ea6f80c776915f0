"""Benchmark: a full `trail verify` of N events (target: 10 million in <= 2 minutes).

Generates a realistic trail straight inside chDB (N/rounds producers, each a hash chain of
`rounds` events, hashes computed with the canonical encoding), spot-checks a sample of those
hashes against the Python SDK's encoding, seals it with the real sealer into signed
checkpoints, then times a full verify (and the same without comparing the lookup copies with
events), an incremental verify (--since the last checkpoint), a verify after one event was
tampered with and one after a copy row was removed and another changed. Writes
load_tests/results/verify.json.

    .venv/bin/python load_tests/bench_verify.py --events 10000000 --rounds 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from trail.events.model import event_hash
from trail.integrity import drill
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import generate
from trail.integrity.sealer import Sealer
from trail.integrity.verify import Verifier
from trail.logging import configure
from trail.storage import integrity as integrity_sql
from trail.storage.integrity import CANONICAL_SQL
from trail.storage.store import Store

COLUMNS = (
    "event_id, occurred_at, actor_kind, actor_id, actor_role, actor_department, action, subject_refs, record_count, "
    "data_categories, purpose, legal_basis, consent_ref, source_service, source_host, source_environment, "
    "location_ip, location_site, location_region, target_system, target_dataset, target_resource, "
    "destination_kind, destination_name, destination_region, outcome, attributes, producer_id, producer_seq, "
    "producer_prev"
)


def generate_trail(store: Store, producers: int, rounds: int) -> None:
    store.command("CREATE TABLE IF NOT EXISTS {db}.bench_tips (producer_id String, hash String) ENGINE = Memory")
    for k in range(1, rounds + 1):
        prev = "''" if k == 1 else "t.hash"
        join = (
            ""
            if k == 1
            else (
                "AS n INNER JOIN {db}.bench_tips AS t ON t.producer_id = concat('svc-', toString(n.number % 50), '/', "
                "toString(n.number))"
            )
        )
        base = (
            "SELECT generateUUIDv4(number) AS event_id, "
            f"toDateTime64('2026-01-01 00:00:00', 6, 'UTC') + toIntervalMicrosecond(intHash32(number) * 1000 + {k}) "
            "AS occurred_at, if(number % 3 = 0, 'service', 'staff') AS actor_kind, "
            "concat('E', toString(number % 5000)) AS actor_id, 'support' AS actor_role, "
            "if(number % 2 = 0, 'customer-care', '') AS actor_department, "
            "['view','query','modify','use','collect'][1 + (number + " + str(k) + ") % 5] AS action, "
            f"[lower(hex(SHA256(toString(number * 1000 + {k}))))] AS subject_refs, toUInt64(1 + number % 3) "
            "AS record_count, ['name','phone'] AS data_categories, 'customer service' AS purpose, "
            "'contract' AS legal_basis, '' AS consent_ref, concat('svc-', toString(number % 50)) AS source_service, "
            "concat('host-', toString(number % 20)) AS source_host, 'production' AS source_environment, "
            "concat('10.0.', toString(number % 250), '.1') AS location_ip, 'dc1' AS location_site, "
            "'CN-GD' AS location_region, 'crm' AS target_system, 'customers' AS target_dataset, "
            "'' AS target_resource, '' AS destination_kind, '' AS destination_name, '' AS destination_region, "
            f"'success' AS outcome, map('ticket', concat('T-', toString(number * 7 + {k}))) AS attributes, "
            "concat('svc-', toString(number % 50), '/', toString(number)) AS producer_id, "
            f"toUInt64({k}) AS producer_seq, {prev} AS producer_prev FROM numbers({producers}) {join}"
        )
        store.command(
            f"INSERT INTO {{db}}.events ({COLUMNS}, hash) SELECT *, lower(hex(SHA256({CANONICAL_SQL}))) "
            f"FROM ({base}) SETTINGS output_format_json_escape_forward_slashes = 0"
        )
        store.command("TRUNCATE TABLE {db}.bench_tips")
        store.command(
            f"INSERT INTO {{db}}.bench_tips SELECT producer_id, hash FROM {{db}}.events WHERE producer_seq = {k}"
        )
    store.command("DROP TABLE {db}.bench_tips")
    store.command("OPTIMIZE TABLE {db}.events FINAL")


def spot_check(store: Store, n: int) -> int:
    """The generated hashes agree with the SDK's Python encoding (so the benchmark is honest)."""
    rows = store.find_events(limit=n)
    bad = 0
    for ev in rows:
        body = {k: v for k, v in ev.items() if k != "hash"}
        bad += event_hash(body) != ev["hash"]
    return bad


def phase(name: str, started: float) -> float:
    print(f"{name}: {time.monotonic() - started:.1f}s", flush=True)
    return round(time.monotonic() - started, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=100, help="events per producer chain")
    ap.add_argument("--checkpoints", type=int, default=10, help="checkpoints the trail is sealed into")
    ap.add_argument("--out", default="load_tests/results/verify.json")
    args = ap.parse_args()
    configure("warning", "json")
    producers = args.events // args.rounds
    tmp = Path(tempfile.mkdtemp(prefix="trail-bench-verify-"))
    store = Store(f"chdb://{tmp / 'store'}", "bench")
    store.migrate()
    result: dict[str, object] = {
        "benchmark": "trail verify",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {
            "events": producers * args.rounds,
            "producers": producers,
            "chain_length": args.rounds,
            "checkpoints": args.checkpoints,
        },
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "target": {"full_verify_seconds_for_10M": 120},
    }
    try:
        t = time.monotonic()
        generate_trail(store, producers, args.rounds)
        result["generate_s"] = phase("generate_s", t)
        result["spot_check_mismatches_of_2000"] = spot_check(store, 2000)

        key = generate()
        log = AppendOnlyLog(tmp / "checkpoints.jsonl")
        t = time.monotonic()
        sealer = Sealer(store, key, log)
        # seal in several checkpoints, as a running sink would over time
        pending = sorted(sealer.pending)
        random.Random(1).shuffle(pending)
        chunks = [set(pending[i :: args.checkpoints]) for i in range(args.checkpoints)]
        everything = sealer.pending
        for chunk in chunks:
            sealer.pending = {p: everything[p] for p in chunk}
            sealer.seal()
        result["seal_s"] = phase("seal_s", t)
        del everything, sealer

        t = time.monotonic()
        report = Verifier(store, key.public, log).run()
        result["full_verify_s"] = phase("full_verify_s", t)
        result["full_verify_events_per_s"] = round(report.events_checked / result["full_verify_s"])  # type: ignore[operator]
        result["full_verify_intact"] = report.intact
        result["events_checked"] = report.events_checked
        result["copy_rows_checked"] = report.copy_rows_checked

        # the same verify without comparing the lookup copies with events: what that comparison costs
        copies, integrity_sql.event_copies = integrity_sql.event_copies, list
        try:
            t = time.monotonic()
            Verifier(store, key.public, log).run()
            result["full_verify_without_copies_s"] = phase("full_verify_without_copies_s", t)
        finally:
            integrity_sql.event_copies = copies

        t = time.monotonic()
        inc = Verifier(store, key.public, log).run(since=args.checkpoints)
        result["incremental_verify_last_checkpoint_s"] = phase("incremental_verify_last_checkpoint_s", t)
        result["incremental_events_checked"] = inc.events_checked

        victim = store.query("SELECT toString(event_id) AS e FROM {db}.events LIMIT 1 OFFSET 12345")[0]["e"]
        drill.modify_field(store, victim)
        t = time.monotonic()
        tampered = Verifier(store, key.public, log).run()
        result["verify_after_tamper_s"] = phase("verify_after_tamper_s", t)
        result["tamper_found"] = [(f.kind, f.event_id == victim) for f in tampered.findings]

        hidden = store.query("SELECT toString(event_id) AS e FROM {db}.events LIMIT 1 OFFSET 23456")[0]["e"]
        other = store.query("SELECT toString(event_id) AS e FROM {db}.events LIMIT 1 OFFSET 54321")[0]["e"]
        drill.delete_copy(store, hidden, "pages_by_subject")
        drill.modify_copy(store, other, "pages_by_actor")
        t = time.monotonic()
        copies_tampered = Verifier(store, key.public, log).run()
        result["verify_after_copy_tamper_s"] = phase("verify_after_copy_tamper_s", t)
        result["copy_tamper_found"] = sorted(
            (f.kind, f.event_id in (hidden, other)) for f in copies_tampered.findings if f.kind.startswith("copy_")
        )
        result["target_met"] = bool(report.intact and result["full_verify_s"] <= 120 * report.events_checked / 10**7)  # type: ignore[operator]
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
