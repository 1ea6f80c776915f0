"""The sink: ``trail.events`` → ClickHouse, at least once, never auto-committing.

A :class:`~trail.ingest.batch.BatchStep` over the consumer loop (``trail.ingest.processor``),
as a member of the consumer group ``<namespace>trail-sink`` (several sinks share the partitions):

1. decode each record (pure; :func:`trail.ingest.decode.decode_row`): a good event joins the
   batch as the row the store inserts, a bad one is staged for the dead-letter topic with its reason;
2. at ``batch_size`` records or ``batch_seconds`` after the first, and on stop or revocation:
   a. check the dead-letter ratio (below);
   b. produce the dead letters (original bytes, reason, topic/partition/offset in headers)
      and wait for the broker's acknowledgement;
   c. insert the good events, columnar, in one insert, within ``write_timeout_s``, in the
      writer thread: meanwhile the loop polls and decodes the next batch (the store works
      outside the GIL, so the two use both cores); at most one batch is in flight;
   d. when that insert has finished (at the latest when the next batch is due): commit the
      offsets the batch covers, then tell the sink's own sealer, if it has one, what was stored
      (a sealer role seals from the topic behind the group's commits instead). If the store failed or
      the insert timed out, the loop pauses every partition, keeps polling so the group stays
      alive, retries the insert with capped backoff, and commits nothing past it.
3. on revocation, what was staged for the lost partitions is dropped (the next owner re-reads
   it from the last commit; the store de-duplicates).

A group with no committed offset starts at the **earliest** record: every event on the topic
must reach the store (a new deployment, or a broker whose log started anew, e.g. a restarted
local stack), and what is stored twice is de-duplicated on ``event_id``. A committed offset
outside the log stops the sink with :class:`~trail.ingest.errors.OffsetOutOfRange`.

A bad deploy that rejects everything must crash rather than divert the trail: when more
than ``max_deadletter_ratio`` of the last ``deadletter_window`` records were rejected, the
sink raises :class:`SinkHalted` before producing those dead letters or committing.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from trail import metrics
from trail.errors import SinkHalted as SinkHalted
from trail.errors import StoreError, TrailError
from trail.events.wire import Rejected
from trail.ingest.batch import Batch, BatchStep
from trail.ingest.decode import decode_row
from trail.ingest.errors import WriteFailed, WriteTimeout
from trail.ingest.kafka import AckedProducer, KafkaConsumerAdapter
from trail.ingest.processor import Processor, close_quietly
from trail.ingest.step import Record
from trail.ingest.timeout import Pending, TimeLimit
from trail.logging import get_logger
from trail.storage.store import ROW_HASH, ROW_PRODUCER_ID, ROW_PRODUCER_PREV, ROW_PRODUCER_SEQ, Store

#: A decoded event as the row the store inserts (``trail.storage.store.event_row``).
Row = tuple[Any, ...]

log = get_logger("trail.sink")


class Sealing(Protocol):
    """What the sink tells about stored events, after their offsets were committed (the
    integrity sealer, ``trail.integrity.sealer.Sealer``, is one): ``(producer, seq, hash, prev)``."""

    def add_positions(self, positions: Iterable[tuple[str, int, str, str]]) -> None: ...
    def seal(self) -> object: ...


@dataclass
class SinkStats:
    consumed: int = 0
    stored: int = 0
    deadlettered: int = 0
    batches: int = 0
    store_failures: int = 0
    last_flush_at: float = 0.0


@dataclass
class SinkConfig:
    bootstrap: str
    topic: str
    deadletter_topic: str
    group_id: str = "trail-sink"
    batch_size: int = 20_000
    batch_seconds: float = 1.0
    max_deadletter_ratio: float = 0.9
    deadletter_window: int = 10_000
    seal_seconds: float = 10.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    #: The longest an insert (or a seal) may take before it counts as failed.
    write_timeout_s: float = 30.0
    consumer_options: dict[str, Any] = field(default_factory=dict)


class Dead(NamedTuple):
    record: Record
    reason: str


#: Stage of a batch's write: ratio checked, dead letters acknowledged, events inserted.
_CHECKED, _DEADLETTERED, _INSERTED = 1, 2, 3


class Sink(BatchStep[Row | Dead]):
    def __init__(self, config: SinkConfig, store: Store, sealer: Sealing | None = None) -> None:
        super().__init__(config.batch_size, config.batch_seconds)
        self.cfg = config
        self.store = store
        self.sealer = sealer
        self.stats = SinkStats()
        self._window: deque[tuple[int, int]] = deque()
        self._writes = TimeLimit("sink")
        #: Inserts begun (a number per batch, given at its first attempt) and the number of the
        #: last one handed to the sealer: rows visible in the store belong to an insert numbered
        #: at most ``inserts_begun``, and are in the sealer's hands once ``inserts_handed`` reaches it.
        self.inserts_begun = 0
        self.inserts_handed = 0
        self._last_seal = time.monotonic()
        self._flush_started = 0.0
        self._deadletters: AckedProducer | None = None
        #: The batch whose insert runs in the writer thread, not yet committed (None: settled).
        self._inflight: tuple[Batch[Row | Dead], Pending[None] | None] | None = None
        self._loop = Processor(
            "sink",
            self._consumer,
            self,
            no_offset="earliest",
            poll_timeout_s=0.1,
            backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s,
        )
        self.ready = self._loop.ready

    def _consumer(self) -> KafkaConsumerAdapter:
        cfg = self.cfg
        return KafkaConsumerAdapter(
            cfg.bootstrap,
            cfg.topic,
            cfg.group_id,
            tuned={
                "max_poll_records": cfg.batch_size,
                "max_poll_interval_ms": 10_000,
                "session_timeout_ms": 10_000,
                "heartbeat_interval_ms": 1_000,
                "fetch_max_bytes": 64 * 1024 * 1024,
                "fetch_max_wait_ms": 50,  # a quiet partition must not hold a batch back by the default 500 ms
                "max_partition_fetch_bytes": 16 * 1024 * 1024,
            },
            options=cfg.consumer_options,
        )

    # -- lifecycle --------------------------------------------------------------------
    def run(self) -> SinkStats:
        """Consume until :meth:`stop`; returns the counters. Raises on a halt or fatal error."""
        self._loop.run()
        log.info("sink.stopped", stored=self.stats.stored, deadlettered=self.stats.deadlettered)
        return self.stats

    def stop(self) -> None:
        """Ask the loop to flush, commit and return (safe from a signal handler)."""
        self._loop.stop()

    def start(self, loop: Processor) -> None:
        super().start(loop)
        fewer_collections()
        self._deadletters = self._deadletter_producer()

    def _deadletter_producer(self) -> AckedProducer | None:
        return AckedProducer(self.cfg.bootstrap, linger_ms=5, options=self.cfg.consumer_options)

    def finish(self) -> None:
        self._maybe_seal(force=True)

    def close(self) -> None:
        dl = self._deadletters
        close_quietly(log, "sink.close_failed", lambda: dl.close(5) if dl else None, self._writes.close)

    # -- the batch --------------------------------------------------------------------
    def take(self, record: Record) -> Row | Dead:
        self.stats.consumed += 1
        result = decode_row(record.value)
        return Dead(record, result.reason) if isinstance(result, Rejected) else result

    def poll(self) -> None:
        inflight = self._inflight
        if inflight is not None and (inflight[1] is None or inflight[1].done()):
            self._settle()
        super().poll()
        self._maybe_seal()

    def flush(self) -> None:
        """Settle the batch in flight (its insert finished: commit it), then start this one's:
        ratio checked and dead letters acknowledged here, the insert in the writer thread, so
        the loop polls and decodes the next batch while the store inserts this one. One batch
        is in flight at most, and offsets are committed in order, each only after its insert.
        When the loop is stopping, the batch is settled before returning."""
        self._settle()
        batch = self.batch
        if batch.offsets:
            self._inflight = (batch, self._begin(batch))
            self.batch = Batch()
            if self.loop.stopping:
                self._settle()
        else:
            self.batch = Batch()

    def _begin(self, batch: Batch[Row | Dead]) -> Pending[None] | None:
        """Dead-letter (at once), then start the insert; None when there is nothing to insert."""
        self._write_stages(batch, up_to=_DEADLETTERED)
        rows, _dead = _parts(batch)
        if not rows:
            batch.stage = _INSERTED
            return None
        self._number(batch)
        timeout = self.cfg.write_timeout_s
        try:
            return self._writes.start(lambda: self._insert(rows), timeout, f"insert of {len(rows)} events")
        except WriteTimeout as exc:  # the previous (timed-out) write is still running
            self.stats.store_failures += 1
            raise WriteFailed("store_unavailable", f"{exc} ({len(rows)} rows)") from exc

    def _settle(self) -> None:
        """Wait for the batch in flight and commit it; a failed insert raises WriteFailed, and
        the loop's retry runs it again here (synchronously) before anything newer."""
        inflight = self._inflight
        if inflight is None:
            return
        batch, pending = inflight
        if pending is not None:
            self._inflight = (batch, None)  # from here on, a retry writes it again synchronously
            try:
                pending.result()
            except (StoreError, WriteTimeout) as exc:
                self.stats.store_failures += 1
                raise WriteFailed("store_unavailable", f"{exc} ({len(_parts(batch)[0])} rows)") from exc
            batch.stage = _INSERTED
        else:
            self.write(batch)
        self.loop.commit(batch.offsets)
        self._inflight = None
        self.written(batch)

    def write(self, batch: Batch[Row | Dead]) -> None:
        """Dead-letter, insert — in that order; the loop commits only after both."""
        self._write_stages(batch, up_to=_INSERTED)

    def _write_stages(self, batch: Batch[Row | Dead], up_to: int) -> None:
        rows, dead = _parts(batch)
        if batch.stage < _CHECKED:
            self._flush_started = time.monotonic()
            self._check_ratio(len(rows) + len(dead), len(dead))
            batch.stage = _CHECKED
        if batch.stage < _DEADLETTERED:
            self._deadletter(dead)
            batch.stage = _DEADLETTERED
        if batch.stage < _INSERTED and up_to >= _INSERTED:
            if rows:
                self._number(batch)
                try:
                    self._writes.run(
                        lambda: self._insert(rows), self.cfg.write_timeout_s, f"insert of {len(rows)} events"
                    )
                except (StoreError, WriteTimeout) as exc:
                    self.stats.store_failures += 1
                    raise WriteFailed("store_unavailable", f"{exc} ({len(rows)} rows)") from exc
            batch.stage = _INSERTED

    def _number(self, batch: Batch[Row | Dead]) -> None:
        if not batch.number:
            self.inserts_begun += 1
            batch.number = self.inserts_begun

    def _insert(self, rows: list[Row]) -> None:
        started = time.monotonic()
        self.store.insert_event_rows(rows, timeout_s=self.cfg.write_timeout_s)
        metrics.INSERT_SECONDS.observe(time.monotonic() - started)
        metrics.EVENTS_STORED.inc(len(rows))

    def written(self, batch: Batch[Row | Dead]) -> None:
        rows, dead_letters = _parts(batch)
        dead = len(dead_letters)
        if self.sealer is not None and rows:
            sealer = self.sealer
            try:
                self._writes.run(
                    lambda: sealer.add_positions(
                        (r[ROW_PRODUCER_ID], r[ROW_PRODUCER_SEQ], r[ROW_HASH], r[ROW_PRODUCER_PREV]) for r in rows
                    ),
                    self.cfg.write_timeout_s,
                    "handing stored events to the sealer",
                )
            except (StoreError, WriteTimeout) as exc:
                # Stored and committed; the sealer finds them again in the store at its next start.
                log.error("sink.seal_failed", error=str(exc))
        self.inserts_handed = max(self.inserts_handed, batch.number)
        self.stats.stored += len(rows)
        self.stats.deadlettered += dead
        self.stats.batches += 1
        self.stats.last_flush_at = time.time()
        log.info(
            "sink.batch_flushed",
            events=len(rows),
            deadlettered=dead,
            partitions=len(batch.offsets),
            ms=round((time.monotonic() - self._flush_started) * 1000, 1),
        )

    def handed_to_sealer(self, mark: int) -> bool:
        """True once every insert begun up to ``mark`` (an earlier ``inserts_begun``) is
        committed and has reached the sink's own sealer if it has one: what the store showed then
        will be in the next checkpoint (a sealer role seals only what the sinks committed)."""
        return self.inserts_handed >= mark

    def _maybe_seal(self, force: bool = False) -> None:
        sealer = self.sealer
        if sealer is None:
            return
        if not force and (self.cfg.seal_seconds <= 0 or time.monotonic() - self._last_seal < self.cfg.seal_seconds):
            return
        self._last_seal = time.monotonic()
        try:
            self._writes.run(sealer.seal, self.cfg.write_timeout_s, "sealing a checkpoint")
        except (StoreError, WriteTimeout) as exc:
            # The file copy may hold it already; the next seal (or restart) completes the store copy.
            log.error("sink.seal_failed", error=str(exc))

    def _check_ratio(self, total: int, bad: int) -> None:
        self._window.append((total, bad))
        seen = sum(t for t, _ in self._window)
        while self._window and seen - self._window[0][0] >= self.cfg.deadletter_window:
            seen -= self._window.popleft()[0]
        rejected = sum(b for _, b in self._window)
        if seen >= self.cfg.deadletter_window and rejected / seen > self.cfg.max_deadletter_ratio:
            raise SinkHalted(
                f"{rejected} of the last {seen} records were invalid (limit "
                f"{self.cfg.max_deadletter_ratio:.0%}): a producer is probably misconfigured; "
                "nothing past the last commit was written or committed. Fix the producer, or raise "
                "TRAIL_SINK_MAX_DEADLETTER_RATIO, and restart the sink"
            )

    def _deadletter(self, dead: list[Dead]) -> None:
        if not dead:
            return
        assert self._deadletters is not None
        records = []
        for rec, reason in dead:
            headers = [
                ("trail.reason", reason.encode("utf-8")),
                ("trail.topic", rec.topic.encode()),
                ("trail.partition", str(rec.partition).encode()),
                ("trail.offset", str(rec.offset).encode()),
                ("trail.stage", b"sink.decode"),
            ]
            records.append((rec.key, rec.value or b"", headers))
            log.warning("sink.deadlettered", partition=rec.partition, offset=rec.offset, reason=reason)
        if not self._deadletters.send_all(self.cfg.deadletter_topic, records):
            raise TrailError("the dead-letter topic did not acknowledge; nothing was committed")
        for _, reason in dead:
            metrics.DEAD_LETTERS.labels(reason=reason_label(reason)).inc()


def _parts(batch: Batch[Row | Dead]) -> tuple[list[Row], list[Dead]]:
    """The batch's rows to insert and its dead letters, split once when it is written."""
    if batch.parts is None:
        items = batch.all()
        batch.parts = ([i for i in items if not isinstance(i, Dead)], [i for i in items if isinstance(i, Dead)])
    parts: tuple[list[Row], list[Dead]] = batch.parts
    return parts


_GC_TUNED = False


def fewer_collections() -> None:
    """Fewer, cheaper cyclic garbage collections in a process that runs a sink (once per process).

    A sink keeps two batches of decoded events alive (tens of thousands of rows and lists), so
    Python's default thresholds (a young collection every 700 allocations) collect over and over
    and walk them each time: on this machine the sink alone drained 15,000-18,000 events/s with
    the defaults and 18,400-24,400 with these (load_tests/bench_ingest.py, isolated phase). What
    the process holds at start-up is frozen out of the collector's walks; cycles are still
    collected, only later."""
    global _GC_TUNED
    if _GC_TUNED:
        return
    _GC_TUNED = True
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, 50_000), max(middle, 20), max(old, 20))


def reason_label(reason: str) -> str:
    """A bounded label for a dead letter's reason: the field (or kind) it names, not the text."""
    head = reason.split(":", 1)[0].strip()
    return head[:48] if head and len(head.split()) <= 3 else "other"
