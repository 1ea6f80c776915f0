"""The sink decodes its next batch while the store inserts the last one, and still commits each
batch only after its insert, in order, retrying a failed one before anything newer (logic over
the in-memory log and a store that can be held or fail; the real broker and store run in
tests/integration/test_pipeline.py)."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_decode import FIELDS, sdk_records
from trail.errors import StoreError
from trail.ingest.memory import MemoryLog
from trail.ingest.sink import Sink, SinkConfig
from trail.storage.store import EVENT_COLUMNS

TOPIC, GROUP = "trail.events", "trail-sink"
ROW_EVENT_ID = EVENT_COLUMNS.index("event_id")


class HeldStore:
    """Inserts wait while ``hold`` is clear; ``fail`` makes the next insert raise."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail = 0
        self.inserts: list[list[str]] = []
        self.attempts = 0
        self.lock = threading.Lock()

    def insert_event_rows(self, rows: list[tuple[Any, ...]], *, timeout_s: float | None = None) -> None:
        with self.lock:
            self.attempts += 1
            failing = self.fail > 0
            self.fail -= failing
        self.started.set()
        if failing:
            raise StoreError("the store refused the insert")
        self.hold.wait()
        with self.lock:
            self.inserts.append([r[ROW_EVENT_ID] for r in rows])


class MemorySink(Sink):
    """The sink over the in-memory log (no dead letters in these tests)."""

    def __init__(self, log: MemoryLog, store: HeldStore) -> None:
        cfg = SinkConfig("unused:0", TOPIC, "trail.deadletter", group_id=GROUP, batch_size=100, batch_seconds=0.05,
                         backoff_initial_s=0.01, backoff_max_s=0.05, write_timeout_s=10.0)  # fmt: skip
        self.memory = log
        self.thread: threading.Thread | None = None
        super().__init__(cfg, store)  # type: ignore[arg-type]

    def _consumer(self) -> Any:
        return self.memory.consumer(TOPIC, GROUP)

    def _deadletter_producer(self) -> None:
        return None


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    tmp: Path = tmp_path_factory.mktemp("records")
    return sdk_records(tmp, [dict(FIELDS, attributes={"n": str(i)}) for i in range(350)])


@pytest.fixture()
def running(records: list[bytes]) -> Iterator[tuple[MemoryLog, HeldStore, MemorySink]]:
    log = MemoryLog()
    log.create(TOPIC, partitions=1)
    store = HeldStore()
    sink = MemorySink(log, store)
    yield log, store, sink
    sink.stop()
    store.hold.set()
    if sink.thread is not None:
        sink.thread.join(10)


def start(sink: MemorySink) -> None:
    sink.thread = threading.Thread(target=sink.run, daemon=True)
    sink.thread.start()
    assert sink.ready.wait(5)


def test_the_next_batch_is_decoded_while_an_insert_runs_and_commits_wait_for_it(running, records) -> None:
    log, store, sink = running
    store.hold.clear()
    for value in records:
        log.produce(TOPIC, value, partition=0)
    start(sink)
    assert store.started.wait(5)
    # the first insert (100 events) is held; the loop has gone on and taken the next batch
    wait_until(lambda: sink.stats.consumed >= 200, "the next batch decoded during the insert")
    time.sleep(0.2)
    assert log.committed(GROUP, TOPIC).get(0, 0) == 0, "committed before its insert finished"
    assert sink.stats.stored == 0 and len(store.inserts) == 0
    assert sink.stats.consumed <= 200, "more than one batch beyond the one in flight"
    store.hold.set()
    wait_until(lambda: log.committed(GROUP, TOPIC).get(0) == 350, "every offset committed")
    ids = [i for batch in store.inserts for i in batch]
    assert len(ids) == len(set(ids)) == 350
    assert sink.stats.stored == 350


def test_a_failed_insert_in_flight_is_retried_before_anything_newer(running, records) -> None:
    log, store, sink = running
    store.fail = 1
    commits: list[int] = []
    real_commit = log.commit

    def spy(group: str, partition: Any, offset: int) -> None:
        with store.lock:
            inserted = sum(len(b) for b in store.inserts)
        assert offset <= inserted, f"offset {offset} committed with only {inserted} events inserted"
        commits.append(offset)
        real_commit(group, partition, offset)

    log.commit = spy  # type: ignore[method-assign]
    for value in records:
        log.produce(TOPIC, value, partition=0)
    start(sink)
    wait_until(lambda: log.committed(GROUP, TOPIC).get(0) == 350, "every offset committed")
    assert store.attempts == len(store.inserts) + 1  # the failed insert and its retry
    assert sink.stats.store_failures == 1
    assert commits == sorted(commits)
    ids = [i for batch in store.inserts for i in batch]
    assert len(ids) == len(set(ids)) == 350


def test_a_running_sink_collects_garbage_in_larger_steps(running, records) -> None:
    """Once a sink has started, the process's young generation holds at least 50,000 objects
    before a collection (instead of 700), and cycles are still collected."""
    _log, _store, sink = running
    start(sink)
    assert gc.get_threshold()[0] >= 50_000
    assert gc.isenabled()


def test_stop_settles_the_batch_in_flight(running, records) -> None:
    log, store, sink = running
    for value in records[:150]:
        log.produce(TOPIC, value, partition=0)
    start(sink)
    wait_until(lambda: sink.stats.consumed == 150, "all taken")
    sink.stop()
    wait_until(lambda: log.committed(GROUP, TOPIC).get(0) == 150, "committed at stop")
    assert sum(len(b) for b in store.inserts) == 150
