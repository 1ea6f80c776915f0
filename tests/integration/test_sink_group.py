"""Sinks scale out: two sink processes in one consumer group share the partitions of the events
topic, and every event is stored exactly once across them.

chDB admits one process per directory, so each sink here has its own store directory; what this
proves is the consumer group (partitions split, nothing read twice, nothing skipped, a clean stop
commits what was stored). That both write into one set of tables, where a redelivery after a
rebalance collapses, is what only a ClickHouse server shows (docs/scaling.md)."""

from __future__ import annotations

import itertools
import json
import os
import random
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


def _sinks_sharing(tmp_path: Path, broker: LocalBroker, namespace: str) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Two sink processes in one group, once every partition is owned by exactly one of them."""
    sinks = [_sink(tmp_path, name, broker, namespace) for name in ("sink-a", "sink-b")]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # both in the group, every partition owned
        owned = [[ln for ln in _lines(log) if ln.get("event") == "sink.assigned"] for _, log in sinks]
        if all(owned) and all(p.poll() is None for p, _ in sinks):
            a, b = ({int(x) for x in o[-1]["partitions"]} for o in owned)
            if a and b and not a & b and a | b == set(range(PARTITIONS)):
                return sinks
        time.sleep(0.5)
    for proc, _ in sinks:
        proc.kill()
    pytest.fail("the two sinks did not share the partitions within 90 s")


def _records(tmp_path: Path, services: int, per: int) -> tuple[list[tuple[bytes, bytes]], set[str]]:
    """Valid records of ``services`` producers, keyed by producer id as the SDK does."""
    rec = RecordingTransport()
    values: list[tuple[bytes, bytes]] = []
    for svc in range(services):
        client = test_client(tmp_path / f"svc{svc}", rec, service=f"svc-{svc}")
        for i in range(per):
            client.record(**event(svc * 1000 + i))
        assert client.close(timeout=30)
    for key, batch in rec.batches:
        values.extend((key, v) for v in batch)
    return values, {e["event_id"] for e in rec.events}


def _flushed(sinks: list[tuple[subprocess.Popen[bytes], Path]]) -> int:
    return sum(ln.get("events", 0) for _, log in sinks for ln in _lines(log) if ln.get("event") == "sink.batch_flushed")


def test_two_sinks_in_one_group_share_the_partitions_and_store_each_event_once(
    tmp_path: Path, broker: LocalBroker, namespace: str
) -> None:
    ensure_topics(broker.bootstrap, {f"{namespace}trail.events": PARTITIONS, f"{namespace}trail.deadletter": 1})
    sinks = _sinks_sharing(tmp_path, broker, namespace)
    try:
        values, expected = _records(tmp_path, 8, 150)
        assert len(expected) == 1200
        producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all", linger_ms=5)
        # Each producer's records on one partition, as keying does, but the producers spread over
        # every partition: hashing 8 random producer ids left one sink with nothing about once
        # in a hundred runs, which would prove nothing about the group.
        partition_of = {key: n % PARTITIONS for n, key in enumerate(dict.fromkeys(k for k, _ in values))}
        for key, value in values:
            producer.send(f"{namespace}trail.events", value, key=key, partition=partition_of[key])
        producer.flush(30)
        producer.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _flushed(sinks) < len(expected):
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


def _sealer(tmp: Path, broker: LocalBroker, ns: str, n: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRAIL_DATA_DIR": str(tmp / "sealer"),
        "TRAIL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TRAIL_NAMESPACE": ns,
        "TRAIL_SUBJECT_KEY": TEST_KEY.decode(),
        "TRAIL_CHECKPOINT_SECONDS": "0.2",
        "TRAIL_LOG_FORMAT": "json",
    }
    log = (tmp / f"sealer-{n}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "consumers" / "sealer.py")], env=env, stdout=subprocess.DEVNULL, stderr=log
    )


def _file_chain(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "sealer" / "checkpoints.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_a_sealer_process_killed_again_and_again_seals_both_sinks_events_in_one_chain(
    tmp_path: Path, broker: LocalBroker, namespace: str
) -> None:
    """Two sink processes and a sealer process (its own store directory: chDB admits one process
    per directory, so the sinks' rows are not its to see; it seals from the log behind the sinks'
    commits and never reads them). The sealer is SIGKILLed at random moments while events flow
    and started again each time; its checkpoints cover every event once, in one unforked chain."""
    ensure_topics(broker.bootstrap, {f"{namespace}trail.events": PARTITIONS, f"{namespace}trail.deadletter": 1})
    rng = random.Random(20261130)  # where in its rounds each sealer dies
    sinks = _sinks_sharing(tmp_path, broker, namespace)
    sealers = [_sealer(tmp_path, broker, namespace, 0)]
    kills = 0
    try:
        values, expected = _records(tmp_path, 8, 150)
        # Chunk k carries seqs k+1, k+7, k+13, ... of every producer: each chunk lets the sealer seal
        # one more event per producer and leaves the rest of the chunk waiting behind gaps, which
        # every restart must read again (its offsets committed at the oldest one still waiting).
        chunks = [values[i::6] for i in range(6)]
        producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all", linger_ms=5)
        sent = 0
        for chunk in chunks:
            for key, value in chunk:
                producer.send(f"{namespace}trail.events", value, key=key)
            producer.flush(30)
            sent += len(chunk)
            # this sealer seals some of the chunk (a checkpoint of its own), then dies in a later round
            log = tmp_path / f"sealer-{kills}.log"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(ln.get("event") == "sealer.checkpoint" for ln in _lines(log)):
                assert sealers[-1].poll() is None, log.read_text()[-2000:]
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.5))
            sealers[-1].kill()  # SIGKILL, anywhere in a round: reading, sealing, writing, committing
            sealers[-1].wait(30)
            kills += 1
            sealers.append(_sealer(tmp_path, broker, namespace, kills))
        producer.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(r["count"] for r in _file_chain(tmp_path)) < len(expected):
            assert sealers[-1].poll() is None, (tmp_path / f"sealer-{kills}.log").read_text()[-2000:]
            time.sleep(0.3)
        last = tmp_path / f"sealer-{kills}.log"
        while sealers[-1].poll() is None and not any(ln.get("event") == "sealer.started" for ln in _lines(last)):
            time.sleep(0.05)  # started and handling signals, so SIGTERM is a clean stop
    finally:
        for proc in [sealers[-1]] + [p for p, _ in sinks]:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in [sealers[-1]] + [p for p, _ in sinks]]
    assert codes == [0, 0, 0]
    chain = _file_chain(tmp_path)
    assert [c["seq"] for c in chain] == list(range(1, len(chain) + 1)), "one record per checkpoint: no fork"
    assert all(b["prev"] for b in chain[1:])
    by_producer: dict[str, list[tuple[int, int]]] = {}
    for c in chain:
        for r in c["ranges"]:
            by_producer.setdefault(r["producer"], []).append((r["first"], r["last"]))
    assert len(by_producer) == 8
    for pid, ranges in by_producer.items():
        ranges.sort()
        assert ranges[0][0] == 1 and ranges[-1][1] == 150, pid
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges)), f"{pid}: gap or overlap"
    assert sum(c["count"] for c in chain) == len(expected) == 1200
    assert kills == 6
    signed = [
        sum(ln.get("event") == "sealer.checkpoint" for ln in _lines(tmp_path / f"sealer-{n}.log")) for n in range(kills)
    ]
    assert all(signed), f"every killed sealer had signed checkpoints before it died: {signed}"
