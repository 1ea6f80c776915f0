"""Streaming detection against the real local broker and real chDB: rules fire on their
incidents and stay silent on look-alikes; replay equals live; restart neither duplicates nor
misses; malformed records do not stop detection; reviews are recorded in the trail."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import committed, wait_for
from tests.integration.conftest_detect import (
    at,
    ev,
    history,
    incidents,
    kafka_client,
    lookalikes,
    make_detector,
    make_topics,
    published,
    rules,
    scenario,
    seed_store,
    write_jsonl,
)
from trail.config import Settings
from trail.detect.alerts import Alert
from trail.detect.consumer import Detector
from trail.detect.review import get_alert, list_alerts, review_alert
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport
from trail.service import emit_lines
from trail.storage.store import Store
from trail.storage.writer import store_writer
from trail.testing import TEST_KEY
from trail.wiring import start_detection

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


@pytest.fixture()
def detect_topics(broker: Any) -> dict[str, str]:
    """Topics of this test's own namespace."""
    return make_topics(broker.bootstrap, f"d{uuid.uuid4().hex[:10]}.")


def _new_store(chdb_path: Path) -> Store:
    s = Store(f"chdb://{chdb_path}", f"t_{uuid.uuid4().hex[:12]}")
    s.migrate()
    return s


@pytest.fixture(scope="module")
def live(broker: Any, chdb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The scenario lived through: three services record it as it happens, detection runs."""
    tmp = tmp_path_factory.mktemp("live")
    ns = f"l{uuid.uuid4().hex[:10]}."
    names = make_topics(broker.bootstrap, ns)
    store = _new_store(chdb_path)
    seed_store(store, tmp, history())
    handle = start_detection(Settings(namespace=ns), store, broker.bootstrap, rules=rules())
    events = scenario()
    rng = random.Random(5)
    clients = [kafka_client(tmp, broker.bootstrap, names["events"], f"svc{i}") for i in range(3)]

    # Live: services interleave, each a little out of order, and events reach the broker
    # within minutes of happening (every client flushes at the end of each 5-minute slot).
    def slot(e: dict[str, Any]) -> str:
        return f"{e['occurred_at'][:14]}{int(e['occurred_at'][14:16]) // 5:02d}"

    jittered = sorted(events, key=lambda e: slot(e) + str(rng.random()))
    for i, e in enumerate(jittered):
        clients[i % 3].record(**e)
        if i + 1 == len(jittered) or slot(jittered[i + 1]) != slot(e):
            for c in clients:
                assert c.flush(timeout=30)
    for c in clients:
        assert c.close(timeout=30)
    try:
        wait_for(lambda: handle.detector.stats.processed >= len(events), 60, what="detector consumed the scenario")
        # Publishing follows processing: wait for every expected finding, not for what is out so far.
        wait_for(lambda: handle.detector.stats.published >= len(incidents()), 30, what="alerts published")
        n = handle.detector.stats.published
        wait_for(lambda: handle.alert_sink.stats.stored >= n, 30, what="alerts stored")
        alerts = published(broker.bootstrap, names["alerts"], n)
        yield {"alerts": alerts, "store": store, "names": names, "events": events, "handle": handle}
    finally:
        handle.stop()
        store.command("DROP DATABASE IF EXISTS {db}")


def _findings(alerts: list[Alert]) -> set[tuple[str, str]]:
    return {(a.rule, a.actor) for a in alerts}


@pytest.mark.parametrize(("rule", "actor"), [pytest.param(*k, id=k[0] + "-" + k[1]) for k in incidents()])
def test_rule_fires_on_injected_case(live: dict[str, Any], rule: str, actor: str) -> None:
    """The rule's injected incident raises its alert, published once."""
    hits = [a for a in live["alerts"] if (a.rule, a.actor) == (rule, actor)]
    assert len(hits) == 1
    assert hits[0].articles and hits[0].evidence


@pytest.mark.parametrize("case", [pytest.param(k, id=k) for k in lookalikes()])
def test_rule_silent_on_lookalike(live: dict[str, Any], case: str) -> None:
    """A look-alike raises no alert."""
    actors = {e["actor"]["id"] for e in lookalikes()[case]}
    assert [a for a in live["alerts"] if a.actor in actors] == []


def test_live_alerts_are_exactly_the_incidents(live: dict[str, Any]) -> None:
    """Nothing but the injected incidents fired, and no alert id was published twice."""
    eng = live["handle"].detector.engine
    assert (eng.stats.late, live["handle"].detector.stats.malformed) == (0, 0)
    assert _findings(live["alerts"]) == set(incidents())
    ids = Counter(a.alert_id for a in live["alerts"])
    assert max(ids.values()) == 1


def test_alerts_table_holds_the_published_alerts(live: dict[str, Any]) -> None:
    """The alert sink stored every published alert once, open, with its fields."""
    stored = list_alerts(live["store"], limit=1000)
    assert sorted(a.alert_id for a in stored) == sorted(a.alert_id for a in live["alerts"])
    assert {a.status for a in stored} == {"open"}
    one = next(a for a in stored if a.rule == "bulk_export" and a.actor == "E-EXP-1")
    assert one.count == 1500
    assert one.window_start.endswith("Z")


def test_replay_gives_the_same_alerts(live: dict[str, Any], broker: Any, chdb_path: Path, tmp_path: Path) -> None:
    """Replaying the history from a file (as `trail emit --file` does) gives the live run's alerts."""
    ns = f"r{uuid.uuid4().hex[:10]}."
    names = make_topics(broker.bootstrap, ns)
    store = _new_store(chdb_path)
    try:
        seed_store(store, tmp_path, history())
        path = write_jsonl(tmp_path / "day.jsonl", live["events"])
        client = kafka_client(tmp_path, broker.bootstrap, names["events"], "emit")
        result = emit_lines(client, path.read_bytes().splitlines())
        assert client.close(timeout=30)
        assert result.accepted == len(live["events"])
        det = make_detector(broker.bootstrap, names, store)
        try:
            wait_for(lambda: det.detector.stats.processed >= len(live["events"]), 60, what="replay consumed")
        finally:
            det.stop()
        replayed = published(broker.bootstrap, names["alerts"], det.detector.stats.published)
        assert {a.finding() for a in replayed} == {a.finding() for a in live["alerts"]}
    finally:
        store.command("DROP DATABASE IF EXISTS {db}")


def test_restart_publishes_no_duplicate_and_misses_none(
    broker: Any, store: Store, detect_topics: dict[str, str], tmp_path: Path
) -> None:
    """A detector killed after publishing but before committing, then restarted, publishes
    every alert exactly once, including one whose window spans the crash."""
    names = detect_topics
    client = kafka_client(tmp_path, broker.bootstrap, names["events"], "svc")

    def send(events: list[dict[str, Any]]) -> None:
        for e in events:
            client.record(**e)
        assert client.flush(timeout=30)

    class CrashBeforeCommit(Detector):
        """Dies, once armed, right after publishing and before committing (as a kill -9 there would)."""

        armed = False

        def _commit(self, offsets: Any) -> None:
            if self.armed:
                raise SystemExit("killed")
            super()._commit(offsets)

    first = make_detector(broker.bootstrap, names, store, CrashBeforeCommit, checkpoint_seconds=0.0)
    # Before the crash: half a denied burst (committed and checkpointed), one bulk export.
    burst = [ev("E-DEN-9", at(16, seconds=s * 10), outcome="denied") for s in range(24)]
    send([*burst[:12], ev("E-EXP-9", at(10), action="export", record_count=3000, subject_ids=[])])
    wait_for(lambda: first.detector.stats.processed >= 13, 30, what="first batch consumed")
    wait_for(lambda: first.detector.stats.checkpoints >= 1, 30, what="checkpoint")

    # The crash: the next alert is published, then the process dies before committing.
    first.detector.armed = True  # type: ignore[attr-defined]
    send([ev("E-DEL-9", at(11), action="destroy", record_count=4000, subject_ids=[])])
    first.thread.join(30)
    assert isinstance(first.error, SystemExit)
    assert first.detector.stats.published == 2

    second = make_detector(broker.bootstrap, names, store, checkpoint_seconds=0.0)
    try:
        assert second.detector.stats.restored_from == "checkpoint"
        send(burst[12:])  # the rest of the burst: the window must remember the first half
        wait_for(lambda: second.detector.stats.published >= 1, 30, what="burst alert after restart")
        time.sleep(1.0)
        assert second.detector.stats.suppressed >= 1  # the destroy alert was recomputed, not republished
    finally:
        second.stop()
        assert client.close(timeout=10)
    group = f"{names['events']}.detector"
    assert sum(committed(broker.bootstrap, group, names["events"]).values()) == 26  # everything, once done
    alerts = published(broker.bootstrap, names["alerts"], 3)
    assert sorted((a.rule, a.actor) for a in alerts) == [
        ("bulk_destruction", "E-DEL-9"),
        ("bulk_export", "E-EXP-9"),
        ("denied_burst", "E-DEN-9"),
    ]


def test_malformed_event_does_not_stop_detection(
    broker: Any, store: Store, detect_topics: dict[str, str], tmp_path: Path
) -> None:
    """Records that are not valid events are skipped; the incident after them still fires."""
    names = detect_topics
    det = make_detector(broker.bootstrap, names, store)
    try:
        producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
        for bad in (b"not json", b"[1,2]", b'{"schema":"trail.audit/v1"}', b"\xff\xfe"):
            producer.send(names["events"], key=b"k", value=bad)
        producer.send(names["events"], key=b"k", value=None)
        producer.flush(10)
        producer.close()
        client = kafka_client(tmp_path, broker.bootstrap, names["events"], "svc")
        client.record(**ev("E-XB-9", at(12), action="provide", destination={"kind": "abroad"}, subject_ids=[]))
        assert client.close(timeout=30)
        wait_for(lambda: det.detector.stats.published >= 1, 30, what="alert after malformed records")
        assert det.detector.stats.malformed == 5
    finally:
        det.stop()
    [alert] = published(broker.bootstrap, names["alerts"], 1)
    assert (alert.rule, alert.actor) == ("cross_border", "E-XB-9")


@pytest.mark.parametrize(
    ("decision", "action", "status"),
    [pytest.param("ack", "view", "acked", id="ack"), pytest.param("dismiss", "use", "dismissed", id="dismiss")],
)
def test_alert_review_is_recorded_in_the_trail(
    live: dict[str, Any], tmp_path: Path, decision: str, action: str, status: str
) -> None:
    """A review changes the alert's status and is itself an audit event with the reviewer as actor."""
    store = live["store"]
    target = next(a for a in list_alerts(store, status="open") if a.rule == "cross_border" or decision == "ack")
    client = Client(
        service="trail-cli",
        transport=CallbackTransport(store_writer(store)),
        subject_key=TEST_KEY,
        spool_dir=tmp_path / "spool",
    )
    reviewer = f"E-REVIEWER-{decision}"
    review_alert(store, client, target.alert_id, decision, reviewer=reviewer, reason="checked with the team lead")
    assert client.close(timeout=10)
    after = get_alert(store, target.alert_id)
    assert (after.status, after.reviewer) == (status, reviewer)
    [audit] = store.find_events(actor_id=reviewer)
    assert audit["action"] == action
    assert audit["purpose"] == "alert review (MIIT Art. 13(3))"
    assert audit["attributes"]["alert_id"] == target.alert_id
    assert audit["attributes"]["decision"] == decision
