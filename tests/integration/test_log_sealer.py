"""The sealer role seals from the events topic, the log of record: what the log carries and the
sinks' group has committed (so stored), each record validated as the sink validates it. Rows
written into the store some other way are never sealed; a leader killed at any point of a
round is followed by one that neither re-seals nor skips. Real Tansu broker, real sink, real
chDB store.

A kill is an exception that unwinds the role's thread without any of its clean-stop work (no
last round, no commit), as SIGKILL would: chDB admits one process per directory, so the sealer
cannot be a second process over the sink's store here (with a ClickHouse server it is)."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import SinkThread
from tests.factories import event
from trail.events.model import event_hash
from trail.ingest.errors import OffsetOutOfRange
from trail.ingest.kafka import GroupOffsets
from trail.integrity.checkpoint import AppendOnlyLog, Checkpoint
from trail.integrity.keys import generate, load_signing_key, write_keypair
from trail.integrity.lease import FileLease
from trail.integrity.log_sealer import log_consumer
from trail.integrity.sealer import Sealer
from trail.integrity.sealer_role import LogFeed, SealerRole
from trail.integrity.verify import Verifier
from trail.local.broker import LocalBroker
from trail.local.stack import wait_stored
from trail.storage.store import Store
from trail.testing import RecordingTransport, capture_logs, test_client

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


class Kill(BaseException):
    """Unwinds a thread as SIGKILL ends a process: no clean-stop work runs after it."""


class World:
    """A broker topic, a sink storing it, and sealer roles sealing from it."""

    def __init__(self, broker: LocalBroker, topics: dict[str, str], store: Store, tmp: Path, make_sink: Any) -> None:
        self.broker, self.topic, self.store, self.tmp = broker, topics["events"], store, tmp
        self.make_sink = make_sink
        self.sink: SinkThread | None = None
        priv, _ = write_keypair(tmp / "keys", generate())
        self.key = load_signing_key(priv)
        self.log_path = tmp / "checkpoints.jsonl"
        self.producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
        self.threads: list[tuple[SealerRole, threading.Thread]] = []
        self.made = 0

    # -- events ------------------------------------------------------------------------
    def events(self, n: int, service: str = "svc") -> list[bytes]:
        """``n`` valid records of one new producer, in order (not sent)."""
        rec = RecordingTransport()
        c = test_client(self.tmp / f"{service}-{self.made}", rec, service=service)
        for i in range(self.made, self.made + n):
            c.record(**event(i))
        assert c.close()
        self.made += n
        return [v for _key, values in rec.batches for v in values]

    def send(self, values: list[bytes], partition: int = 0) -> None:
        for v in values:
            self.producer.send(self.topic, value=v, partition=partition)
        self.producer.flush(10)

    def store_directly(self, n: int) -> list[dict[str, Any]]:
        """Rows written into the store without ever being on the log."""
        rec = RecordingTransport()
        c = test_client(self.tmp / f"direct-{self.made}", rec, service="direct")
        for i in range(self.made, self.made + n):
            c.record(**event(i))
        assert c.close()
        self.made += n
        self.store.insert_events(rec.events)
        return rec.events

    def stored(self, n: int) -> None:
        if self.sink is None:
            self.sink = self.make_sink(batch_seconds=0.1)
        assert wait_stored(self.store, self.sink.sink, n, timeout=60) >= n

    # -- sealers -----------------------------------------------------------------------
    def role(
        self,
        sealer_class: type[Sealer] = Sealer,
        interval_s: float = 3600.0,
        lease: Any = None,
        hold_limit_s: float = 3600.0,
        stall_warn_s: float = 3600.0,
        sinks_group: str | None = None,
    ) -> SealerRole:
        def make(adopt_stored: bool) -> Sealer:
            return sealer_class(self.store, self.key, AppendOnlyLog(self.log_path), adopt_stored=adopt_stored)

        feed = LogFeed(
            consumer=log_consumer(self.broker.bootstrap, self.topic, f"{self.topic}.sealer", {}),
            sinks=lambda: GroupOffsets(self.broker.bootstrap, self.topic, sinks_group or f"{self.topic}.sink"),
            hold_limit_s=hold_limit_s,
            stall_warn_s=stall_warn_s,
        )
        lease = lease or FileLease(self.tmp / "sealer.lock")
        return SealerRole(make, self.store, lease, interval_s=interval_s, standby_poll_s=0.05, feed=feed)

    def run(self, role: SealerRole) -> SealerRole:
        t = threading.Thread(target=self._run, args=(role,), daemon=True)
        t.start()
        self.threads.append((role, t))
        deadline = time.monotonic() + 30
        while role._step is None and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert role._step is not None, "the sealer did not start reading the log"
        return role

    @staticmethod
    def _run(role: SealerRole) -> None:
        with contextlib.suppress(Kill):
            role.run()

    def read_all(self, role: SealerRole, records: int) -> None:
        deadline = time.monotonic() + 30
        while role._step is not None and role._step.records < records and time.monotonic() < deadline:
            time.sleep(0.05)
        assert role._step is not None and role._step.records >= records

    def sealer_committed(self, partition: int) -> int | None:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=[self.broker.bootstrap], group_id=f"{self.topic}.sealer")
        try:
            off = c.committed(TopicPartition(self.topic, partition))
        finally:
            c.close()
        return None if off is None else int(off)

    def close(self) -> None:
        for role, t in self.threads:
            role.stop()
            t.join(30)
        if self.sink is not None:
            self.sink.stop()
        self.producer.close(5)

    # -- what was sealed ---------------------------------------------------------------
    def chain(self) -> list[Checkpoint]:
        rows = self.store.query("SELECT record FROM {db}.checkpoints ORDER BY seq")
        return [Checkpoint.from_record(json.loads(r["record"])) for r in rows]

    def assert_one_chain(self, sealed: int) -> list[Checkpoint]:
        chain = self.chain()
        assert [c.seq for c in chain] == list(range(1, len(chain) + 1))
        assert all(b.prev == a.hash for a, b in itertools.pairwise(chain))
        file_seqs = [json.loads(x)["seq"] for x in self.log_path.read_text().splitlines() if x.strip()]
        assert file_seqs == [c.seq for c in chain], "one record per checkpoint in the file: no fork"
        assert sum(c.count for c in chain) == sealed, "every event sealed once: no gap, nothing twice"
        by_producer: dict[str, list[Any]] = {}
        for r in sorted((r for c in chain for r in c.ranges), key=lambda r: (r.producer, r.first)):
            by_producer.setdefault(r.producer, []).append(r)
        for pid, ranges in by_producer.items():
            assert ranges[0].first == 1 and all(b.first == a.last + 1 for a, b in itertools.pairwise(ranges)), pid
        return chain

    def verify(self) -> Any:
        return Verifier(self.store, self.key.public, AppendOnlyLog(self.log_path), strict=True).run()

    def assert_verified(self) -> None:
        """``verify --strict``: intact, and every stored event sealed."""
        report = self.verify()
        assert report.intact and report.unsealed_events == 0, [f.as_dict() for f in report.findings]


@pytest.fixture()
def world(broker: LocalBroker, topics: dict[str, str], store: Store, tmp_path: Path, make_sink: Any) -> Any:
    w = World(broker, topics, store, tmp_path, make_sink)
    yield w
    w.close()


def test_it_seals_what_the_log_carries_once_the_sinks_committed_it(world: World) -> None:
    role = world.run(world.role())
    world.send(world.events(120))
    world.read_all(role, 120)
    assert role.seal_now(timeout_s=1) is None, "nothing is stored yet: nothing may be sealed"
    assert world.chain() == []
    world.stored(120)
    cp = role.seal_now(timeout_s=30)
    assert cp is not None and cp.count == 120
    world.assert_one_chain(120)
    world.assert_verified()


def test_rows_the_log_never_carried_and_records_the_sink_refuses_are_never_sealed(world: World) -> None:
    role = world.run(world.role())
    world.send(world.events(30))
    world.stored(30)
    assert role.seal_now(timeout_s=30) is not None  # the sealer has committed offsets from here on
    forged = world.store_directly(7)  # e.g. someone with write access to the store
    good = world.events(20, service="other")
    tampered = json.loads(good[5])
    tampered["purpose"] = "something else"  # the hash no longer matches: the sink dead-letters it
    world.send([*good[:5], json.dumps(tampered).encode(), *good[6:]], partition=1)
    world.stored(30 + 7 + 19)
    cp = role.seal_now(timeout_s=30)
    assert cp is not None and cp.count == 5, "only the records before the refused one chain on"
    world.assert_one_chain(35)
    report = world.verify()
    unsealed = {f.event_id for f in report.findings if f.kind == "inserted"}
    assert {e["event_id"] for e in forged} <= unsealed
    assert report.unsealed_events == 7 + 14, "the forged rows and the refused record's successors"


def test_events_behind_a_gap_wait_and_survive_a_restart(world: World) -> None:
    role = world.run(world.role())
    values = world.events(10)
    world.send(values[:4] + values[5:])  # seq 5 has not arrived yet
    world.stored(9)
    cp = role.seal_now(timeout_s=30)
    assert cp is not None and cp.count == 4
    role.stop()  # a clean stop: it commits at the oldest record it still holds (seq 6)
    world.threads[-1][1].join(30)
    world.send([values[4]])  # seq 5 arrives, after seq 10 in the log
    world.stored(10)
    again = world.run(world.role())
    cp = again.seal_now(timeout_s=30)
    assert cp is not None and cp.count == 6, "6..10 were read again after the restart, 5 closes the gap"
    world.assert_one_chain(10)
    assert world.verify().unsealed_events == 0


class KillBeforeSeal(Sealer):
    armed = True

    def seal(self) -> Checkpoint | None:
        if self.unsealed and KillBeforeSeal.armed:
            KillBeforeSeal.armed = False
            raise Kill
        return super().seal()


class KillAfterSeal(Sealer):
    """Killed after the checkpoint is in the file and the store, before the offsets are committed."""

    armed = True

    def seal(self) -> Checkpoint | None:
        cp = super().seal()
        if cp is not None and KillAfterSeal.armed:
            KillAfterSeal.armed = False
            raise Kill
        return cp


class KillBetweenFileAndStore(Sealer):
    """Killed after the checkpoint is in the file, before the store has it."""

    armed = True

    def _store_checkpoint(self, cp: Checkpoint) -> None:
        if KillBetweenFileAndStore.armed and self._unstored is cp:
            KillBetweenFileAndStore.armed = False
            raise Kill
        super()._store_checkpoint(cp)


@pytest.mark.parametrize("killed", [KillBeforeSeal, KillBetweenFileAndStore, KillAfterSeal])
def test_a_leader_killed_at_any_point_is_followed_without_a_gap_or_a_fork(world: World, killed: type[Sealer]) -> None:
    killed.armed = False  # type: ignore[attr-defined]
    first = world.run(world.role(killed))
    world.send(world.events(25))
    world.stored(25)
    assert first.seal_now(timeout_s=30) is not None  # a term with committed offsets
    killed.armed = True  # type: ignore[attr-defined]
    world.send(world.events(40, service="b"), partition=1)
    world.send(world.events(15, service="c"))
    world.stored(80)
    with pytest.raises(Exception, match="did not seal"):
        first.seal_now(timeout_s=2)
    world.threads[-1][1].join(30)
    assert not world.threads[-1][1].is_alive(), "the first leader is dead"
    world.send(world.events(10, service="d"), partition=1)
    world.stored(90)
    second = world.run(world.role())
    assert second.terms == 1
    second.seal_now(timeout_s=30)
    world.assert_one_chain(90)
    world.assert_verified()


def test_a_store_that_refuses_checkpoints_holds_the_log_back_until_it_takes_them(world: World) -> None:
    role = world.run(world.role())
    world.send(world.events(40))
    world.stored(40)
    # the store refuses checkpoint writes (a real refusal of the real store; reads still work)
    world.store.command("ALTER TABLE {db}.checkpoints ADD CONSTRAINT store_down CHECK 0")
    with pytest.raises(Exception, match=r"sealing failed|did not seal"):
        role.seal_now(timeout_s=2)
    assert [json.loads(x)["seq"] for x in world.log_path.read_text().splitlines()] == [1], "signed once, in the file"
    assert world.chain() == []
    world.send(world.events(10, service="later"), partition=1)
    world.stored(50)
    world.store.command("ALTER TABLE {db}.checkpoints DROP CONSTRAINT store_down")
    deadline = time.monotonic() + 30
    while sum(c.count for c in world.chain()) < 50 and time.monotonic() < deadline:
        role.seal_now(timeout_s=10)
    world.assert_one_chain(50)
    assert world.chain()[0].count == 40, "checkpoint 1 was stored as signed, never signed again"
    world.assert_verified()


def test_two_events_claiming_one_place_in_a_chain_keep_the_first_and_are_reported(world: World, store: Store) -> None:
    """Anyone who can write to the topic can send a second, correctly hashed event with a
    producer's next seq: the first seen keeps the place (what follows it still chains), the
    other is never sealed, and the conflict is logged for the security team."""
    role = world.run(world.role())
    genuine = world.events(6, service="teller")
    forged = json.loads(genuine[3])  # seq 4, same prev, other content, hash recomputed
    forged["purpose"] = "forged"
    forged["event_id"] = "01a22e0a-0000-7000-8000-000000000004"
    del forged["hash"]
    forged["hash"] = event_hash(forged)
    with capture_logs("warning") as logs:
        world.send([*genuine[:4], json.dumps(forged).encode(), *genuine[4:]])
        world.stored(7)
        cp = role.seal_now(timeout_s=30)
    assert cp is not None and cp.count == 6
    assert '"sealer.conflicting_event"' in logs.getvalue()
    report = world.verify()
    assert [f.event_id for f in report.findings if f.kind == "inserted"] == [forged["event_id"]]


def test_a_sealer_whose_offsets_are_outside_the_log_stops_instead_of_skipping(world: World) -> None:
    """The broker lost or replaced its log after the sealer committed: its offset is beyond the
    end. Reading on from anywhere else would seal out of order or skip events: it stops."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    world.send(world.events(5))
    group = KafkaConsumer(
        bootstrap_servers=[world.broker.bootstrap], group_id=f"{world.topic}.sealer", enable_auto_commit=False
    )
    group.commit({TopicPartition(world.topic, 0): OffsetAndMetadata(500, "", -1)})
    group.close()
    role = world.role()
    with pytest.raises(OffsetOutOfRange, match="offset 500"):
        role.run()
    assert world.chain() == []


@pytest.mark.postgres
def test_a_leader_cut_off_from_postgresql_stops_and_the_standby_extends_its_chain(world: World) -> None:
    """The leader's PostgreSQL session dies (a network partition): it must stop sealing at its next
    round, and the standby that takes the advisory lock goes on from its checkpoints and offsets."""
    import uuid

    import psycopg

    from trail.integrity.lease import PostgresLease

    key = int(uuid.uuid4().int % (1 << 62))
    first = world.run(world.role(lease=PostgresLease(PG, key)))
    world.send(world.events(30))
    world.stored(30)
    assert first.seal_now(timeout_s=30) is not None
    with psycopg.connect(PG, autocommit=True) as admin:  # the leader's session ends
        admin.execute("SELECT pg_terminate_backend(%s)", (first.lease._conn.info.backend_pid,))  # type: ignore[attr-defined]
    standby = world.role(lease=PostgresLease(PG, key))
    world.run(standby)
    assert standby.leading, "the standby took the lock the dead session held"
    world.send(world.events(20, service="after"), partition=1)
    world.stored(50)
    assert first.seal_now(timeout_s=5) is None and not first.leading, "the cut-off leader signs nothing"
    cp = standby.seal_now(timeout_s=30)
    assert cp is not None and cp.seq == 2 and cp.count == 20
    world.assert_one_chain(50)
    world.assert_verified()


def test_a_gap_that_is_never_filled_stops_holding_the_offset_back_after_the_limit(world: World) -> None:
    """A refused record in the middle of a chain leaves its successors waiting for ever. Held
    for ever, they would pin the sealer's offset until retention deleted the record there and
    the sealer stopped; past the limit (an hour; none here) the offset moves on, once logged."""
    role = world.run(world.role(hold_limit_s=0))
    good = world.events(12, service="broken")
    tampered = json.loads(good[4])
    tampered["purpose"] = "changed in transit"  # the sink refuses it: seq 5 never arrives
    with capture_logs("warning") as logs:
        world.send([*good[:4], json.dumps(tampered).encode(), *good[5:]], partition=1)
        world.stored(11)
        cp = role.seal_now(timeout_s=30)
    assert cp is not None and cp.count == 4
    assert world.sealer_committed(1) == 12, "past the seven events that wait behind the gap"
    assert '"sealer.gap_not_filled"' in logs.getvalue()
    report = world.verify()
    assert report.unsealed_events == 7


def test_within_the_limit_a_gap_holds_the_offset_at_its_first_waiting_event(world: World) -> None:
    role = world.run(world.role())
    good = world.events(12, service="broken")
    world.send([*good[:4], *good[5:]], partition=1)  # seq 5 is late
    world.stored(11)
    cp = role.seal_now(timeout_s=30)
    assert cp is not None and cp.count == 4
    assert world.sealer_committed(1) == 4, "seq 6, the first event behind the gap, is read again after a restart"


def test_sinks_in_another_group_leave_everything_unsealed_and_the_sealer_says_so(world: World) -> None:
    """A sealer started in another namespace than the sinks reads the sinks' commits from a group
    that never commits: it must seal nothing (nothing is known to be stored) and say why, once."""
    with capture_logs("warning") as logs:
        role = world.run(world.role(stall_warn_s=0, sinks_group="staging." + world.topic + ".sink"))
        world.send(world.events(30))
        world.stored(30)
        world.read_all(role, 30)
        assert role.seal_now(timeout_s=1) is None
        assert role.seal_now(timeout_s=1) is None
    assert world.chain() == []
    lines = [json.loads(x) for x in logs.getvalue().splitlines() if "sealer.sinks_not_committing" in x]
    assert len(lines) == 1, "logged once per stall, not every round"
    assert lines[0]["group"] == "staging." + world.topic + ".sink" and lines[0]["waiting"] == 30
    assert "TRAIL_NAMESPACE" in lines[0]["hint"]
    role.stop()
    # the same records, read by a sealer that watches the sinks' own group: sealed, nothing logged
    with capture_logs("warning") as logs:
        right = world.run(world.role(stall_warn_s=0))
        world.read_all(right, 30)
        cp = right.seal_now(timeout_s=30)
    assert cp is not None and cp.count == 30
    assert "sealer.sinks_not_committing" not in logs.getvalue()
    world.assert_verified()


@pytest.mark.postgres
def test_the_verify_schedule_lease_is_held_by_one_process_and_not_the_sealers() -> None:
    """On PostgreSQL (several hosts): two API processes' schedule leases exclude each other; the
    sealer's lease is another lock, so a sealer never keeps the schedule from running."""
    from trail.integrity.lease import SEALER_LOCK_KEY, VERIFY_SCHEDULE_LOCK_KEY, PostgresLease, shared_lease

    first = shared_lease(PG + "?sslmode=disable", Path("/nonexistent"), VERIFY_SCHEDULE_LOCK_KEY)
    second = shared_lease(PG, Path("/nonexistent"), VERIFY_SCHEDULE_LOCK_KEY)
    sealer = PostgresLease(PG, SEALER_LOCK_KEY)
    try:
        assert sealer.acquire()
        assert isinstance(first, PostgresLease) and first.acquire() and first.held()
        assert not second.acquire()
        first.release()
        assert second.acquire() and second.held()
    finally:
        for lease in (first, second, sealer):
            lease.release()
