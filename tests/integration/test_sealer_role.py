"""The sealer role: one process seals for every sink; a standby takes over when the leader
dies; the chain of checkpoints never forks — not when two think they lead, not when a crash
falls between the file and the store. Real chDB store, real PostgreSQL for the advisory lease."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.factories import event
from trail.errors import StoreError
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import generate, load_signing_key, write_keypair
from trail.integrity.lease import FileLease, PostgresLease
from trail.integrity.sealer import Sealer
from trail.integrity.sealer_role import SealerRole
from trail.integrity.verify import Verifier
from trail.storage.store import Store
from trail.testing import RecordingTransport, test_client

pytestmark = [pytest.mark.clickhouse]
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


class Sinks:
    """Events stored by 'sinks' that do not seal, and sealer roles over the same store."""

    def __init__(self, tmp_path: Path, store: Store) -> None:
        self.tmp, self.store = tmp_path, store
        priv, _ = write_keypair(tmp_path / "keys", generate())
        self.key = load_signing_key(priv)
        self.log_path = tmp_path / "checkpoints.jsonl"
        self.next = 0

    def store_events(self, n: int, service: str = "svc") -> None:
        rec = RecordingTransport()
        c = test_client(self.tmp / f"{service}-{self.next}", rec, service=service)
        for i in range(self.next, self.next + n):
            c.record(**event(i))
        assert c.close()
        self.next += n
        self.store.insert_events(rec.events)

    def role(self, lease: Any) -> SealerRole:
        def make(adopt_stored: bool = True) -> Sealer:
            return Sealer(self.store, self.key, AppendOnlyLog(self.log_path), adopt_stored=adopt_stored)

        return SealerRole(make, self.store, lease, interval_s=0.05, standby_poll_s=0.05)

    def chain(self) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT seq, hash, prev FROM {db}.checkpoints ORDER BY seq")
        return rows

    def file_seqs(self) -> list[int]:
        return [json.loads(line)["seq"] for line in self.log_path.read_text().splitlines() if line.strip()]

    def verify(self) -> Any:
        return Verifier(self.store, self.key.public, AppendOnlyLog(self.log_path), strict=True).run()


def _assert_one_chain(s: Sinks, checkpoints: int) -> None:
    chain = s.chain()
    assert [r["seq"] for r in chain] == list(range(1, checkpoints + 1))
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(chain))
    assert s.file_seqs() == list(range(1, checkpoints + 1)), "one record per checkpoint in the file: no fork"
    report = s.verify()
    assert report.intact and report.unsealed_events == 0, [f.as_dict() for f in report.findings]


def test_one_leader_seals_and_a_standby_takes_over_when_it_dies(tmp_path: Path, store: Store) -> None:
    s = Sinks(tmp_path, store)
    a, b = s.role(FileLease(tmp_path / "sealer.lock")), s.role(FileLease(tmp_path / "sealer.lock"))
    assert a.try_lead() and not b.try_lead(), "the second sealer waits"
    s.store_events(30, "alpha")
    s.store_events(20, "beta")
    assert a.tick() is not None and b.tick() is None
    s.store_events(25, "alpha")
    a.lease.release()  # the leader dies: the kernel drops its lock
    assert b.try_lead() and b.terms == 1
    cp = b.tick()
    assert cp is not None and cp.seq == 2 and cp.count == 25
    _assert_one_chain(s, 2)


def test_a_leader_that_finds_a_newer_head_extends_it_instead_of_forking(tmp_path: Path, store: Store) -> None:
    """Two processes that both believe they lead (a partition, a stale lease): the one whose view
    is old reloads the chain and signs the successor of the newest checkpoint."""
    s = Sinks(tmp_path, store)
    a, b = s.role(FileLease(tmp_path / "a.lock")), s.role(FileLease(tmp_path / "b.lock"))
    assert a.try_lead() and b.try_lead()  # two leases: the split brain the check guards against
    s.store_events(40)
    assert b.tick() is not None  # b seals checkpoint 1; a still holds the chain as it loaded it
    s.store_events(10)
    cp = a.tick()
    assert cp is not None and cp.seq == 2 and cp.count == 10
    _assert_one_chain(s, 2)


def test_a_crash_between_the_file_and_the_store_is_finished_never_re_signed(tmp_path: Path, store: Store) -> None:
    s = Sinks(tmp_path, store)
    a = s.role(FileLease(tmp_path / "sealer.lock"))
    assert a.try_lead()
    s.store_events(30)
    # the store refuses checkpoint writes (a real refusal of the real store; reads still work)
    store.command("ALTER TABLE {db}.checkpoints ADD CONSTRAINT store_down CHECK 0")
    with pytest.raises(StoreError):
        a.tick()  # signed and in the file; the store copy failed
    assert s.file_seqs() == [1] and s.chain() == []
    s.store_events(5)
    with pytest.raises(StoreError):
        a.tick()  # still down: nothing new is signed before checkpoint 1 is stored
    assert s.file_seqs() == [1]
    store.command("ALTER TABLE {db}.checkpoints DROP CONSTRAINT store_down")
    cp = a.tick()
    assert cp is not None and cp.seq == 2 and cp.count == 5
    _assert_one_chain(s, 2)
    # and a new process after a crash at the same point finishes checkpoint 1 from the file
    a.lease.release()
    b = s.role(FileLease(tmp_path / "sealer.lock"))
    assert b.try_lead() and b.sealer is not None and b.sealer.last is not None and b.sealer.last.seq == 2


def test_the_role_runs_and_stops_cleanly_sealing_what_is_left(tmp_path: Path, store: Store) -> None:

    s = Sinks(tmp_path, store)
    role = s.role(FileLease(tmp_path / "sealer.lock"))
    t = threading.Thread(target=role.run)
    t.start()
    try:
        s.store_events(15)
    finally:
        role.stop()
        t.join(timeout=30)
    assert not t.is_alive() and role.terms == 1
    assert sum(r["seq"] > 0 for r in s.chain()) >= 1
    assert s.verify().unsealed_events == 0
    assert FileLease(tmp_path / "sealer.lock").acquire(), "the lease is released on stop"


@pytest.mark.postgres
def test_postgres_lease_is_exclusive_and_lost_with_the_session() -> None:
    key = int(uuid.uuid4().int % (1 << 62))
    first, second = PostgresLease(PG, key), PostgresLease(PG, key)
    try:
        assert first.acquire() and first.held()
        assert not second.acquire()
        with psycopg.connect(PG, autocommit=True) as admin:  # the holder's session dies
            pid = first._conn.info.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert not first.held(), "a sealer whose session died must stop sealing"
        assert second.acquire() and second.held()
    finally:
        first.release()
        second.release()
