"""What the loop runs and what it runs over: a role's :class:`Step`, and the :class:`Consumer`
adapter it polls (Kafka in :mod:`trail.ingest.kafka`, an in-memory log in
:mod:`trail.ingest.memory`).

A step is one role's work: it takes polled records (:meth:`Step.submit`), does what is due
(:meth:`Step.poll`) and commits exactly the offsets its write covers through
:meth:`~trail.ingest.processor.Processor.commit`. A write that fails and may succeed later
raises :class:`~trail.ingest.errors.WriteFailed`; the loop then pauses, backs off and calls
the same method again, so a step resumes where it stopped (nothing it already did is done twice).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from trail.ingest.processor import Processor


class Partition(NamedTuple):
    """A topic partition (equal to, and interchangeable with, kafka-python's ``TopicPartition``)."""

    topic: str
    partition: int


class Record(Protocol):
    """One consumed record (kafka-python's ``ConsumerRecord`` has these fields)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...
    @property
    def timestamp(self) -> int:
        """When the record was appended (or produced), in epoch milliseconds; -1 when unknown."""
        ...


Polled = Mapping[Partition, Sequence[Record]]


class Rebalance(Protocol):
    """Told by a consumer when partitions are assigned or revoked (from inside ``poll``; the
    loop only notes them there and acts once ``poll`` returned)."""

    def assigned(self, partitions: Collection[Partition]) -> None: ...
    def revoked(self, partitions: Collection[Partition]) -> None: ...


class Consumer(Protocol):
    """The broker adapter the loop polls. It never commits on its own and never resets an
    offset: a partition without a committed offset raises
    :class:`~trail.ingest.errors.NoCommittedOffset` from :meth:`poll`, an offset outside the log
    :class:`~trail.ingest.errors.OffsetOutOfRange`."""

    group_id: str

    def open(self, rebalance: Rebalance, stopping: Callable[[], bool]) -> None: ...
    def poll(self, timeout_s: float, max_records: int | None) -> Polled: ...
    def assignment(self) -> set[Partition]: ...
    def pause(self, partitions: Collection[Partition]) -> None: ...
    def resume(self, partitions: Collection[Partition]) -> None: ...
    def paused(self) -> set[Partition]: ...
    def commit(self, offsets: Mapping[Partition, int]) -> None: ...
    def committed(self, partition: Partition) -> int | None: ...
    def seek(self, partition: Partition, offset: int) -> None: ...
    def seek_to_beginning(self, partitions: Collection[Partition]) -> None: ...
    def seek_to_end(self, partitions: Collection[Partition]) -> None: ...
    def highwater(self, partition: Partition) -> int | None: ...
    def log_id(self) -> str | None: ...
    def close(self) -> None: ...


class Step:
    """One role's work over the loop. Every method but :meth:`submit` has a default."""

    loop: Processor

    def start(self, loop: Processor) -> None:
        """Called once the consumer is open, before the first poll (restore state, seek)."""
        self.loop = loop

    def room(self) -> int | None:
        """At most this many records in the next poll (None: the consumer's default)."""
        return None

    def backpressure(self) -> Collection[Partition]:
        """Partitions to keep paused for now (the loop goes on polling the others)."""
        return ()

    def submit(self, polled: Polled) -> None:
        """Take polled records: stage them (pure or cheap work only)."""
        raise NotImplementedError

    def poll(self) -> None:
        """Do what is due now; may commit; may raise WriteFailed (then it is called again)."""

    def flush(self) -> None:
        """Do all staged work now (on stop and on revocation); may raise WriteFailed."""

    def revoke(self, partitions: Collection[Partition]) -> None:
        """Forget staged work of partitions this consumer lost: the next owner reads it again
        from the last commit."""

    def finish(self) -> None:
        """After the final flush of a clean stop (a last checkpoint or seal)."""

    def close(self) -> None:
        """Release what the step opened; called last, after a clean stop or an error."""


def describe(partitions: Collection[Any]) -> list[int]:
    """Partition numbers for a log line."""
    return sorted(int(p.partition) for p in partitions)
