"""Failure paths with real processes: broker restart (spool replay), sink SIGKILL, SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.conftest import ROOT, TRAIL, committed, read_topic, trail_env, wait_for
from tests.factories import event
from trail.events.wire import decode
from trail.local.broker import LocalBroker, ensure_topics
from trail.sdk.client import Client
from trail.sdk.transport import KafkaTransport
from trail.testing import TEST_KEY, RecordingTransport, test_client

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


def test_broker_down_then_back_delivers_spooled_events_in_order(tmp_path, store, make_sink):
    """Events recorded while the broker is down land after it returns (empty), in order per producer."""
    from tests.conftest import SinkThread
    from trail.ingest.sink import Sink, SinkConfig

    b = LocalBroker(log_path=tmp_path / "broker.log").start()
    topic = "restart.trail.events"
    ensure_topics(b.bootstrap, {topic: 2, "restart.trail.deadletter": 1})

    def sink() -> SinkThread:
        return SinkThread(
            Sink(SinkConfig(b.bootstrap, topic, "restart.trail.deadletter", group_id="restart-sink", batch_seconds=0.2),
                 store)
        ).start()  # fmt: skip

    try:
        first_sink = sink()
        client = Client(
            service="svc",
            transport=KafkaTransport(b.bootstrap, topic, timeout_s=2),
            subject_key=TEST_KEY,
            spool_dir=tmp_path / "spool",
            retry_interval_s=0.3,
        )
        for i in range(300):
            client.record(**event(i))
        assert client.flush(30)
        wait_for(lambda: store.count_events() == 300, 30, what="events before the outage")
        first_sink.stop()
        port = b.port
        b.kill()

        for i in range(300, 1300):
            client.record(**event(i))
        wait_for(lambda: client.stats.spooled > 0, 30, what="events spooled while the broker is down")
        assert not client.flush(timeout=1), "nothing can be delivered while the broker is down"

        b = LocalBroker(port=port, log_path=tmp_path / "broker2.log").start()
        ensure_topics(b.bootstrap, {topic: 2, "restart.trail.deadletter": 1})
        assert client.flush(timeout=60), "spool replayed once the broker is back"
        second_sink = sink()
        wait_for(lambda: store.count_events() == 1300, 60, what="all 1300 events stored")
        second_sink.stop()
        assert client.close(10)
        assert store.gaps() == []
        # in order per producer on the topic: seq strictly increasing within each partition
        records = read_topic(b.bootstrap, topic, expect=1000)
        seqs: dict[int, list[int]] = {}
        for r in records:
            ev = decode(r.value)
            assert isinstance(ev, dict)
            seqs.setdefault(r.partition, []).append(ev["producer"]["seq"])
        all_seqs = sorted(s for part in seqs.values() for s in part)
        assert all_seqs[0] <= 301 and all_seqs[-1] == 1300
        for part in seqs.values():
            assert part == sorted(part), "replayed out of order"
        assert len({r.partition for r in records}) == 1, "one producer's events share one partition"
    finally:
        b.stop()


def _sink_proc(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "consumers" / "sink.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log_path, "ab"),
    )


def _log_events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _cli_counts(env: dict[str, str]) -> dict:
    res = subprocess.run([TRAIL, "counts", "--format", "json"], env=env, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    return json.loads(res.stdout)


def _produce_sdk_events(tmp_path: Path, bootstrap: str, topic: str, n: int, producers: int = 4) -> None:
    rec = RecordingTransport()
    clients = [test_client(tmp_path / f"p{i}", rec, service=f"svc{i}") for i in range(producers)]
    for i in range(n):
        clients[i % producers].record(**event(i))
    for c in clients:
        assert c.close()
    p = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", linger_ms=5)
    for key, values in rec.batches:
        for v in values:
            p.send(topic, key=key, value=v)
    p.flush()
    p.close()


def test_sink_killed_mid_batch_and_restarted_stores_each_event_once(tmp_path, broker, topics, namespace):
    """The sink as its own process, SIGKILLed in the middle of its work and restarted: every
    event is visible exactly once."""
    n = 20_000
    data = tmp_path / "data"
    env = trail_env(
        TRAIL_DATA_DIR=str(data),
        TRAIL_KAFKA_BOOTSTRAP=broker.bootstrap,
        TRAIL_NAMESPACE=namespace,
        TRAIL_SINK_BATCH_SIZE="1500",
        TRAIL_SINK_BATCH_SECONDS="0.2",
        TRAIL_SUBJECT_KEY=TEST_KEY.decode(),
        TRAIL_LOG_FORMAT="json",
    )
    _produce_sdk_events(tmp_path, broker.bootstrap, topics["events"], n)
    log_path = tmp_path / "sink.log"
    proc = _sink_proc(env, log_path)
    try:
        wait_for(
            lambda: sum(1 for e in _log_events(log_path) if e.get("event") == "sink.batch_flushed") >= 2,
            60,
            0.02,
            what="two batches flushed",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        flushed_before = sum(e["events"] for e in _log_events(log_path) if e.get("event") == "sink.batch_flushed")
        assert 0 < flushed_before < n, "killed in the middle of the work"
        proc = _sink_proc(env, log_path)
        group = f"{namespace}trail-sink"
        wait_for(
            lambda: sum(committed(broker.bootstrap, group, topics["events"]).values()) == n,
            120,
            0.5,
            what="the restarted sink to commit every offset",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    counts = _cli_counts(env)
    assert counts["events"] == n
    res = subprocess.run([TRAIL, "gaps", "--format", "json"], env=env, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    # A crash between batches and checkpoints still leaves a store that verifies, every event sealed.
    res = subprocess.run([TRAIL, "verify", "--strict", "--format", "json"], env=env, capture_output=True, timeout=300)
    summary = json.loads(res.stdout.decode().splitlines()[0])
    assert res.returncode == 0, res.stdout.decode()[-3000:]
    assert summary["intact"] and summary["sealed_events"] == n and summary["unsealed_events"] == 0
    # ... and the checkpoints were published to the checkpoints topic, signed with the data directory's key
    from trail.integrity.checkpoint import Checkpoint
    from trail.integrity.keys import load_public_key

    public = load_public_key(data / "keys" / "checkpoint.pub")
    published = read_topic(broker.bootstrap, f"{namespace}trail.checkpoints", expect=summary["checkpoints_checked"])
    cps = [Checkpoint.from_record(json.loads(r.value)) for r in published]
    assert cps and all(cp.signature_ok(public) for cp in cps)
    assert sum(cp.count for cp in cps) >= n


def test_sigterm_flushes_the_partial_batch_and_commits(tmp_path, broker, topics, namespace):
    """SIGTERM makes the sink write its partial batch and commit before it exits 0."""
    data = tmp_path / "data"
    env = trail_env(
        TRAIL_DATA_DIR=str(data),
        TRAIL_KAFKA_BOOTSTRAP=broker.bootstrap,
        TRAIL_NAMESPACE=namespace,
        TRAIL_SINK_BATCH_SIZE="100000",
        TRAIL_SINK_BATCH_SECONDS="600",
        TRAIL_SUBJECT_KEY=TEST_KEY.decode(),
        TRAIL_LOG_FORMAT="json",
    )
    log_path = tmp_path / "sink.log"
    proc = _sink_proc(env, log_path)
    try:
        wait_for(lambda: any(e.get("event") == "sink.assigned" for e in _log_events(log_path)), 60, what="assignment")
        _produce_sdk_events(tmp_path, broker.bootstrap, topics["events"], 250, producers=1)
        time.sleep(3)  # consumed but, with a 600 s batch window, not yet flushed
        assert not any(e.get("event") == "sink.batch_flushed" for e in _log_events(log_path))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    flushed = [e for e in _log_events(log_path) if e.get("event") == "sink.batch_flushed"]
    assert sum(e["events"] for e in flushed) == 250
    assert _cli_counts(env)["events"] == 250
    # committed: a new sink in the same group finds nothing left to store
    proc = _sink_proc(env, tmp_path / "sink2.log")
    try:
        wait_for(lambda: any(e.get("event") == "sink.assigned" for e in _log_events(tmp_path / "sink2.log")), 60,
                 what="second assignment")  # fmt: skip
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(e.get("event") == "sink.batch_flushed" for e in _log_events(tmp_path / "sink2.log"))
    assert _cli_counts(env)["deliveries"] == 250
