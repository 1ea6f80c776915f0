"""What durable mode costs per ``record()`` call: the caller-thread time of ``Client.record()``
with and without ``durable=True`` (each event journaled to local disk before it returns), and
with ``fsync`` on every journal write (what a power cut would need).

The transport acknowledges at once without a network (a callback), so the figures are the SDK's
own cost on the caller's thread; the worker runs as in production. Each variant records
``--events`` realistic events back to back, three rounds pooled, after a warm-up.

    .venv/bin/python load_tests/bench_durable.py --out load_tests/results/durable.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load_tests.machine import machine_info
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport

KEY = b"bench-key-not-for-production-use-0123456789abcdef"


def event(i: int) -> dict[str, Any]:
    return {
        "actor": {"kind": "staff", "id": f"E{i % 50:04d}", "role": "support"},
        "action": "view",
        "subject_ids": [f"CUST-{i:07d}"],
        "data_categories": ["name", "phone"],
        "purpose": "answer support ticket",
        "legal_basis": "contract",
        "target": {"system": "crm", "dataset": "customers"},
        "attributes": {"ticket": f"T-{i}", "channel": "phone"},
    }


def run(variant: str, n: int, rounds: int, tmp: Path) -> dict[str, Any]:
    samples: list[int] = []
    for r in range(rounds):
        client = Client(
            service="bench",
            transport=CallbackTransport(lambda _k, _v: None),
            subject_key=KEY,
            spool_dir=tmp / f"{variant}-{r}",
            durable=variant != "memory",
            heartbeat_s=0,
        )
        if variant == "durable_fsync":
            assert client._journal is not None
            client._journal.fsync = True
        events = [event(i) for i in range(n)]
        for ev in events[:500]:  # warm-up
            client.record(**ev)
        client.flush(timeout=60)
        for ev in events:
            t = time.perf_counter_ns()
            client.record(**ev)
            samples.append(time.perf_counter_ns() - t)
        assert client.close(timeout=120)
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    return {
        "calls": len(samples),
        "p50_us": round(q[49] / 1000, 1),
        "p99_us": round(q[98] / 1000, 1),
        "mean_us": round(statistics.fmean(samples) / 1000, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--fsync-events", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("load_tests/results/durable.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="trail-bench-durable-") as d:
        tmp = Path(d)
        result = {
            "memory": run("memory", args.events, args.rounds, tmp),
            "durable": run("durable", args.events, args.rounds, tmp),
            "durable_fsync": run("durable_fsync", args.fsync_events, args.rounds, tmp),
        }
    result["durable_extra_p50_us"] = round(result["durable"]["p50_us"] - result["memory"]["p50_us"], 1)
    result["definitions"] = {
        "memory": "record() in the default mode: validate, pseudonymise, enqueue",
        "durable": "durable=True: the event is also written (os.write) to the journal before record() returns; "
        "survives a SIGKILL of the service",
        "durable_fsync": "durable=True with fsync after every journal write; survives a power cut",
    }
    result["machine"] = machine_info(["trail"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
