"""Sinks scale out: two sink processes in one consumer group share the partitions of the events
topic, and every event is stored exactly once across them.

chDB admits one process per directory, so each sink here has its own store directory; what this
proves is the consumer group (partitions split, nothing read twice, nothing skipped, a clean stop
commits what was stored). That both write into one set of tables, where a redelivery after a
rebalance collapses, is what only a ClickHouse server shows (docs/scaling.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.factories import event
from trail.local.broker import LocalBroker, ensure_topics
from trail.testing import TEST_KEY, RecordingTransport, test_client

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4


def _sink(tmp: Path, name: str, broker: LocalBroker, ns: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / f"{name}.log"
    env = {
        **os.environ,
        "TRAIL_DATA_DIR": str(tmp / name),
        "TRAIL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TRAIL_NAMESPACE": ns,
        "TRAIL_SUBJECT_KEY": TEST_KEY.decode(),
        "TRAIL_CHECKPOINT_SECONDS": "0",
        "TRAIL_SINK_BATCH_SECONDS": "0.2",
        "TRAIL_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "consumers" / "sink.py")], env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    return proc, log


def _lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _stored_ids(data: Path) -> list[str]:
    code = (
        "import json, sys; from trail.storage.store import Store; "
        f"s = Store('chdb://{data / 'store'}', 'trail'); "
        "print(json.dumps([r['e'] for r in s.query('SELECT toString(event_id) AS e FROM {db}.events')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_two_sinks_in_one_group_share_the_partitions_and_store_each_event_once(
    tmp_path: Path, broker: LocalBroker, namespace: str
) -> None:
    ensure_topics(broker.bootstrap, {f"{namespace}trail.events": PARTITIONS, f"{namespace}trail.deadletter": 1})
    sinks = [_sink(tmp_path, name, broker, namespace) for name in ("sink-a", "sink-b")]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # both in the group, every partition owned
            owned = [[ln for ln in _lines(log) if ln.get("event") == "sink.assigned"] for _, log in sinks]
            if all(owned) and all(p.poll() is None for p, _ in sinks):
                a, b = ({int(x) for x in o[-1]["partitions"]} for o in owned)
                if a and b and not a & b and a | b == set(range(PARTITIONS)):
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the two sinks did not share the partitions within 90 s")
        rec = RecordingTransport()
        values: list[tuple[bytes, bytes]] = []
        for svc in range(8):  # eight producers, keyed by producer id as the SDK does
            client = test_client(tmp_path / f"svc{svc}", rec, service=f"svc-{svc}")
            for i in range(150):
                client.record(**event(svc * 1000 + i))
            assert client.close(timeout=30)
        for key, batch in rec.batches:
            values.extend((key, v) for v in batch)
        producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all", linger_ms=5)
        for key, value in values:
            producer.send(f"{namespace}trail.events", value, key=key)
        producer.flush(30)
        producer.close()
        expected = {e["event_id"] for e in rec.events}
        assert len(expected) == 1200
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stored = sum(
                ln.get("events", 0) for _, log in sinks for ln in _lines(log) if ln.get("event") == "sink.batch_flushed"
            )
            if stored >= len(expected):
                break
            time.sleep(0.5)
    finally:
        for proc, _ in sinks:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc, _ in sinks]
    assert codes == [0, 0]
    per_sink = [_stored_ids(tmp_path / name) for name in ("sink-a", "sink-b")]
    assert all(per_sink), "each sink stored part of the stream: the group shared the partitions"
    together = per_sink[0] + per_sink[1]
    assert len(together) == len(set(together)), "no event stored by both sinks"
    assert set(together) == expected, "no event skipped"
