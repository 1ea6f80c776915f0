"""A step that batches: take each record (pure), write the batch (I/O), then commit it.

The sink, the alert sink and the incident trigger are this step with their own ``take`` and
``write``. A batch is written at ``batch_size`` records or ``batch_seconds`` after its first
record, whichever comes first (0 s: every poll's records are a batch), and on stop and on
revocation. Its offsets are committed only after ``write`` returned; if ``write`` raises
:class:`~trail.ingest.errors.WriteFailed`, the loop backs off and calls it again with the same
batch, whose ``stage`` tells the role how far it got.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from trail.ingest.step import Partition, Polled, Record, Step

T = TypeVar("T")


@dataclass
class Batch(Generic[T]):
    """Records taken since the last commit: the items to write and the offsets they cover."""

    items: dict[Partition, list[T]] = field(default_factory=dict)
    offsets: dict[Partition, int] = field(default_factory=dict)
    counts: dict[Partition, int] = field(default_factory=dict)
    size: int = 0
    first_at: float | None = None
    #: How far the role's write got; it resumes there when called again after a failure.
    stage: int = 0
    #: A number the role may give the batch (the sink numbers its inserts).
    number: int = 0
    #: What the role derives once from the complete batch (the sink: its rows and dead letters).
    parts: Any = None

    def all(self) -> list[T]:
        return [item for part in self.items.values() for item in part]


class BatchStep(Step, Generic[T]):
    def __init__(self, batch_size: int, batch_seconds: float) -> None:
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.batch: Batch[T] = Batch()

    # -- what a role writes -----------------------------------------------------------
    def take(self, record: Record) -> T | None:
        """The item to write for ``record`` (pure), or None for nothing (its offset is still
        committed with the batch)."""
        raise NotImplementedError

    def write(self, batch: Batch[T]) -> None:
        """Write the batch; raise WriteFailed to be called again (resume at ``batch.stage``)."""
        raise NotImplementedError

    def written(self, batch: Batch[T]) -> None:
        """After the batch was written and its offsets committed."""

    # -- the step ---------------------------------------------------------------------
    def room(self) -> int | None:
        return max(1, self.batch_size - self.batch.size)

    def submit(self, polled: Polled) -> None:
        batch = self.batch
        if batch.first_at is None:
            batch.first_at = time.monotonic()
        take = self.take
        for p, records in polled.items():
            items = batch.items.setdefault(p, [])
            for rec in records:
                item = take(rec)
                if item is not None:
                    items.append(item)
            batch.offsets[p] = records[-1].offset + 1
            batch.counts[p] = batch.counts.get(p, 0) + len(records)
            batch.size += len(records)

    def due(self) -> bool:
        first = self.batch.first_at
        if first is None:
            return False
        return self.batch.size >= self.batch_size or time.monotonic() - first >= self.batch_seconds

    def poll(self) -> None:
        if self.due():
            self.flush()

    def flush(self) -> None:
        batch = self.batch
        if batch.offsets:
            self.write(batch)
            self.loop.commit(batch.offsets)
            self.written(batch)
        self.batch = Batch()

    def revoke(self, partitions: Collection[Partition]) -> None:
        batch = self.batch
        for p in partitions:
            batch.items.pop(p, None)
            batch.offsets.pop(p, None)
            batch.size -= batch.counts.pop(p, 0)
        if not batch.offsets:
            self.batch = Batch()
