"""Sealer benchmark: how fast the sealer role seals from the events topic, and its CPU per event.

Real and local: the Tansu broker, chDB in a temporary directory (checkpoints only), the sealer
role with its log feed (``trail.integrity.sealer_role``) in this process. N valid events of P
producers (made by the SDK, hashed and chained) are put on a 4-partition topic, and the sinks'
consumer group is committed at the log's end, as if the sinks had stored everything: no sink
runs, so what is measured is the sealer's own work (reading, validating, chaining, one signed
checkpoint), not the insert it waits for.

Run: ``.venv/bin/python load_tests/bench_sealer.py --out load_tests/results/sealer.json``
(``make bench-sealer``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_tests.bench_ingest import make_templates
from load_tests.machine import machine_info
from trail.ingest.kafka import GroupOffsets
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import generate
from trail.integrity.lease import FileLease
from trail.integrity.log_sealer import log_consumer
from trail.integrity.sealer import Sealer
from trail.integrity.sealer_role import LogFeed, SealerRole
from trail.local.broker import LocalBroker, ensure_topics
from trail.storage.store import Store
from trail.testing import RecordingTransport, test_client

PARTITIONS = 4


def _records(tmp: Path, n: int, producers: int) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    per = n // producers
    templates = make_templates(7)
    for p in range(producers):
        rec = RecordingTransport()
        c = test_client(tmp / f"p{p}", rec, service=f"svc{p}")
        for i in range(per):
            c.record(**templates[(p * per + i) % len(templates)])
        assert c.close()
        out += [(key, v) for key, values in rec.batches for v in values]
    return out


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--producers", type=int, default=20)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        broker = LocalBroker(log_path=tmp / "broker.log").start()
        try:
            topic = "bench.events"
            ensure_topics(broker.bootstrap, {topic: PARTITIONS})
            records = _records(tmp, args.events, args.producers)
            producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all", linger_ms=5)
            futures = [producer.send(topic, key=key, value=value) for key, value in records]
            producer.flush(60)
            producer.close()
            ends: dict[int, int] = {}
            for f in futures:
                meta = f.get(timeout=10)
                ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
            sinks = KafkaConsumer(bootstrap_servers=[broker.bootstrap], group_id="bench.sink", enable_auto_commit=False)
            sinks.commit({TopicPartition(topic, p): OffsetAndMetadata(off, "", -1) for p, off in ends.items()})
            sinks.close()

            store = Store(f"chdb://{tmp / 'chdb'}", "bench")
            store.migrate()
            key = generate()

            def make(adopt_stored: bool) -> Sealer:
                return Sealer(store, key, AppendOnlyLog(tmp / "checkpoints.jsonl"), adopt_stored=adopt_stored)

            feed = LogFeed(
                consumer=log_consumer(broker.bootstrap, topic, "bench.sealer", {}),
                sinks=lambda: GroupOffsets(broker.bootstrap, topic, "bench.sink"),
            )
            role = SealerRole(make, store, FileLease(tmp / "sealer.lock"), interval_s=3600, feed=feed)
            cpu0, t0 = _cpu_s(), time.perf_counter()
            thread = threading.Thread(target=role.run, daemon=True)
            thread.start()
            cp = role.seal_now(timeout_s=600)
            elapsed, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
            step, sealer = role._step, role.sealer
            read = step.records if step else 0
            rejected = step.rejected if step else 0
            unsealed = sealer.unsealed if sealer else 0
            role.stop()
            thread.join(60)
            store.close()
        finally:
            broker.stop()
    sealed = cp.count if cp is not None else 0
    result: dict[str, Any] = {
        "events": len(records),
        "producers": args.producers,
        "partitions": PARTITIONS,
        "sealed": sealed,
        "read": read,
        "rejected": rejected,
        "unsealed": unsealed,
        "checkpoints": role.checkpoints,
        "seconds": round(elapsed, 2),
        "events_per_s": round(sealed / elapsed) if elapsed else None,
        "cpu_us_per_event": round(cpu / max(1, len(records)) * 1e6, 1),
        "note": "sinks' group committed at the log's end; no sink runs: the sealer's own cost",
        "machine": machine_info(["kafka-python", "chdb", "msgspec"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0 if sealed == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
