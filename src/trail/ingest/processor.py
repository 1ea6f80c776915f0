"""The one consumer loop every trail role runs (after arroyo's ``StreamProcessor``).

    loop = Processor("sink", lambda: KafkaConsumerAdapter(...), step)
    loop.run()            # until loop.stop(): poll, hand records to the step, let it work
    loop.stop()           # from anywhere, a signal handler included

The loop owns the consumer; the step owns the work. Each round:

1. pause the partitions the step holds back (``Step.backpressure``), resume the others;
2. poll (at most ``Step.room()`` records). A partition without a committed offset starts
   where the role's policy says (``no_offset``; every role today reads from the earliest
   record, each says why in its docstring); an offset outside the log stops the loop with
   :class:`~trail.ingest.errors.OffsetOutOfRange` — never a silent reset;
3. after a rebalance: the step forgets staged work of the partitions lost (``Step.revoke``),
   then flushes what it holds of the others;
4. hand the records to the step (``Step.submit``) and let it do what is due (``Step.poll``).
   The step commits exactly the offsets its write covered, through :meth:`Processor.commit`;
   nothing is ever auto-committed, and offsets of partitions no longer owned are dropped.

When a step's write fails (:class:`~trail.ingest.errors.WriteFailed`) the loop pauses every
partition, keeps polling so the group stays alive, waits (exponential backoff up to a cap)
and calls the step again; records that arrive meanwhile are held back and handed over once
the write went through. A stop while the write keeps failing ends the loop with
:class:`~trail.ingest.errors.StoppedWhileFailing`, nothing past the last commit committed.

On :meth:`stop` the loop finishes its round, flushes the step (one attempt), lets it finish
(a last checkpoint) and closes the consumer. Any other error ends the loop at once: nothing
more is committed, and the consumer and the step are closed quietly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

from trail import metrics
from trail.ingest.errors import NoCommittedOffset, StoppedWhileFailing, WriteFailed
from trail.ingest.step import Consumer, Partition, Polled, Record, Step, describe
from trail.logging import get_logger

NoOffsetPolicy = Literal["earliest", "latest"]
#: How often the loop refreshes its consumer-lag gauges.
LAG_EVERY_S = 5.0


class Processor:
    """Runs one :class:`~trail.ingest.step.Step` over one consumer until stopped."""

    def __init__(
        self,
        name: str,
        consumer: Callable[[], Consumer],
        step: Step,
        *,
        no_offset: NoOffsetPolicy,
        poll_timeout_s: float = 0.1,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.name = name
        self.step = step
        self.no_offset = no_offset
        self.poll_timeout_s = poll_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        #: Set once the consumer is open and the step started (reading it is signal-safe).
        self.ready = threading.Event()
        #: Failed write attempts so far.
        self.failures = 0
        self.log = get_logger(f"trail.{name}")
        self._make_consumer = consumer
        self._consumer: Consumer | None = None
        self._stopping = False
        self._rebalanced = False
        self._revoked: set[Partition] = set()
        self._next: dict[Partition, int] = {}
        self._held: dict[Partition, list[Record]] = {}
        self._lag_at = 0.0

    # -- control ----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to flush, commit and return. Sets a flag only, so it is safe from a
        signal handler and from any thread; the loop sees it within one poll."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the loop's consumer is not open")
        return self._consumer

    # -- what steps use ---------------------------------------------------------------
    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit ``offsets`` (the next offset to read, per partition) of the partitions this
        consumer still owns; those of partitions lost in a rebalance are dropped."""
        owned = self.consumer.assignment()
        keep = {p: off for p, off in offsets.items() if p in owned}
        if keep:
            self.consumer.commit(keep)

    def assignment(self) -> set[Partition]:
        return self.consumer.assignment()

    def highwater(self, partition: Partition) -> int | None:
        return self.consumer.highwater(partition)

    def seek(self, partition: Partition, offset: int) -> None:
        """Start ``partition`` at ``offset`` (checked against the log on the first fetch)."""
        self.consumer.seek(partition, offset)
        self._next.pop(partition, None)

    def committed(self, partition: Partition) -> int | None:
        return self.consumer.committed(partition)

    # -- rebalance (called from inside the consumer's poll: note only) ------------------
    def assigned(self, partitions: Collection[Partition]) -> None:
        self._revoked.difference_update(partitions)
        self.log.info(f"{self.name}.assigned", partitions=describe(partitions))

    def revoked(self, partitions: Collection[Partition]) -> None:
        self._revoked.update(partitions)
        self._rebalanced = True

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        """Consume until :meth:`stop`. Raises what ended the loop otherwise."""
        consumer = self._consumer = self._make_consumer()
        try:
            consumer.open(self, lambda: self._stopping)
            self.step.start(self)
            self.log.info(f"{self.name}.started", topic=getattr(consumer, "topic", None), group=consumer.group_id)
            self.ready.set()
            while not self._stopping:
                self._round()
            self._call(self.step.flush)
            self.step.finish()
        finally:
            close_quietly(self.log, f"{self.name}.close_failed", self.step.close, consumer.close)

    def _round(self) -> None:
        self._apply_backpressure()
        polled = self._poll(self.poll_timeout_s, self.step.room())
        started = time.monotonic()
        if self._rebalanced:
            self._rebalanced = False
            self._call(self.step.flush)  # what it holds of the partitions it kept
        if polled:
            metrics.BATCH_RECORDS.labels(self.name).observe(sum(len(r) for r in polled.values()))
            self.step.submit(polled)
        self._call(self.step.poll)
        if polled:
            metrics.STEP_SECONDS.labels(self.name).observe(time.monotonic() - started)
        if started - self._lag_at >= LAG_EVERY_S:
            self._lag_at = started
            self._report_lag()

    def _report_lag(self) -> None:
        """The consumer lag gauge of every owned partition (from the client's own metadata)."""
        for p in self.consumer.assignment():
            high, nxt = self.consumer.highwater(p), self._next.get(p)
            if high is not None and nxt is not None:
                metrics.CONSUMER_LAG.labels(self.name, p.topic, str(p.partition)).set(max(0, high - nxt))

    def _apply_backpressure(self) -> None:
        consumer = self.consumer
        owned = consumer.assignment()
        hold = {p for p in self.step.backpressure() if p in owned} | set(self._held)
        paused = consumer.paused()
        if paused - hold:
            consumer.resume(paused - hold)
        if hold - paused:
            consumer.pause(hold - paused)

    def _poll(self, timeout_s: float, max_records: int | None) -> dict[Partition, list[Record]]:
        """Poll once: records new to this consumer, held ones first; rebalances applied."""
        consumer = self.consumer
        try:
            polled: Polled = consumer.poll(timeout_s, max_records)
        except NoCommittedOffset as exc:
            self._start_without_offset(exc.partitions)
            polled = {}
        self._drop_lost()
        out: dict[Partition, list[Record]] = self._held
        self._held = {}
        for p, recs in polled.items():
            nxt = self._next.get(p)
            if nxt is not None and recs and recs[0].offset < nxt:
                recs = [r for r in recs if r.offset >= nxt]  # redelivered after a rebalance: staged already
            if recs:
                self._next[p] = recs[-1].offset + 1
                out.setdefault(p, []).extend(recs)
        return out

    def _drop_lost(self) -> None:
        if not self._revoked:
            return
        lost = self._revoked - self.consumer.assignment()
        self._revoked.clear()
        if not lost:
            return
        for p in lost:
            self._next.pop(p, None)
            self._held.pop(p, None)
        self.step.revoke(lost)
        self.log.info(f"{self.name}.revoked_dropped", partitions=describe(lost))

    def _start_without_offset(self, partitions: Collection[Partition]) -> None:
        partitions = [p for p in partitions if p in self.consumer.assignment()]
        if not partitions:
            return
        if self.no_offset == "earliest":
            self.consumer.seek_to_beginning(partitions)
        else:
            self.consumer.seek_to_end(partitions)
        self.log.info(f"{self.name}.no_committed_offset", partitions=describe(partitions), start=self.no_offset)

    def _call(self, work: Callable[[], None]) -> None:
        """``work()``, retried with capped exponential backoff while it raises WriteFailed."""
        delay = self.backoff_initial_s
        failed = False
        while True:
            try:
                work()
            except WriteFailed as exc:
                self.failures += 1
                metrics.WRITE_FAILURES.labels(self.name).inc()
                self.log.error(f"{self.name}.{exc.event}", error=str(exc), retry_in_s=round(delay, 3))
                if not self._stopping:
                    failed = True
                    self._wait(delay)
                if self._stopping:
                    raise StoppedWhileFailing(
                        f"stopped while a write was failing ({exc}); nothing past the last commit was committed"
                    ) from exc
                delay = min(delay * 2, self.backoff_max_s)
                continue
            if failed:
                self.log.info(f"{self.name}.write_recovered")
            return

    def _wait(self, seconds: float) -> None:
        """Back off for ``seconds`` with every partition paused, polling on (the group stays
        alive); records that still arrive are held for after the write went through."""
        consumer = self.consumer
        end = time.monotonic() + seconds
        while not self._stopping:
            active = consumer.assignment() - consumer.paused()
            if active:
                consumer.pause(active)
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            for p, recs in self._poll(min(remaining, self.poll_timeout_s), None).items():
                self._held.setdefault(p, []).extend(recs)


def close_quietly(log: Any, event: str, *closers: Callable[[], object]) -> None:
    """Close in order; a failure is logged, never raised (closing must not hide the real outcome)."""
    for closer in closers:
        try:
            closer()
        except Exception as exc:  # noqa: BLE001
            log.warning(event, error=type(exc).__name__)
