"""The incident trigger against the real local broker (Tansu), the real store (chDB) and real
incident stores (SQLite, PostgreSQL): high alerts open one incident per actor with evidence
computed in the store; repeats, reviews, medium alerts and garbage change nothing; a restarted
trigger reprocesses nothing; it waits for evidence the sink has not stored yet; an incident
store that goes away and comes back costs no alert."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaProducer

from tests.conftest import committed, wait_for
from tests.integration.conftest_detect import WorkerThread
from tests.integration.conftest_detect import ev as detect_ev
from trail.detect.alerts import Alert, alert_id_for, rfc3339
from trail.errors import ConfigError
from trail.incidents.application import IncidentService
from trail.incidents.playbook import load_playbook
from trail.incidents.trigger import IncidentTrigger, TriggerConfig
from trail.storage.store import Store
from trail.testing import RecordingTransport, test_client

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

PB = load_playbook()
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: The scenario happened this morning: a window starting 6 h ago (recent, so the clocks run).
T0 = (datetime.now(UTC) - timedelta(hours=6)).replace(second=0, microsecond=0)
M = timedelta(minutes=1)
LEAKER = "E-LEAK-1"
OTHERS = [f"E-OTHER-{k}" for k in range(1, 10)]
EXPECTED_OBLIGATIONS = {"miit_telecom_report", "shenzhen_report", "shenzhen_stakeholders", "individual_notice"}
#: Short fetch waits: a poll returns as soon as an alert is there.
FAST = {"fetch_max_wait_ms": 50}


def ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def subjects(prefix: str, start: int, n: int) -> list[str]:
    return [f"SUBJ-TEST-{prefix}-{i:06d}" for i in range(start, start + n)]


def ev(actor: str, when: datetime, **over: Any) -> dict[str, Any]:
    """The detection tests' event (a support view by default) at ``when``."""
    return detect_ev(actor, ts(when), **over)


class Scenario:
    """~300 events in the store: the leaker's 3 exports of 100 people each (100 of them with
    ``id_number``), the leaker's views (not moving: out of scope unless cited), and other
    actors' exports and views in the same window (out of scope)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.exports = [
            ev(
                LEAKER,
                T0 + 10 * M,
                action="export",
                subject_ids=subjects("LEAK", 0, 100),
                data_categories=["name", "phone", "id_number"],
                target={"system": "crm", "dataset": "customers"},
                destination={"kind": "file"},
            ),
            ev(
                LEAKER,
                T0 + 20 * M,
                action="export",
                subject_ids=subjects("LEAK", 100, 100),
                data_categories=["name", "phone"],
                target={"system": "billing", "dataset": "invoices"},
                destination={"kind": "media"},
            ),
            ev(
                LEAKER,
                T0 + 30 * M,
                action="copy",
                subject_ids=subjects("LEAK", 200, 100),
                data_categories=["name", "address"],
                target={"system": "crm", "dataset": "customers"},
                destination={"kind": "third_party", "name": "partner-x", "region": "CN-SH"},
            ),
        ]
        # the leaker's own views in the window: new people, a sensitive category; not moving
        self.views = [
            ev(LEAKER, T0 + (5 + k) * M, subject_ids=subjects("VIEW", k * 3, 3), data_categories=["name", "health"])
            for k in range(20)
        ]
        # a view two hours later that a second alert cites: then, and only then, in scope
        self.cited_view = ev(
            LEAKER, T0 + 125 * M, subject_ids=subjects("CITED", 0, 1), data_categories=["name", "health"]
        )
        self.others: list[dict[str, Any]] = []
        for k, actor in enumerate(OTHERS):
            self.others.append(
                ev(
                    actor,
                    T0 + (11 + k) * M,
                    action="export",
                    subject_ids=subjects(f"O{k}", 0, 50),
                    data_categories=["name", "id_number"],
                    destination={"kind": "file"},
                    target={"system": "hr", "dataset": "staff"},
                )
            )
            self.others += [ev(actor, T0 + (2 + j) * M, subject_ids=subjects(f"O{k}V", j, 2)) for j in range(29)]

    def wire(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events as the sink stores them (pseudonymised, sequenced, hashed)."""
        rec = RecordingTransport()
        client = test_client(self.tmp / uuid.uuid4().hex[:8], rec, service="crm")
        for e in events:
            client.record(**e)
        assert client.close(timeout=30)
        assert not rec.rejected
        return rec.events

    def all_but_cited(self) -> list[dict[str, Any]]:
        return self.exports + self.views + self.others

    def fill(self, store: Store) -> int:
        events = self.wire([*self.all_but_cited(), self.cited_view])
        for k in range(0, len(events), 100):
            store.insert_events(events[k : k + 100])
        assert store.count_events() == len(events)
        return len(events)


def make_alert(
    rule: str,
    actor: str,
    start: datetime,
    evidence: list[str],
    *,
    minutes: int = 60,
    severity: str = "high",
    records: int = 0,
) -> Alert:
    ws = start.timestamp()
    return Alert(
        alert_id=alert_id_for(rule, actor, ws),
        rule=rule,
        severity=severity,
        actor=actor,
        actor_kind="staff",
        key=actor,
        window_start=rfc3339(ws),
        window_end=rfc3339(ws + minutes * 60),
        count=len(evidence),
        records=records,
        evidence=evidence,
        articles=["PIPL Art. 51"],
        summary=f"{actor}: {rule}",
        trigger_event_id=evidence[-1] if evidence else "",
        detected_at=rfc3339(ws + minutes * 60 + 30),
    )


def leak_alert(sc: Scenario) -> Alert:
    return make_alert("bulk_export", LEAKER, T0, [e["event_id"] for e in sc.exports], records=300)


class Producer:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.p = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", linger_ms=0)

    def send(self, *values: bytes | Alert) -> None:
        for v in values:
            self.p.send(self.topic, v.to_bytes() if isinstance(v, Alert) else v)
        self.p.flush(timeout=10)

    def close(self) -> None:
        self.p.close(timeout=5)


class TriggerThread(WorkerThread):
    """A real IncidentTrigger in a thread of the test process (sharing its chDB session)."""

    name = "trigger"

    @property
    def trigger(self) -> IncidentTrigger:
        trigger: IncidentTrigger = self.worker
        return trigger

    @property
    def stats(self) -> Any:
        return self.trigger.stats

    def wait_seen(self, n: int, timeout: float = 20.0) -> None:
        wait_for(
            lambda: self.stats.seen >= n or self.error is not None or not self.thread.is_alive(),
            timeout,
            what=f"the trigger to read {n} records",
        )
        assert self.error is None, f"the trigger died: {self.error!r}"
        assert self.stats.seen == n, self.stats

    def wait_handled(self, opened: int, attached: int = 0, timeout: float = 20.0) -> None:
        wait_for(
            lambda: (
                (self.stats.opened, self.stats.attached) >= (opened, attached)
                or self.error is not None
                or not self.thread.is_alive()
            ),
            timeout,
            what=f"{opened} incidents opened and {attached} attached",
        )
        assert self.error is None, f"the trigger died: {self.error!r}"
        assert (self.stats.opened, self.stats.attached) == (opened, attached), self.stats


@pytest.fixture()
def run_trigger(
    broker: Any, topics: dict[str, str], store: Store, tmp_path: Path
) -> Iterator[Callable[..., tuple[TriggerThread, IncidentService]]]:
    """Start a trigger (and its service) on this test's alerts topic; stopped at the end."""
    made: list[tuple[TriggerThread, IncidentService]] = []

    def make(
        service_kwargs: dict[str, Any] | None = None, group: str = "trigger", **cfg: Any
    ) -> tuple[TriggerThread, IncidentService]:
        svc = IncidentService(PB, store=store, **(service_kwargs or {"sqlite_path": str(tmp_path / "incidents.db")}))
        config = TriggerConfig(
            bootstrap=broker.bootstrap,
            topic=topics["alerts"],
            group_id=f"{topics['alerts']}.{group}",
            evidence_wait_s=cfg.pop("evidence_wait_s", 2.0),
            consumer_options={**FAST, **cfg.pop("consumer_options", {})},
            **cfg,
        )
        th = TriggerThread(IncidentTrigger(config, svc, store))
        made.append((th, svc))
        return th.start(), svc

    yield make
    for th, svc in made:
        if th.thread.is_alive():
            th.trigger.stop()
            th.thread.join(30)
        svc.shutdown()


@pytest.fixture()
def produce(broker: Any, topics: dict[str, str]) -> Iterator[Producer]:
    p = Producer(broker.bootstrap, topics["alerts"])
    yield p
    p.close()


@pytest.fixture()
def scenario(tmp_path: Path, store: Store) -> Scenario:
    sc = Scenario(tmp_path)
    assert sc.fill(store) == 3 + 20 + 1 + 9 * 30
    return sc


def only_incident(svc: IncidentService) -> dict[str, Any]:
    [iid] = svc.ids()
    return svc.view(iid)


def check_leak_incident(sc: Scenario, v: dict[str, Any]) -> None:
    """The incident of the leaker's alert, with its evidence computed in the store."""
    a = leak_alert(sc)
    assert v["source"] == "alerts"
    assert v["title"] == f"bulk_export by {LEAKER}"
    assert v["opened_by"] == "trail-trigger"
    assert v["discovered_at"] == a.detected_at
    assert [x["alert_id"] for x in v["alerts"]] == [a.alert_id]
    e = v["evidence"]
    assert e is not None
    assert e["events"] == 3  # the cited exports, nothing else of anyone's
    assert e["people_affected"] == 300
    assert e["distinct_subjects"] == 300
    assert e["people_affected_is_upper_bound"] is False
    assert e["sensitive_people"] == 100
    assert e["categories"] == ["address", "id_number", "name", "phone"]
    assert e["sensitive_categories"] == ["id_number"]
    assert e["actors"] == [LEAKER]
    assert e["systems"] == ["billing", "crm"]
    assert e["destinations"] == [
        {"kind": "file", "name": "", "region": ""},
        {"kind": "media", "name": "", "region": ""},
        {"kind": "third_party", "name": "partner-x", "region": "CN-SH"},
    ]
    assert (e["window_start"], e["window_end"]) == (ts(T0 + 10 * M), ts(T0 + 30 * M))
    assert e["alert_ids"] == [a.alert_id]
    assert len(e["digest"]) == 64 and int(e["digest"], 16) >= 0
    assert e["query"]["event_ids"] == sorted(a.evidence)
    facts = v["facts"]
    for name, value in (("people_affected", 300), ("sensitive_people", 100)):
        assert facts[name]["value"] == value
        assert facts[name]["source"] == f"trail evidence {e['digest'][:12]} (3 events)"
        assert facts[name]["by"] == "trail-trigger"
    assert facts["categories"]["value"] == e["categories"]
    assert v["grade"]["level"] == "IV"
    assert {o["id"] for o in v["obligations"]} == EXPECTED_OBLIGATIONS
    assert all(o["status"] == "open" and o["due_at"] for o in v["obligations"])
    assert {s["id"] for s in v["steps"]} >= {"activate", "contain", "notify"}


# --------------------------------------------------------------------------- tests
def test_high_alert_opens_one_incident_with_evidence_from_the_store(
    scenario: Scenario, run_trigger: Callable[..., Any], produce: Producer, broker: Any, topics: dict[str, str]
) -> None:
    trig, svc = run_trigger()
    produce.send(leak_alert(scenario))
    trig.wait_handled(opened=1)
    v = only_incident(svc)
    check_leak_incident(scenario, v)
    # the people are exactly the leaker's exported ones: no viewer, no other actor
    assert svc.summaries()[0]["grade"] == "IV"
    assert svc.summaries()[0]["open_obligations"] == len(EXPECTED_OBLIGATIONS)
    wait_for(
        lambda: committed(broker.bootstrap, f"{topics['alerts']}.trigger", topics["alerts"]) == {0: 1},
        10,
        what="the offset committed after the incident was saved",
    )
    trig.stop()
    assert trig.error is None


def test_repeats_reviews_medium_and_garbage_leave_one_incident(
    scenario: Scenario, run_trigger: Callable[..., Any], produce: Producer, broker: Any, topics: dict[str, str]
) -> None:
    trig, svc = run_trigger()
    first = leak_alert(scenario)
    produce.send(first)
    trig.wait_handled(opened=1)
    version = svc.get(svc.ids()[0]).version

    second = make_alert("off_hours", LEAKER, T0 + 120 * M, [scenario.cited_view["event_id"]], minutes=10)
    medium = make_alert(
        "volume_anomaly", LEAKER, T0 + 60 * M, [e["event_id"] for e in scenario.views], severity="medium"
    )
    review = replace(first, version=1, status="acked", reviewer="E-SOC-1", reason="confirmed", reviewed_at=ts(T0))
    produce.send(first, first, first, second, medium, review, b"\x00not an alert{")
    trig.wait_seen(1 + 7)
    # Committed only once the whole poll was handled: the counters are final from here on.
    wait_for(
        lambda: committed(broker.bootstrap, f"{topics['alerts']}.trigger", topics["alerts"]) == {0: 8},
        10,
        what="every record's offset committed, the ignored and the malformed ones too",
    )
    assert trig.thread.is_alive()
    s = trig.stats
    assert (s.opened, s.attached, s.ignored, s.malformed) == (1, 1, 2, 1), s

    v = only_incident(svc)
    assert [a["alert_id"] for a in v["alerts"]] == [first.alert_id, second.alert_id]
    assert v["version"] > version  # the second alert was attached (and the evidence refrozen)
    # the cited view is in scope now (one more person, sensitive: health); the other views are not
    e = v["evidence"]
    assert (e["events"], e["people_affected"], e["sensitive_people"]) == (4, 301, 101)
    assert "health" in e["categories"] and e["sensitive_categories"] == ["health", "id_number"]
    assert v["facts"]["people_affected"]["value"] == 301
    assert v["facts"]["people_affected"]["source"] == f"trail evidence {e['digest'][:12]} (4 events)"
    # still running: an alert after the garbage is handled
    version = v["version"]
    produce.send(first)
    trig.wait_seen(9)
    assert svc.get(svc.ids()[0]).version == version
    trig.stop()
    assert trig.error is None


def test_an_alert_of_another_actor_opens_a_second_incident(
    scenario: Scenario, run_trigger: Callable[..., Any], produce: Producer
) -> None:
    trig, svc = run_trigger()
    produce.send(leak_alert(scenario))
    trig.wait_handled(opened=1)
    other = OTHERS[0]
    alert = other_alert(scenario, 0, severity="critical")
    assert alert.actor == other
    produce.send(alert)
    trig.wait_handled(opened=2)
    assert len(svc.ids()) == 2
    views = [svc.view(i) for i in svc.ids()]
    assert [x["title"] for x in views] == [f"bulk_export by {LEAKER}", f"bulk_export by {other}"]
    check_leak_incident(scenario, views[0])
    e = views[1]["evidence"]
    assert (e["events"], e["people_affected"], e["sensitive_people"], e["actors"]) == (1, 50, 50, [other])
    assert [a["alert_id"] for a in views[1]["alerts"]] == [alert.alert_id]
    trig.stop()


def test_a_restarted_trigger_reprocesses_nothing(
    scenario: Scenario,
    run_trigger: Callable[..., Any],
    produce: Producer,
    broker: Any,
    topics: dict[str, str],
) -> None:
    trig, svc = run_trigger()
    first = leak_alert(scenario)
    produce.send(first, other_alert(scenario), b"garbage")
    trig.wait_seen(3)
    trig.wait_handled(opened=2)
    trig.stop()
    assert trig.error is None
    ids = svc.ids()
    versions = {i: svc.get(i).version for i in ids}
    timelines = {i: len(svc.timeline(i)) for i in ids}
    assert committed(broker.bootstrap, f"{topics['alerts']}.trigger", topics["alerts"]) == {0: 3}

    # a new process: new service on the same SQLite file, new trigger in the same group
    again, svc2 = run_trigger()
    time.sleep(1.0)  # time to (wrongly) re-read what was committed
    assert (again.stats.seen, again.stats.opened, again.stats.attached) == (0, 0, 0)
    produce.send(first)
    again.wait_seen(1)
    assert (again.stats.opened, again.stats.attached) == (0, 0)
    assert svc2.ids() == ids
    assert {i: svc2.get(i).version for i in ids} == versions
    assert {i: len(svc2.timeline(i)) for i in ids} == timelines
    check_leak_incident(scenario, svc2.view(ids[0]))
    wait_for(
        lambda: committed(broker.bootstrap, f"{topics['alerts']}.trigger", topics["alerts"]) == {0: 4},
        10,
        what="the republished alert committed",
    )
    again.stop()
    assert again.error is None


def test_waits_for_evidence_the_sink_has_not_stored_yet(
    tmp_path: Path, store: Store, run_trigger: Callable[..., Any], produce: Producer
) -> None:
    sc = Scenario(tmp_path)
    late = sc.wire(sc.exports)  # not in the store yet: the sink holds them in its batch
    assert store.count_events() == 0
    trig, svc = run_trigger(evidence_wait_s=5.0)
    produce.send(leak_alert(sc))
    trig.wait_seen(1)
    assert trig.stats.opened == 0  # waiting for the events

    inserted: list[float] = []

    def sink_batch() -> None:
        time.sleep(1.0)
        store.insert_events(late)
        inserted.append(time.monotonic())

    writer = threading.Thread(target=sink_batch)
    writer.start()
    trig.wait_handled(opened=1, timeout=10)
    opened_at = time.monotonic()
    writer.join(5)
    assert inserted and opened_at >= inserted[0]
    v = only_incident(svc)
    e = v["evidence"]
    assert (e["events"], e["people_affected"], e["sensitive_people"]) == (3, 300, 100)
    assert v["facts"]["people_affected"]["value"] == 300
    trig.stop()


# --------------------------------------------------------------------------- incident store outage
class TcpProxy:
    """A TCP forwarder to PostgreSQL that the test can cut (an outage) and restore, same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut every open one."""
        ls, self._listener = self._listener, None
        if ls is not None:
            with contextlib.suppress(OSError):
                ls.shutdown(socket.SHUT_RDWR)
            ls.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture()
def pg_schema() -> Iterator[str]:
    schema = f"t_trig_{uuid.uuid4().hex[:10]}"
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def other_alert(sc: Scenario, k: int = 0, severity: str = "high") -> Alert:
    """A bulk-export alert of another actor (50 people, all with ``id_number``)."""
    export = [e for e in sc.others if e["action"] == "export"][k]
    return make_alert("bulk_export", export["actor"]["id"], T0, [export["event_id"]], severity=severity)


def opened_on_postgres(
    sc: Scenario, run_trigger: Callable[..., Any], produce: Producer, proxy: TcpProxy, schema: str
) -> tuple[TriggerThread, IncidentService]:
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test?schema={schema}"
    trig, svc = run_trigger({"store_url": url}, backoff_initial_s=0.1, backoff_max_s=0.5)
    assert svc.backend == "postgresql"
    produce.send(leak_alert(sc))
    trig.wait_handled(opened=1)
    check_leak_incident(sc, only_incident(svc))
    return trig, svc


@pytest.mark.postgres
def test_a_short_incident_store_outage_costs_no_alert(
    scenario: Scenario,
    run_trigger: Callable[..., Any],
    produce: Producer,
    pg_schema: str,
    broker: Any,
    topics: dict[str, str],
) -> None:
    """PostgreSQL goes away for 3 s while the trigger runs: the alert that arrives meanwhile is
    not committed; once PostgreSQL is back it opens its incident, and the trigger goes on."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    try:
        trig, svc = opened_on_postgres(scenario, run_trigger, produce, proxy, pg_schema)
        proxy.down()
        produce.send(other_alert(scenario))
        trig.wait_seen(2)
        time.sleep(3.0)
        assert trig.thread.is_alive(), f"the trigger died while the incident store was down: {trig.error!r}"
        assert trig.stats.opened == 1
        assert committed(broker.bootstrap, f"{topics['alerts']}.trigger", topics["alerts"]) == {0: 1}
        proxy.up()
        trig.wait_handled(opened=2, timeout=20)
        assert len(svc.ids()) == 2
        assert svc.view(svc.ids()[1])["evidence"]["people_affected"] == 50
        wait_for(
            lambda: committed(broker.bootstrap, f"{topics['alerts']}.trigger", topics["alerts"]) == {0: 2},
            10,
            what="the alert committed once its incident was saved",
        )
        trig.stop()
        assert trig.error is None
    finally:
        proxy.down()


@pytest.mark.postgres
def test_a_long_incident_store_outage_is_retried_not_fatal(
    scenario: Scenario, run_trigger: Callable[..., Any], produce: Producer, pg_schema: str
) -> None:
    """PostgreSQL stays away until the service has given up once (eventsourcing's own retries
    take ~22 s and end in ``eventsourcing.persistence.OperationalError``): the trigger logs, backs
    off and retries instead of ending; when PostgreSQL is back the alert opens its incident."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    try:
        trig, svc = opened_on_postgres(scenario, run_trigger, produce, proxy, pg_schema)
        failures: list[str] = []
        real = svc.open_from_alerts

        def observed(*args: Any, **kwargs: Any) -> Any:
            try:
                return real(*args, **kwargs)
            except BaseException as exc:
                failures.append(type(exc).__name__)
                raise

        svc.open_from_alerts = observed  # type: ignore[method-assign]
        proxy.down()
        produce.send(other_alert(scenario))
        trig.wait_seen(2)
        wait_for(lambda: failures or not trig.thread.is_alive(), 45, what="the incident store to fail the trigger once")
        proxy.up()
        time.sleep(0.5)
        assert trig.thread.is_alive(), f"the trigger died after {failures}: {trig.error!r}"
        assert failures, "the outage did not outlast the service's own retries: nothing was tested"
        trig.wait_handled(opened=2, timeout=30)
        assert len(svc.ids()) == 2
        trig.stop()
        assert trig.error is None
    finally:
        proxy.down()


@pytest.mark.postgres
def test_unreachable_incident_store_fails_at_construction() -> None:
    """A trigger whose incident store cannot be reached is refused before it consumes anything."""
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"TRAIL_INCIDENT_STORE: cannot reach PostgreSQL at 127\.0\.0\.1:1/test"):
        IncidentService(PB, store_url="postgresql://postgres@127.0.0.1:1/test?schema=x")
    assert time.monotonic() - started < 10


# --------------------------------------------------------------------------- one bad alert
POISON: dict[str, dict[str, Any]] = {
    "window_start-not-a-time": {"window_start": "yesterday morning"},
    "evidence-not-event-ids": {"evidence": ["not-an-event-id"]},
}


@pytest.mark.parametrize("case", list(POISON))
def test_one_bad_alert_does_not_block_the_ones_behind_it(
    case: str,
    scenario: Scenario,
    run_trigger: Callable[..., Any],
    produce: Producer,
    broker: Any,
    topics: dict[str, str],
) -> None:
    """An alert that decodes but can never be handled (its window is not a time, its evidence
    is not event ids) is counted as malformed and committed; it does not hold up the next one."""
    trig, svc = run_trigger(evidence_wait_s=0.5)
    bad = replace(make_alert("bulk_export", "E-BAD-1", T0, [scenario.exports[0]["event_id"]]), **POISON[case])
    produce.send(bad, leak_alert(scenario))
    trig.wait_handled(opened=1, timeout=5)
    assert (trig.stats.seen, trig.stats.malformed) == (2, 1), trig.stats
    check_leak_incident(scenario, only_incident(svc))
    wait_for(
        lambda: committed(broker.bootstrap, f"{topics['alerts']}.trigger", topics["alerts"]) == {0: 2},
        10,
        what="both offsets committed",
    )
    trig.stop()
    assert trig.error is None
