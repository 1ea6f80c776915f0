"""An in-memory log and consumer with the Kafka adapter's contract, for testing steps and the
loop without a broker (arroyo ships ``backends/local`` for the same purpose).

    log = MemoryLog()
    log.create("trail.events", partitions=2)
    log.produce("trail.events", b"...", partition=1)
    loop = Processor("sink", lambda: log.consumer("trail.events", "g"), step, no_offset="earliest")

Like a Kafka broker it keeps committed offsets per group and answers an offset outside a
partition's log with :class:`~trail.ingest.errors.OffsetOutOfRange`; retention is
:meth:`MemoryLog.delete_before`, a rebalance :meth:`MemoryConsumer.rebalance`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import NamedTuple

from trail.errors import TrailError
from trail.ingest.errors import NoCommittedOffset, OffsetOutOfRange
from trail.ingest.step import Partition, Polled, Rebalance, Record


class MemoryRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int = -1  # epoch milliseconds of the append


class MemoryLog:
    """Topics of partitions of records, and the groups' committed offsets."""

    def __init__(self, log_id: str | None = None) -> None:
        self.id = log_id or f"memory-{uuid.uuid4().hex[:12]}"
        self.records: dict[Partition, list[MemoryRecord]] = {}
        self.start: dict[Partition, int] = {}
        self.offsets: dict[tuple[str, Partition], int] = {}
        self.lock = threading.Lock()

    def create(self, topic: str, partitions: int = 1) -> None:
        with self.lock:
            for i in range(partitions):
                self.records.setdefault(Partition(topic, i), [])
                self.start.setdefault(Partition(topic, i), 0)

    def partitions(self, topic: str) -> list[Partition]:
        return sorted(p for p in self.records if p.topic == topic)

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int = 0,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> int:
        p = Partition(topic, partition)
        with self.lock:
            log = self.records[p]
            offset = self.start[p] + len(log)
            log.append(MemoryRecord(topic, partition, offset, key, value, tuple(headers), int(time.time() * 1000)))
            return offset

    def end(self, p: Partition) -> int:
        return self.start[p] + len(self.records[p])

    def delete_before(self, p: Partition, offset: int) -> None:
        """Retention: records of ``p`` below ``offset`` are gone."""
        with self.lock:
            drop = max(0, offset - self.start[p])
            del self.records[p][:drop]
            self.start[p] += drop

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return {p.partition: off for (g, p), off in self.offsets.items() if g == group and p.topic == topic}

    def commit(self, group: str, partition: Partition, offset: int) -> None:
        self.offsets[(group, partition)] = offset

    def consumer(self, topic: str, group_id: str) -> MemoryConsumer:
        return MemoryConsumer(self, topic, group_id)


class MemoryConsumer:
    """A consumer of every partition of one topic in a :class:`MemoryLog`."""

    def __init__(self, log: MemoryLog, topic: str, group_id: str) -> None:
        self.log = log
        self.topic = topic
        self.group_id = group_id
        self.polls = 0
        self.commits: list[dict[Partition, int]] = []
        self.closed = False
        self._rebalance: Rebalance | None = None
        self._assigned: set[Partition] = set()
        self._paused: set[Partition] = set()
        self._position: dict[Partition, int] = {}
        self._pending: list[tuple[set[Partition], set[Partition]]] = []

    def open(self, rebalance: Rebalance, stopping: Callable[[], bool]) -> None:
        self._rebalance = rebalance
        self._assigned = set(self.log.partitions(self.topic))
        if not self._assigned:
            raise TrailError(f"topic {self.topic} has no partitions (is it created?)")
        rebalance.assigned(set(self._assigned))

    def rebalance(self, revoke: Collection[Partition] = (), assign: Collection[Partition] = ()) -> None:
        """On the next poll: take ``revoke`` away and add ``assign`` (as a group rebalance would)."""
        self._pending.append((set(revoke), set(assign)))

    def poll(self, timeout_s: float, max_records: int | None) -> Polled:
        self.polls += 1
        while self._pending and self._rebalance is not None:
            revoke, assign = self._pending.pop(0)
            self._rebalance.revoked(revoke)
            self._assigned -= revoke
            self._paused -= revoke
            for p in revoke:
                self._position.pop(p, None)
            self._assigned |= assign
            self._rebalance.assigned(assign)
        missing = set()
        for p in self._assigned:
            if p not in self._position:
                committed = self.log.offsets.get((self.group_id, p))
                if committed is None:
                    missing.add(p)
                else:
                    self._position[p] = committed
        if missing:
            raise NoCommittedOffset(missing)
        out: dict[Partition, list[Record]] = {}
        budget = max_records or 500
        with self.log.lock:
            for p in sorted(self._assigned - self._paused):
                pos = self._position[p]
                start, end = self.log.start[p], self.log.end(p)
                if pos < start or pos > end:
                    raise OffsetOutOfRange(p.topic, p.partition, pos, start, end, self.group_id)
                take = self.log.records[p][pos - start : pos - start + budget]
                if take:
                    out[p] = list(take)
                    self._position[p] = pos + len(take)
                    budget -= len(take)
                if budget <= 0:
                    break
        if not out and timeout_s > 0:
            time.sleep(min(timeout_s, 0.01))
        return out

    def assignment(self) -> set[Partition]:
        return set(self._assigned)

    def pause(self, partitions: Collection[Partition]) -> None:
        self._paused |= set(partitions) & self._assigned

    def resume(self, partitions: Collection[Partition]) -> None:
        self._paused -= set(partitions)

    def paused(self) -> set[Partition]:
        return set(self._paused)

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.commits.append(dict(offsets))
        for p, off in offsets.items():
            self.log.commit(self.group_id, p, off)

    def committed(self, partition: Partition) -> int | None:
        return self.log.offsets.get((self.group_id, partition))

    def seek(self, partition: Partition, offset: int) -> None:
        self._position[partition] = offset

    def seek_to_beginning(self, partitions: Collection[Partition]) -> None:
        for p in partitions:
            self._position[p] = self.log.start[p]

    def seek_to_end(self, partitions: Collection[Partition]) -> None:
        for p in partitions:
            self._position[p] = self.log.end(p)

    def highwater(self, partition: Partition) -> int | None:
        return self.log.end(partition)

    def log_id(self) -> str | None:
        return self.log.id

    def close(self) -> None:
        self.closed = True
