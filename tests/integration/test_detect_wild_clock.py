"""A forged far-future record already on trail.events (an old producer, a forged write) cannot
stall or skip anyone else's window rules: the real broker, the real detector."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.conftest_detect import ev, kafka_client, make_detector, make_topics, published
from trail.events.model import canonical_bytes, format_timestamp, validate_input
from trail.sdk.transport import KafkaTransport
from trail.storage.store import Store

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


def forged_value(when: str) -> bytes:
    """A well-formed, correctly hashed wire event dated ``when`` (what an old producer could send)."""
    e = validate_input(ev("E-FORGED", format_timestamp(datetime.now(UTC)), subject_ids=[]) | {
        "source": {"service": "old", "host": "h", "environment": "test"}})  # fmt: skip
    e.pop("subject_ids")
    e.update(subject_refs=[], occurred_at=when, producer={"id": "old/1", "seq": 1, "prev": ""})
    e["hash"] = sha256(canonical_bytes(e)).hexdigest()
    return canonical_bytes(e)


def test_a_forged_far_future_record_on_the_topic_stalls_no_window_rule(
    broker: Any, store: Store, tmp_path: Path
) -> None:
    """After a year-9999 record on the same partition, enumeration and denied_burst still fire for others."""
    names = make_topics(broker.bootstrap, f"w{uuid.uuid4().hex[:10]}.")
    det = make_detector(broker.bootstrap, names, store)
    try:
        client = kafka_client(tmp_path, broker.bootstrap, names["events"], "svc")
        now = datetime.now(UTC)
        client.record(**ev("E-BEFORE", format_timestamp(now - timedelta(minutes=8))))
        assert client.flush(30)
        # The forged record goes to the partition the service's own events use (same key).
        transport = KafkaTransport(broker.bootstrap, names["events"])
        transport.send(client._key, [forged_value("9999-06-01T00:00:00.000000Z")])
        transport.close()
        wait_for(lambda: det.detector.stats.processed >= 2, 30, what="the forged record consumed")

        # What happens next, live (the forged record arrived before it): 520 distinct subjects in
        # five minutes, 25 denied attempts in four, in time order.
        start = datetime.now(UTC) - timedelta(minutes=6)
        later = [(start + timedelta(seconds=12 * m), "E-ENUM-W", m) for m in range(26)]
        later += [(start + timedelta(seconds=10 * s), "E-DEN-W", s) for s in range(25)]
        for when, actor, i in sorted(later):
            if actor == "E-ENUM-W":
                ids = [f"SUBJ-TEST-WILD-{i * 20 + k:06d}" for k in range(20)]
                client.record(**ev(actor, format_timestamp(when), subject_ids=ids))
            else:
                client.record(**ev(actor, format_timestamp(when), outcome="denied"))
        assert client.close(timeout=30)
        expected = {("enumeration", "E-ENUM-W"), ("denied_burst", "E-DEN-W")}

        def found() -> set[tuple[str, str]]:
            return {(a.rule, a.actor) for a in published(broker.bootstrap, names["alerts"], 2, timeout=3)}

        wait_for(lambda: expected <= found(), 60, interval=1, what="the window rules' alerts")
        assert det.detector.engine.stats.wild == 1
    finally:
        det.stop()
