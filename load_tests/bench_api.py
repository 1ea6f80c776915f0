"""Benchmark: the API's queries per second for a one-day actor query, with the access log on and
off, side by side, and what the access log costs per request.

Everything real and local: `trail up`'s stack in this process (Tansu broker, sink, chDB store,
the API served by uvicorn on 127.0.0.1), a trail of N events over D days by A staff actors
written straight into the store, then C client threads with keep-alive connections asking
``GET /v1/events?actor=X&since=DAY&until=DAY+1`` with the local token. The access log is
switched off only through the recorder's internal flag, for the comparison (no setting turns
it off); the two modes alternate in rounds so drift of the shared machine hits both alike.
With it on, each request's access event goes through the SDK, the broker and the sink like
any other, and the run waits until they are stored.

    .venv/bin/python load_tests/bench_api.py --events 200000 --out load_tests/results/api.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_tests.machine import machine_busy_s, machine_info
from trail.config import load_settings
from trail.local.stack import LocalStack
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport
from trail.service import ACCESS_LOG_SERVICE
from trail.storage.writer import store_writer
from trail.testing import TEST_KEY


def fill(stack: LocalStack, events: int, days: int, actors: int, seed: int = 7) -> datetime:
    """N events over D days by A actors, recorded through the SDK straight into the store."""
    assert stack.store is not None
    rng = random.Random(seed)
    start = (datetime.now(UTC) - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    client = Client(service="crm", transport=CallbackTransport(store_writer(stack.store)), subject_key=TEST_KEY,
                    spool_dir=stack.settings.effective_spool_dir, queue_size=events + 10, batch_max=20_000)  # fmt: skip
    for i in range(events):
        client.record(
            occurred_at=start + timedelta(seconds=rng.uniform(0, days * 86400)),
            actor={"kind": "staff", "id": f"E{1000 + rng.randrange(actors)}", "role": "support"},
            action=rng.choice(("view", "view", "view", "modify", "query")),
            subject_ids=[f"SUBJ-BENCH-{rng.randrange(100_000):06d}"],
            data_categories=["name", "phone"],
            purpose="answer support ticket",
            legal_basis="contract",
            target={"system": "crm", "dataset": "customers"},
            attributes={"ticket": f"T-{i}"},
        )
    assert client.close(timeout=600)
    return start


def run_mode(api: str, token: str, clients: int, seconds: float, queries: list[str]) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: list[int] = []
    rows: list[int] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(n)
        mine: list[float] = []
        got: list[int] = []
        bad: list[int] = []
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            while time.monotonic() < stop:
                q = rng.choice(queries)
                t0 = time.perf_counter()
                r = http.get(q)
                mine.append(time.perf_counter() - t0)
                if r.status_code == 200:
                    got.append(len(r.json()["events"]))
                else:
                    bad.append(r.status_code)
        with lock:
            latencies.extend(mine)
            rows.extend(got)
            errors.extend(bad)

    busy0, t0 = machine_busy_s(), time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "qps": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "mean_rows": round(statistics.mean(rows), 1) if rows else 0,
        "errors": len(errors),
        "machine_busy_share": round((machine_busy_s() - busy0) / (wall * 2), 3),
    }


def recorder_cost(stack: LocalStack, n: int = 20_000) -> float:
    """Microseconds one access event costs the request's thread (build, validate, pseudonymise, queue)."""
    from trail.access.recorder import AccessNote

    rec = stack.services.recorder
    note = AccessNote(dataset="events", rows=20)
    t0 = time.perf_counter()
    for i in range(n):
        rec.record(principal=None, role=None, method="GET", endpoint="/v1/events", status=200, ip="127.0.0.1",
                   request_id=f"{i:016x}", note=note)  # fmt: skip
    return (time.perf_counter() - t0) / n * 1e6


def recorder_cost_alone(spool: Path, n: int = 20_000) -> float:
    """The same, in a process doing nothing else (transport discards): the recorder's own CPU cost."""
    from trail.access.recorder import AccessNote, AccessRecorder

    client = Client(service="trail-access", transport=CallbackTransport(lambda _k, _v: None), subject_key=TEST_KEY,
                    spool_dir=spool, queue_size=n + 10)  # fmt: skip
    rec = AccessRecorder(client)
    note = AccessNote(dataset="events", rows=20)
    t0 = time.perf_counter()
    for i in range(n):
        rec.record(principal=None, role=None, method="GET", endpoint="/v1/events", status=200, ip="127.0.0.1",
                   request_id=f"{i:016x}", note=note)  # fmt: skip
    cost = (time.perf_counter() - t0) / n * 1e6
    client.close(timeout=60)
    return cost


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--actors", type=int, default=500)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0, help="per round and mode")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("load_tests/results/api.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="trail-bench-api-") as tmp:
        settings = load_settings(
            {"TRAIL_DATA_DIR": tmp, "TRAIL_SUBJECT_KEY": TEST_KEY.decode(), "TRAIL_SINK_BATCH_SECONDS": "0.2",
             "TRAIL_LOG_LEVEL": "warning"},
            config_file=Path(tmp) / "none.toml",
        )  # fmt: skip
        stack = LocalStack(settings).start()
        try:
            t0 = time.monotonic()
            start = fill(stack, args.events, args.days, args.actors)
            print(f"filled {args.events} events in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            token = settings.local_token_path.read_text().strip()
            rng = random.Random(1)
            queries = []
            for _ in range(500):
                day = start + timedelta(days=rng.randrange(args.days))
                until = day + timedelta(days=1)
                queries.append(
                    f"/v1/events?actor=E{1000 + rng.randrange(args.actors)}&since={day:%Y-%m-%dT%H:%M:%SZ}"
                    f"&until={until:%Y-%m-%dT%H:%M:%SZ}&limit=1000"
                )
            recorder = stack.services.recorder
            run_mode(stack.api_url, token, args.clients, 3, queries)  # warm-up (access log on)
            results: dict[str, list[dict[str, Any]]] = {"access_log_on": [], "access_log_off": []}
            for _ in range(args.rounds):
                for mode in ("access_log_off", "access_log_on"):
                    recorder.enabled = mode == "access_log_on"
                    results[mode].append(run_mode(stack.api_url, token, args.clients, args.seconds, queries))
                    print(mode, results[mode][-1], file=sys.stderr)
            recorder.enabled = True
            logged = stack.wait_stored(args.events + recorder.recorded, timeout=120) - args.events
            assert stack.store is not None
            stored = len(stack.store.find_events(service=ACCESS_LOG_SERVICE, limit=10_000_000))
            recorded = recorder.recorded  # before the per-event measurement below adds its own
            cost_us = recorder_cost(stack)
        finally:
            stack.stop()

    def agg(mode: str) -> dict[str, Any]:
        rs = results[mode]
        return {
            "qps": round(statistics.mean(r["qps"] for r in rs), 1),
            "p50_ms": round(statistics.mean(r["p50_ms"] for r in rs), 2),
            "p99_ms": round(statistics.mean(r["p99_ms"] for r in rs), 2),
            "errors": sum(r["errors"] for r in rs),
            "rounds": rs,
        }

    with tempfile.TemporaryDirectory(prefix="trail-bench-rec-") as tmp2:
        alone_us = recorder_cost_alone(Path(tmp2))
    on, off = agg("access_log_on"), agg("access_log_off")
    doc = {
        "benchmark": "api one-day actor query",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(["fastapi", "uvicorn", "starlette", "chdb", "clickhouse-connect", "kafka-python"]),
        "params": vars(args) | {"out": str(args.out)},
        "access_log_on": on,
        "access_log_off": off,
        "overhead": {
            "qps_change_percent": round((on["qps"] - off["qps"]) / off["qps"] * 100, 1),
            "per_request_ms": round(1000 / on["qps"] - 1000 / off["qps"], 3),
            "p50_ms": round(on["p50_ms"] - off["p50_ms"], 2),
            "recorder_us_per_event_in_the_loaded_api_process": round(cost_us, 1),
            "recorder_us_per_event_alone": round(alone_us, 1),
        },
        "access_events_recorded": recorded,
        "access_events_stored": stored,
        "access_events_stored_check": logged,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    summary = {k: doc[k] for k in ("access_log_on", "access_log_off", "overhead")}
    print(json.dumps(summary, indent=1, default=str)[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
