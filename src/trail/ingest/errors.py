"""The exceptions of the consumer loop.

TrailError
├── OffsetOutOfRange      a starting or committed offset lies outside the partition's log
├── WriteFailed           a step's write failed and may succeed later (control flow)
├── WriteTimeout          a write did not finish within its time limit
├── StoppedWhileFailing   stop() came while a step's write kept failing
└── NoCommittedOffset     partitions the group has no offset for (control flow)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from trail.errors import TrailError

if TYPE_CHECKING:
    from trail.ingest.step import Partition


class OffsetOutOfRange(TrailError):
    """The offset a role would read from is not in the partition's log: beyond its end (the
    broker's log was lost or replaced) or before its start (retention deleted records that
    were never read). The loop stops instead of resetting: for an audit trail a silent skip
    is data loss and a silent replay from the start is duplication."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        low: int | None,
        high: int | None,
        group: str | None = None,
        *,
        hint: str | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.low = low
        self.high = high
        self.group = group
        self.beyond_end = high is not None and offset > high
        if self.beyond_end:
            where, why = (
                "beyond the end of",
                "the broker's log was lost or replaced since this offset was stored; records of the old log "
                "that were not yet read are not in the trail",
            )
        elif low is not None and offset < low:
            where, why = "before the start of", "retention deleted records before they were read: they are lost"
        else:
            where, why = "outside", "the broker refused the offset"
        valid = f"{low if low is not None else '?'}..{high if high is not None else '?'}"
        who = f"consumer group {group}" if group else "this consumer"
        self.hint = hint or (
            "Check what is missing, then move the group's offsets explicitly (kafka-consumer-groups "
            f"--reset-offsets --group {group or 'GROUP'} --topic {topic}:{partition} --to-earliest, or "
            "--to-offset N, --execute) and restart"
        )
        super().__init__(
            f"{topic} partition {partition}: offset {offset} of {who} is {where} the log (valid offsets "
            f"{valid}): {why}. Nothing was reset or skipped. {self.hint}"
        )

    def with_hint(self, hint: str) -> OffsetOutOfRange:
        """The same error with another remedy (the role knows where the offset came from)."""
        return OffsetOutOfRange(self.topic, self.partition, self.offset, self.low, self.high, self.group, hint=hint)


class WriteFailed(TrailError):
    """A step's write (store insert, incident save) failed and may succeed later.

    Used for control flow: the loop answers it by pausing every partition, polling on so the
    group stays alive, waiting (exponential backoff with a cap) and calling the step again;
    nothing past the last commit is committed meanwhile. ``event`` names the log line
    (``<role>.<event>``); the cause is chained.
    """

    def __init__(self, event: str, message: str) -> None:
        self.event = event
        super().__init__(message)


class WriteTimeout(TrailError):
    """A write did not finish within its time limit; it is treated like a failed write."""


class StoppedWhileFailing(TrailError):
    """stop() was asked while a step's write kept failing: nothing past the last commit was
    committed, and the records will be read again by the next consumer of the group."""


class NoCommittedOffset(TrailError):
    """The group has no committed offset for these partitions.

    Used for control flow between a consumer adapter and the loop, which starts them where
    the role's policy says (see :class:`~trail.ingest.processor.Processor`)."""

    def __init__(self, partitions: Collection[Partition]) -> None:
        self.partitions = frozenset(partitions)
        super().__init__(f"no committed offset for {sorted(self.partitions)}")
