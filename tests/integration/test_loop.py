"""The consumer loop (trail.ingest.processor), written once and run against an in-memory log
(pure logic) and the real local broker (the wiring): commit only after the write, pause and
poll on while the store is down, capped backoff, a write timeout, flush on stop, drop on
revoke, strict offsets, and where a group with no offsets starts."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import pytest

from tests.conftest import committed as kafka_committed
from tests.conftest import wait_for
from trail.errors import StoreError
from trail.ingest.batch import Batch, BatchStep
from trail.ingest.errors import OffsetOutOfRange, StoppedWhileFailing, WriteFailed, WriteTimeout
from trail.ingest.kafka import KafkaConsumerAdapter
from trail.ingest.memory import MemoryLog
from trail.ingest.processor import Processor
from trail.ingest.step import Consumer, Partition, Polled, Rebalance, Record
from trail.ingest.timeout import TimeLimit
from trail.local.broker import ensure_topics
from trail.testing import capture_logs


# --------------------------------------------------------------------------- the two backends
class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self.topic = f"m{uuid.uuid4().hex[:8]}.trail.events"
        self.log = MemoryLog()
        self.log.create(self.topic, 2)

    def produce(self, values: list[bytes], partition: int = 0) -> None:
        for v in values:
            self.log.produce(self.topic, v, partition=partition)

    def consumer(self, group: str) -> Consumer:
        return self.log.consumer(self.topic, group)

    def committed(self, group: str) -> dict[int, int]:
        return self.log.committed(group, self.topic)

    def commit(self, group: str, partition: int, offset: int) -> None:
        self.log.commit(group, Partition(self.topic, partition), offset)


class KafkaBackend:
    name = "kafka"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.topic = f"k{uuid.uuid4().hex[:8]}.trail.events"
        ensure_topics(bootstrap, {self.topic: 2})

    def produce(self, values: list[bytes], partition: int = 0) -> None:
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=[self.bootstrap], acks="all", linger_ms=5)
        for v in values:
            p.send(self.topic, v, partition=partition)
        p.flush(10)
        p.close()

    def consumer(self, group: str) -> Consumer:
        return KafkaConsumerAdapter(self.bootstrap, self.topic, group, assign_all=True, tuned={"fetch_max_wait_ms": 50})

    def committed(self, group: str) -> dict[int, int]:
        return {p: off for p, off in kafka_committed(self.bootstrap, group, self.topic).items() if off}

    def commit(self, group: str, partition: int, offset: int) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        c = KafkaConsumer(bootstrap_servers=[self.bootstrap], group_id=group, enable_auto_commit=False)
        try:
            tp = TopicPartition(self.topic, partition)
            c.assign([tp])
            c.commit({tp: OffsetAndMetadata(offset, "", -1)})
        finally:
            c.close()


Backend = MemoryBackend | KafkaBackend


@pytest.fixture(params=[pytest.param("memory"), pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """An in-memory log, or a topic of two partitions on the real local broker."""
    if request.param == "memory":
        return MemoryBackend()
    broker = request.getfixturevalue("broker")
    return KafkaBackend(broker.bootstrap)


# --------------------------------------------------------------------------- a step and a store
class FakeStore:
    """A store whose inserts can fail (``down``) or hang (``hang`` cleared)."""

    def __init__(self) -> None:
        self.rows: list[bytes] = []
        self.attempts = 0
        self.down = False
        self.hang = threading.Event()
        self.hang.set()
        self.lock = threading.Lock()

    def insert(self, rows: list[bytes]) -> None:
        self.attempts += 1
        if self.down:
            raise StoreError("the store refused the insert")
        self.hang.wait()
        with self.lock:
            self.rows.extend(rows)


class CopyStep(BatchStep[bytes]):
    """Copies each record's value into the store, batched; records the offsets it committed."""

    def __init__(self, store: FakeStore, *, batch_size: int = 100, batch_seconds: float = 0.05, timeout_s: float = 5.0):
        super().__init__(batch_size, batch_seconds)
        self.store = store
        self.timeout_s = timeout_s
        self.taken = 0
        self._writes = TimeLimit("test")

    def take(self, record: Record) -> bytes | None:
        self.taken += 1
        return record.value

    def write(self, batch: Batch[bytes]) -> None:
        rows = batch.all()
        try:
            self._writes.run(lambda: self.store.insert(rows), self.timeout_s, f"insert of {len(rows)} rows")
        except (StoreError, WriteTimeout) as exc:
            raise WriteFailed("store_unavailable", str(exc)) from exc

    def close(self) -> None:
        self._writes.close()


class Spy:
    """A consumer that counts polls and remembers pauses, around a real one."""

    def __init__(self, inner: Consumer) -> None:
        self.inner = inner
        self.group_id = inner.group_id
        self.polls = 0
        self.paused_polls = 0
        self.commits: list[dict[Partition, int]] = []
        #: (records committed so far, rows in the store) at each commit, once ``store`` is set.
        self.store: FakeStore | None = None
        self.witnessed: list[tuple[int, int]] = []
        self._done: dict[Partition, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open(self, rebalance: Rebalance, stopping: Callable[[], bool]) -> None:
        self.inner.open(rebalance, stopping)

    def poll(self, timeout_s: float, max_records: int | None) -> Polled:
        self.polls += 1
        if self.inner.paused() and self.inner.paused() == self.inner.assignment():
            self.paused_polls += 1
        return self.inner.poll(timeout_s, max_records)

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.commits.append(dict(offsets))
        self._done.update(offsets)
        if self.store is not None:
            self.witnessed.append((sum(self._done.values()), len(self.store.rows)))
        self.inner.commit(offsets)


class LoopThread:
    def __init__(self, loop: Processor) -> None:
        self.loop = loop
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:  # noqa: BLE001  # surfaced to the test through .error
            self.error = exc

    def start(self) -> LoopThread:
        self.thread.start()
        wait_for(lambda: self.loop.ready.is_set() or self.error is not None, 30, what="the loop to start")
        return self

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the loop did not stop"


@pytest.fixture()
def run_loop() -> Iterator[Callable[..., tuple[LoopThread, Spy]]]:
    started: list[LoopThread] = []

    def make(backend: Backend, step: CopyStep, group: str = "g", **kw: Any) -> tuple[LoopThread, Spy]:
        spies: list[Spy] = []

        def consumer() -> Consumer:
            spies.append(Spy(backend.consumer(f"{backend.topic}.{group}")))
            return spies[-1]

        kw.setdefault("poll_timeout_s", 0.05)
        th = LoopThread(Processor("copy", consumer, step, no_offset="earliest", **kw)).start()
        started.append(th)
        return th, spies[0]

    yield make
    for th in started:
        if th.thread.is_alive():
            th.stop()


def values(n: int, tag: str = "r") -> list[bytes]:
    return [f"{tag}{i}".encode() for i in range(n)]


# --------------------------------------------------------------------------- the suite
def test_a_group_without_offsets_starts_at_the_earliest_record(backend: Backend, run_loop: Any) -> None:
    """A group with no committed offset reads from the earliest record, and commits what it wrote."""
    backend.produce(values(5, "old"), partition=0)
    store = FakeStore()
    loop, _ = run_loop(backend, CopyStep(store))
    backend.produce(values(3, "new"), partition=1)
    wait_for(lambda: backend.committed(f"{backend.topic}.g") == {0: 5, 1: 3}, 20, what="everything committed")
    loop.stop()
    assert sorted(store.rows) == sorted(values(5, "old") + values(3, "new"))
    assert loop.error is None


def test_commits_only_after_the_write_and_pauses_while_polling_on(backend: Backend, run_loop: Any) -> None:
    """While the store refuses writes every partition is paused, polling goes on, nothing is
    committed; once the store is back the batch is written and then committed."""
    store = FakeStore()
    step = CopyStep(store)
    loop, spy = run_loop(backend, step, backoff_initial_s=0.05, backoff_max_s=0.1)
    spy.store = store
    backend.produce(values(4, "a"), partition=0)
    wait_for(lambda: backend.committed(f"{backend.topic}.g") == {0: 4}, 20, what="the first batch committed")
    store.down = True
    backend.produce(values(6, "b"), partition=1)
    wait_for(lambda: store.attempts >= 4, 20, what="failed attempts")
    polls = spy.paused_polls
    wait_for(lambda: spy.paused_polls >= polls + 3, 10, what="polls while paused")
    assert spy.inner.paused() == spy.inner.assignment()
    assert backend.committed(f"{backend.topic}.g") == {0: 4}
    store.down = False
    wait_for(lambda: backend.committed(f"{backend.topic}.g") == {0: 4, 1: 6}, 20, what="the batch committed")
    assert spy.witnessed and all(done <= rows for done, rows in spy.witnessed)  # rows first, then the commit
    wait_for(lambda: not spy.inner.paused(), 5, what="partitions resumed")
    loop.stop()
    assert loop.error is None


def test_backoff_doubles_up_to_its_cap(backend: Backend, run_loop: Any) -> None:
    """Retries of a failing write wait longer each time, never longer than the cap."""
    store = FakeStore()
    store.down = True
    with capture_logs("info") as logs:
        loop, _ = run_loop(backend, CopyStep(store), backoff_initial_s=0.01, backoff_max_s=0.04)
        backend.produce(values(1), partition=0)
        wait_for(lambda: store.attempts >= 6, 20, what="six attempts")
        store.down = False
        wait_for(lambda: backend.committed(f"{backend.topic}.g") == {0: 1}, 20, what="the commit")
        loop.stop()
    delays = [
        e["retry_in_s"] for e in map(json.loads, logs.getvalue().splitlines()) if e["event"] == "copy.store_unavailable"
    ]
    assert delays[:4] == [0.01, 0.02, 0.04, 0.04]
    assert max(delays) == 0.04


def test_a_write_that_hangs_times_out_and_is_retried(backend: Backend, run_loop: Any) -> None:
    """A write that does not return within its timeout counts as failed: nothing is committed
    until a write went through; the loop stays responsive meanwhile."""
    store = FakeStore()
    store.hang.clear()
    step = CopyStep(store, timeout_s=0.2)
    loop, _ = run_loop(backend, step, backoff_initial_s=0.05, backoff_max_s=0.1)
    backend.produce(values(3), partition=0)
    wait_for(lambda: loop.loop.failures >= 2, 20, what="timed-out attempts")
    assert backend.committed(f"{backend.topic}.g") == {}
    store.hang.set()
    wait_for(lambda: backend.committed(f"{backend.topic}.g") == {0: 3}, 20, what="the commit after the write")
    loop.stop()
    assert set(store.rows) == set(values(3))  # the late write and the retry: the same rows
    assert loop.error is None


def test_stop_flushes_the_partial_batch_and_commits(backend: Backend, run_loop: Any) -> None:
    """On stop the partial batch is written and committed before the loop returns."""
    store = FakeStore()
    step = CopyStep(store, batch_size=10_000, batch_seconds=600)
    loop, _ = run_loop(backend, step)
    backend.produce(values(7), partition=1)
    wait_for(lambda: step.taken == 7, 20, what="records staged")
    assert store.rows == [] and backend.committed(f"{backend.topic}.g") == {}
    loop.stop()
    assert loop.error is None
    assert sorted(store.rows) == sorted(values(7))
    assert backend.committed(f"{backend.topic}.g") == {1: 7}


def test_stop_while_the_store_is_down_commits_nothing(backend: Backend, run_loop: Any) -> None:
    """A stop while the write keeps failing ends the loop with StoppedWhileFailing, uncommitted."""
    store = FakeStore()
    store.down = True
    loop, _ = run_loop(backend, CopyStep(store), backoff_initial_s=0.05, backoff_max_s=0.1)
    backend.produce(values(2), partition=0)
    wait_for(lambda: store.attempts >= 2, 20, what="failed attempts")
    loop.stop()
    assert isinstance(loop.error, StoppedWhileFailing)
    assert backend.committed(f"{backend.topic}.g") == {}


def test_an_offset_beyond_the_end_stops_the_loop(backend: Backend, run_loop: Any) -> None:
    """A committed offset past the log's end stops the loop with an error naming the topic,
    the partition, the offset and the valid range; nothing is reset, written or committed."""
    backend.produce(values(3), partition=0)
    backend.commit(f"{backend.topic}.g", 0, 50)
    store = FakeStore()
    loop, _ = run_loop(backend, CopyStep(store))
    backend.produce(values(2, "late"), partition=1)
    loop.thread.join(20)
    assert isinstance(loop.error, OffsetOutOfRange), loop.error
    err = loop.error
    assert (err.topic, err.partition, err.offset, err.high) == (backend.topic, 0, 50, 3)
    assert backend.topic in str(err) and "50" in str(err) and "0..3" in str(err)
    assert "reset-offsets" in str(err)
    assert store.rows == [] or set(store.rows) <= set(values(2, "late"))
    assert backend.committed(f"{backend.topic}.g").get(0) == 50


def test_an_offset_before_the_start_stops_the_loop(run_loop: Any) -> None:
    """A committed offset below what retention kept stops the loop instead of skipping ahead."""
    backend = MemoryBackend()
    backend.produce(values(10), partition=0)
    backend.commit(f"{backend.topic}.g", 0, 2)
    backend.log.delete_before(Partition(backend.topic, 0), 6)
    loop, _ = run_loop(backend, CopyStep(FakeStore()))
    loop.thread.join(10)
    assert isinstance(loop.error, OffsetOutOfRange)
    assert (loop.error.offset, loop.error.low, loop.error.high) == (2, 6, 10)
    assert "before the start" in str(loop.error)


def test_revocation_drops_the_lost_partitions_and_flushes_the_kept_ones(run_loop: Any) -> None:
    """On revocation what was staged for a lost partition is dropped (never committed), and
    what was staged for a kept one is written and committed."""
    backend = MemoryBackend()
    store = FakeStore()
    step = CopyStep(store, batch_size=10_000, batch_seconds=600)
    loop, spy = run_loop(backend, step)
    backend.produce(values(3, "kept"), partition=0)
    backend.produce(values(4, "lost"), partition=1)
    wait_for(lambda: step.taken == 7, 10, what="records staged")
    spy.inner.rebalance(revoke=[Partition(backend.topic, 1)])  # type: ignore[attr-defined]
    wait_for(lambda: backend.committed(f"{backend.topic}.g") == {0: 3}, 10, what="the kept partition flushed")
    loop.stop()
    assert sorted(store.rows) == sorted(values(3, "kept"))
    assert backend.committed(f"{backend.topic}.g") == {0: 3}
    assert all(Partition(backend.topic, 1) not in c for c in spy.commits)


def test_backpressure_pauses_only_the_partitions_the_step_holds_back(run_loop: Any) -> None:
    """Partitions a step holds back are paused while the others are read."""
    backend = MemoryBackend()
    held = Partition(backend.topic, 0)

    class Holding(CopyStep):
        def backpressure(self) -> Collection[Partition]:
            return [held]

    store = FakeStore()
    loop, spy = run_loop(backend, Holding(store))
    backend.produce(values(2, "held"), partition=0)
    backend.produce(values(2, "free"), partition=1)
    wait_for(lambda: backend.committed(f"{backend.topic}.g") == {1: 2}, 10, what="the free partition")
    time.sleep(0.2)
    assert spy.inner.paused() == {held}
    assert sorted(store.rows) == sorted(values(2, "free"))
    loop.stop()


def test_stop_is_safe_from_a_signal_handler(run_loop: Any) -> None:
    """A signal handler that calls stop() ends the loop cleanly, with the batch committed."""
    backend = MemoryBackend()
    store = FakeStore()
    loop, _ = run_loop(backend, CopyStep(store, batch_seconds=600))
    backend.produce(values(2), partition=0)
    wait_for(lambda: loop.loop.step.taken == 2, 10, what="records staged")  # type: ignore[attr-defined]
    previous = signal.signal(signal.SIGUSR1, lambda *_: loop.loop.stop())
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        loop.thread.join(10)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert not loop.thread.is_alive() and loop.error is None
    assert backend.committed(f"{backend.topic}.g") == {0: 2}
