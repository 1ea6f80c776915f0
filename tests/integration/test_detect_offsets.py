"""Where the detector starts, against the real local broker and chDB: a checkpoint of another
log keeps the windows and reads the new log from its beginning; a checkpoint offset outside
the log stops the detector instead of reading nothing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.conftest_detect import (
    DetectorThread,
    at,
    ev,
    kafka_client,
    make_topics,
    published,
    rules,
)
from trail.detect.consumer import Detector, DetectorConfig
from trail.ingest.errors import OffsetOutOfRange
from trail.storage.store import Store

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


def detector(
    bootstrap: str, names: dict[str, str], store: Store, group: str, log_id: str, *, start: bool = True
) -> DetectorThread:
    config = DetectorConfig(
        bootstrap=bootstrap,
        topic=names["events"],
        alerts_topic=names["alerts"],
        group_id=group,
        log_id=log_id,
        checkpoint_seconds=0.0,
    )
    th = DetectorThread(Detector(config, store, rules()))
    if start:
        return th.start()
    th.thread.start()
    return th


def send(tmp: Path, bootstrap: str, topic: str, events: list[dict[str, Any]], services: int = 4) -> None:
    """Record ``events`` through several services, so that every partition gets some."""
    clients = [kafka_client(tmp, bootstrap, topic, f"svc-{uuid.uuid4().hex[:6]}") for _ in range(services)]
    for i, e in enumerate(events):
        clients[i % services].record(**e)
    for c in clients:
        assert c.close(timeout=30)


def first_log(broker: Any, store: Store, tmp_path: Path, group: str, log_id: str) -> dict[str, str]:
    """A detector on a log of its own: half a denied burst, a bulk export (alerted), filler views."""
    names = make_topics(broker.bootstrap, f"a{uuid.uuid4().hex[:10]}.")
    first = detector(broker.bootstrap, names, store, group, log_id)
    events = [ev("E-DEN-7", at(16, seconds=s * 10), outcome="denied") for s in range(12)]
    events += [ev("E-EXP-7", at(15), action="export", record_count=3000, subject_ids=[])]
    events += [ev("E-FILL-7", at(14, m)) for m in range(27)]
    send(tmp_path / "first", broker.bootstrap, names["events"], sorted(events, key=lambda e: e["occurred_at"]))
    wait_for(lambda: first.detector.stats.processed >= len(events), 30, what="the first log consumed")
    wait_for(lambda: first.detector.stats.published >= 1, 30, what="the export alert")
    first.stop()  # checkpoints: windows, offsets, log id
    assert first.error is None
    return names


def test_a_checkpoint_of_another_log_keeps_the_windows_and_reads_the_new_log_from_its_start(
    broker: Any, store: Store, tmp_path: Path
) -> None:
    """After the log changed (a new local broker), the detector reads the new log from its first
    record, its windows still hold what came before, and nothing old is raised again."""
    group = f"g{uuid.uuid4().hex[:8]}.detector"
    first_log(broker, store, tmp_path, group, "log-1")

    names = make_topics(broker.bootstrap, f"b{uuid.uuid4().hex[:10]}.")  # the new log: shorter than the old
    second = detector(broker.bootstrap, names, store, group, "log-2")
    try:
        assert second.detector.stats.restored_from == "checkpoint" and second.detector.stats.new_log
        rest = [ev("E-DEN-7", at(16, 2, s * 10), outcome="denied") for s in range(12)]
        send(tmp_path / "second", broker.bootstrap, names["events"], rest)
        wait_for(lambda: second.detector.stats.processed >= len(rest), 30, what="the new log consumed")
        wait_for(lambda: second.detector.stats.published >= 1, 30, what="the burst alert")
    finally:
        second.stop()
    assert second.error is None
    [alert] = published(broker.bootstrap, names["alerts"], 1)
    assert (alert.rule, alert.actor) == ("denied_burst", "E-DEN-7")  # the window spans both logs


def test_a_checkpoint_offset_beyond_the_log_stops_the_detector(broker: Any, store: Store, tmp_path: Path) -> None:
    """A checkpoint that claims to be of this log but points past its end stops the detector
    with an error naming the topic, partition and offset, instead of waiting there silently."""
    group = f"g{uuid.uuid4().hex[:8]}.detector"
    first_log(broker, store, tmp_path, group, "log-same")

    names = make_topics(broker.bootstrap, f"c{uuid.uuid4().hex[:10]}.")  # lost and recreated, same id
    again = detector(broker.bootstrap, names, store, group, "log-same", start=False)
    again.thread.join(30)
    assert not again.thread.is_alive()
    assert isinstance(again.error, OffsetOutOfRange), again.error
    assert again.error.topic == names["events"] and again.error.offset > 0
    assert again.error.high == 0 and "beyond the end" in str(again.error)
    assert "checkpoint" in str(again.error) and "log id" in str(again.error)  # what to do about it
