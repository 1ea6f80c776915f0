"""SDK → real broker → sink → real chDB: counts, redelivery, bad input, store outage."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import committed as _committed
from tests.conftest import read_topic, wait_for
from tests.factories import event, subject
from trail.events.model import canonical_bytes, event_hash
from trail.sdk.client import Client
from trail.sdk.transport import KafkaTransport
from trail.testing import TEST_KEY, capture_logs

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


def kafka_client(tmp_path: Path, bootstrap: str, topic: str, service: str = "svc", **kw: Any) -> Client:
    return Client(
        service=service,
        transport=KafkaTransport(bootstrap, topic, timeout_s=5),
        subject_key=TEST_KEY,
        spool_dir=tmp_path / "spool",
        **kw,
    )


def test_emit_n_read_exactly_n(tmp_path, broker, topics, store, make_sink):
    """N events recorded through the SDK are read back from the store exactly N times."""
    make_sink()
    client = kafka_client(tmp_path, broker.bootstrap, topics["events"])
    ids = [client.record(**event(i)) for i in range(3000)]
    assert client.close(timeout=30)
    wait_for(lambda: store.count_events() >= 3000, 60, what="3000 events stored")
    time.sleep(0.5)  # anything extra would have arrived by now
    rows = store.query("SELECT toString(event_id) AS id, count() AS n FROM {db}.events FINAL GROUP BY id")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert all(r["n"] == 1 for r in rows)
    assert store.gaps() == []


def test_stored_event_rebuilds_to_its_hash(tmp_path, broker, topics, store, make_sink):
    """A stored row rebuilds to the exact event the SDK hashed (the chain is checkable)."""
    make_sink()
    client = kafka_client(tmp_path, broker.bootstrap, topics["events"])
    client.record(**event(1, destination={"kind": "file", "name": "x.csv"}, consent_ref="C-1", legal_basis="consent"))
    client.record(**event(2, location=None, attributes=None))
    assert client.close(timeout=30)
    wait_for(lambda: store.count_events() == 2, 30, what="2 events")
    events = store.find_events(limit=10)
    assert len(events) == 2
    prev = ""
    for ev in sorted(events, key=lambda e: e["producer"]["seq"]):
        body = {k: v for k, v in ev.items() if k != "hash"}
        assert event_hash(body) == ev["hash"]
        assert ev["producer"]["prev"] == prev
        prev = ev["hash"]


def test_resend_under_new_producer_shows_nothing_new(tmp_path, broker, topics, store, make_sink):
    """The same events sent again by a restarted service (new producer id) add nothing visible."""
    make_sink()
    fixed = [event(i, event_id=str(uuid.uuid4()), occurred_at="2026-11-20T08:00:00.000000Z") for i in range(500)]
    first = kafka_client(tmp_path / "a", broker.bootstrap, topics["events"])
    for ev in fixed:
        first.record(**ev)
    assert first.close(timeout=30)
    wait_for(lambda: store.count_events() == 500, 30, what="first delivery")
    second = kafka_client(tmp_path / "b", broker.bootstrap, topics["events"])
    assert second.producer_id != first.producer_id
    for ev in fixed:
        second.record(**ev)
    assert second.close(timeout=30)
    wait_for(
        lambda: store.query("SELECT count() AS n FROM {db}.events FINAL")[0]["n"] == 1000, 30, what="second delivery"
    )
    assert store.count_events() == 500
    assert len(store.find_events(limit=10_000)) == 500
    assert store.counts()["events"] == 500
    assert store.gaps() == []


def _sdk_bytes(tmp_path: Path, n: int, start: int = 0) -> list[bytes]:
    from trail.testing import RecordingTransport, test_client

    rec = RecordingTransport()
    c = test_client(tmp_path, rec)
    for i in range(start, start + n):
        c.record(**event(i))
    assert c.close()
    return rec.raw


def _bad_records(good_template: bytes) -> list[tuple[str, bytes]]:
    ev = json.loads(good_template)
    wrong_type = dict(ev, record_count="many")
    unknown_schema = dict(ev, schema="trail.audit/v9")
    tampered = dict(ev, purpose="something else")  # hash no longer matches
    raw_ids = dict(ev, subject_ids=[subject(1)])
    oversize = dict(ev, attributes={f"k{i}": "x" * 1000 for i in range(70)})
    return [
        ("malformed", b'{"schema": "trail.audit/v1", "actor": '),
        ("not-utf8", b"\xff\xfe\x00garbage"),
        ("array", b"[1, 2, 3]"),
        ("wrong-type", canonical_bytes(wrong_type)),
        ("unknown-schema", canonical_bytes(unknown_schema)),
        ("hash-mismatch", canonical_bytes(tampered)),
        ("raw-subject-ids", canonical_bytes(raw_ids)),
        ("oversize", canonical_bytes(oversize)),
        ("empty", b""),
    ]


def test_bad_records_are_deadlettered_and_good_ones_stored(tmp_path, broker, topics, store, make_sink):
    """Bad records, alone and in a flood between good ones, go to the dead-letter topic with a
    reason; every good record is stored and the sink keeps running."""
    sink = make_sink(batch_size=500)
    good = _sdk_bytes(tmp_path, 1200)
    bad = _bad_records(good[0])
    flood = [("flood", b"not json at all %d" % i) for i in range(600)]
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all", linger_ms=5)
    sent_bad = 0
    key = b"mixed"
    for i, value in enumerate(good[:600]):
        producer.send(topics["events"], key=key, value=value)
        if i % 60 == 0 and sent_bad < len(bad):
            producer.send(topics["events"], key=key, value=bad[sent_bad][1])
            sent_bad += 1
    for _, value in flood:
        producer.send(topics["events"], key=key, value=value)
    for value in good[600:]:
        producer.send(topics["events"], key=key, value=value)
    producer.flush()
    producer.close()
    assert sent_bad == len(bad)

    wait_for(lambda: store.count_events() == 1200, 60, what="all good events stored")
    dead = read_topic(broker.bootstrap, topics["deadletter"], expect=len(bad) + len(flood))
    assert len(dead) == len(bad) + len(flood)
    reasons = [dict(r.headers)["trail.reason"].decode() for r in dead]
    assert all(reasons), "every dead letter carries a reason"
    by_value = {r.value: dict(r.headers)["trail.reason"].decode() for r in dead}
    expected_words = {
        "malformed": "not valid",
        "not-utf8": "not valid",
        "array": "JSON object",
        "wrong-type": "record_count",
        "unknown-schema": "unknown schema",
        "hash-mismatch": "hash",
        "raw-subject-ids": "subject_ids",
        "oversize": "byte limit",
        "empty": "not valid",
    }
    for name, value in bad:
        assert expected_words[name] in by_value[value], (name, by_value[value])
    for r in dead:
        h = dict(r.headers)
        assert h["trail.topic"].decode() == topics["events"]
        assert int(h["trail.offset"]) >= 0
    assert sink.thread.is_alive() and sink.error is None
    # the sink still works after the flood
    more = _sdk_bytes(tmp_path / "more", 10, start=5000)
    p2 = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
    for v in more:
        p2.send(topics["events"], key=b"late", value=v)
    p2.flush()
    p2.close()
    wait_for(lambda: store.count_events() == 1210, 30, what="events after the flood")


def test_all_bad_input_halts_the_sink_without_committing(tmp_path, broker, topics, store, make_sink):
    """A producer that sends nothing valid makes the sink halt instead of diverting the trail."""
    sink = make_sink(batch_size=200, max_deadletter_ratio=0.5, deadletter_window=400)
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all", linger_ms=5)
    for i in range(1000):
        producer.send(topics["events"], key=b"k", value=b'{"broken": %d}' % i)
    producer.flush()
    producer.close()
    wait_for(lambda: not sink.thread.is_alive(), 30, what="the sink to halt")
    from trail.ingest.sink import SinkHalted

    assert isinstance(sink.error, SinkHalted)
    assert "invalid" in str(sink.error)
    committed = _committed(broker.bootstrap, sink.sink.cfg.group_id, topics["events"])
    assert sum(committed.values()) < 1000


def test_store_outage_commits_nothing_and_recovers(tmp_path, broker, topics, store, make_sink):
    """While the store refuses writes the sink commits nothing; afterwards every event lands once."""
    sink = make_sink(batch_size=1000, batch_seconds=0.2)
    client = kafka_client(tmp_path, broker.bootstrap, topics["events"])
    for i in range(200):
        client.record(**event(i))
    assert client.flush(30)
    wait_for(lambda: store.count_events() == 200, 30, what="first events")
    # an insert is committed once it has finished, at the loop's next round
    wait_for(
        lambda: sum(_committed(broker.bootstrap, sink.sink.cfg.group_id, topics["events"]).values()) == 200,
        30,
        what="first offsets committed",
    )
    before = _committed(broker.bootstrap, sink.sink.cfg.group_id, topics["events"])
    store.command("DETACH TABLE {db}.events")
    try:
        for i in range(200, 700):
            client.record(**event(i))
        assert client.flush(30)
        wait_for(lambda: sink.sink.stats.store_failures >= 2, 30, what="insert retries")
        assert _committed(broker.bootstrap, sink.sink.cfg.group_id, topics["events"]) == before
        assert sink.thread.is_alive()
    finally:
        store.command("ATTACH TABLE {db}.events")
    wait_for(lambda: store.count_events() == 700, 60, what="events after recovery")
    wait_for(
        lambda: sum(_committed(broker.bootstrap, sink.sink.cfg.group_id, topics["events"]).values()) == 700,
        30,
        what="offsets committed after recovery",
    )
    assert client.close(10)
    assert store.query("SELECT count() AS n FROM {db}.events FINAL")[0]["n"] == 700


def test_no_raw_subject_id_in_rows_logs_or_dead_letters(tmp_path, broker, topics, store, make_sink):
    """No raw subject id reaches the stored rows, the logs or the dead-letter reasons."""
    raw_ids = [subject(i) for i in range(40)]
    with capture_logs("debug") as logs:
        make_sink(batch_size=100)
        client = kafka_client(tmp_path, broker.bootstrap, topics["events"])
        for i, sid in enumerate(raw_ids):
            client.record(**event(i, subject_ids=[sid]))
        # a misbehaving producer puts raw ids on the wire; the sink must not echo them
        leaked = json.loads(_sdk_bytes(tmp_path / "x", 1)[0])
        leaked["subject_ids"] = raw_ids[:3]
        leaked2 = dict(leaked, action=raw_ids[5])
        del leaked2["subject_ids"]
        p = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
        p.send(topics["events"], value=canonical_bytes(leaked))
        p.send(topics["events"], value=canonical_bytes(leaked2))
        p.flush()
        p.close()
        assert client.close(30)
        wait_for(lambda: store.count_events() == 40, 30, what="40 events")
        dead = read_topic(broker.bootstrap, topics["deadletter"], expect=2)
    assert len(dead) == 2
    rows = store.query("SELECT * FROM {db}.events")
    dump = json.dumps(rows, default=str) + "".join(
        json.dumps(store.query(f"SELECT * FROM {{db}}.{copy}"), default=str)
        for copy in ("pages_by_subject", "pages_by_actor")
    )
    reasons = " ".join(dict(r.headers)["trail.reason"].decode() for r in dead)
    log_text = logs.getvalue()
    assert "sink.batch_flushed" in log_text
    for sid in raw_ids:
        assert sid not in dump
        assert sid not in reasons
        assert sid not in log_text
