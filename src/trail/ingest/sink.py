"""The sink: ``trail.events`` → ClickHouse, at least once, never auto-committing.

Loop (arroyo's lessons, STYLE.md):

1. poll records; decode each (pure): a good event joins the batch, a bad one is staged for
   the dead-letter topic with its reason;
2. at ``batch_size`` records or ``batch_seconds`` after the first, flush:
   a. produce the dead letters (original bytes, reason, topic/partition/offset in headers)
      and wait for the broker's acknowledgement;
   b. insert the good events, columnar, in one insert; if the store fails, pause every
      partition, keep polling so the group stays alive, retry with backoff, commit nothing;
   c. commit the offsets the batch covers;
3. on revocation, drop what was staged for the lost partitions (the next owner re-reads
   from the last commit; the store de-duplicates); on stop (SIGTERM), flush and commit.

A bad deploy that rejects everything must crash rather than divert the trail: when more
than ``max_deadletter_ratio`` of the last ``deadletter_window`` records were rejected, the
sink raises :class:`SinkHalted` before producing those dead letters or committing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trail.errors import StoreError, TrailError
from trail.ingest.decode import Rejected, decode
from trail.ingest.topics import close_quietly, consumer_options, security_options
from trail.logging import get_logger
from trail.storage.store import Store

if TYPE_CHECKING:
    from trail.integrity.sealer import Sealer

log = get_logger("trail.sink")


class SinkHalted(TrailError):
    """The sink stopped on purpose (dead-letter ratio exceeded); nothing past it was committed."""


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
    consumer_options: dict[str, Any] = field(default_factory=dict)


class Sink:
    def __init__(self, config: SinkConfig, store: Store, sealer: Sealer | None = None) -> None:
        self.cfg = config
        self.store = store
        self.sealer = sealer
        self._last_seal = time.monotonic()
        self.stats = SinkStats()
        self._stop = threading.Event()
        self._consumer: Any = None
        self._dl_producer: Any = None
        self._rows: dict[Any, list[dict[str, Any]]] = {}
        self._dead: dict[Any, list[tuple[Any, str]]] = {}
        self._staged = 0
        self._offsets: dict[Any, int] = {}
        self._first_at: float | None = None
        self._revoked: set[Any] = set()
        self._window: deque[tuple[int, int]] = deque()
        self.ready = threading.Event()

    # -- lifecycle --------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to flush, commit and return (safe from a signal handler)."""
        self._stop.set()

    def _connect(self) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer

        sink = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                sink._revoked.update(revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                sink._revoked.difference_update(assigned)
                log.info("sink.assigned", partitions=sorted(tp.partition for tp in assigned))

        opts = consumer_options(
            self.cfg.bootstrap,
            self.cfg.group_id,
            self.cfg.consumer_options,
            max_poll_records=self.cfg.batch_size,
            max_poll_interval_ms=10_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=50,  # a quiet partition must not hold a batch back by the default 500 ms
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        self._consumer = KafkaConsumer(**opts)
        self._consumer.subscribe([self.cfg.topic], listener=Listener())
        self._dl_producer = KafkaProducer(
            bootstrap_servers=self.cfg.bootstrap.split(","),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            bootstrap_timeout_ms=10_000,
            **security_options(self.cfg.consumer_options),
        )

    def run(self) -> SinkStats:
        """Consume until :meth:`stop`; returns the counters. Raises on a halt or fatal error."""
        self._connect()
        consumer = self._consumer
        log.info("sink.started", topic=self.cfg.topic, group=self.cfg.group_id)
        self.ready.set()
        try:
            while not self._stop.is_set():
                room = max(1, self.cfg.batch_size - self._staged)
                polled = consumer.poll(timeout_ms=100, max_records=room)
                self._drop_revoked()
                for tp, records in polled.items():
                    if tp in self._revoked:
                        continue
                    for rec in records:
                        self._take(tp, rec)
                if self._due():
                    self.flush()
                self._maybe_seal()
            self.flush()
            self._maybe_seal(force=True)
        finally:
            self._close()
        log.info("sink.stopped", stored=self.stats.stored, deadlettered=self.stats.deadlettered)
        return self.stats

    def _close(self) -> None:
        close_quietly(
            log, "sink.close_failed", lambda: self._consumer.close(autocommit=False), lambda: self._dl_producer.close(5)
        )

    # -- batching ---------------------------------------------------------------------
    def _take(self, tp: Any, rec: Any) -> None:
        if self._first_at is None:
            self._first_at = time.monotonic()
        self.stats.consumed += 1
        result = decode(rec.value)
        if isinstance(result, Rejected):
            self._dead.setdefault(tp, []).append((rec, result.reason))
        else:
            self._rows.setdefault(tp, []).append(result)
        self._staged += 1
        self._offsets[tp] = rec.offset + 1

    def _due(self) -> bool:
        if self._first_at is None:
            return False
        return self._staged >= self.cfg.batch_size or time.monotonic() - self._first_at >= self.cfg.batch_seconds

    def _drop_revoked(self) -> None:
        if not self._revoked or not self._offsets:
            return
        lost = [tp for tp in self._offsets if tp in self._revoked]
        if not lost:
            return
        # Re-read by the next owner from the last commit; nothing of them is written here.
        for tp in lost:
            del self._offsets[tp]
            self._staged -= len(self._rows.pop(tp, ())) + len(self._dead.pop(tp, ()))
        log.info("sink.revoked_dropped", partitions=sorted(tp.partition for tp in lost))

    def flush(self) -> None:
        """Dead-letter, write, commit — in that order; nothing is committed before the write."""
        if not self._offsets:
            self._first_at = None
            return
        started = time.monotonic()
        rows = [r for part in self._rows.values() for r in part]
        dead = [d for part in self._dead.values() for d in part]
        offsets = self._offsets
        self._check_ratio(len(rows) + len(dead), len(dead))
        if dead:
            self._deadletter(dead)
        if rows:
            self._write(rows)
        self._commit(offsets)
        if self.sealer is not None and rows:
            self.sealer.add(rows)
        self.stats.stored += len(rows)
        self.stats.deadlettered += len(dead)
        self.stats.batches += 1
        self.stats.last_flush_at = time.time()
        log.info(
            "sink.batch_flushed",
            events=len(rows),
            deadlettered=len(dead),
            partitions=len(offsets),
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        self._rows, self._dead, self._offsets, self._first_at, self._staged = {}, {}, {}, None, 0

    def _maybe_seal(self, force: bool = False) -> None:
        if self.sealer is None:
            return
        if not force and (self.cfg.seal_seconds <= 0 or time.monotonic() - self._last_seal < self.cfg.seal_seconds):
            return
        self._last_seal = time.monotonic()
        try:
            self.sealer.seal()
        except StoreError as exc:
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

    def _deadletter(self, dead: list[tuple[Any, str]]) -> None:
        futures = []
        for rec, reason in dead:
            headers = [
                ("trail.reason", reason.encode("utf-8")),
                ("trail.topic", rec.topic.encode()),
                ("trail.partition", str(rec.partition).encode()),
                ("trail.offset", str(rec.offset).encode()),
                ("trail.stage", b"sink.decode"),
            ]
            futures.append(
                self._dl_producer.send(self.cfg.deadletter_topic, key=rec.key, value=rec.value or b"", headers=headers)
            )
            log.warning("sink.deadlettered", partition=rec.partition, offset=rec.offset, reason=reason)
        self._dl_producer.flush(timeout=30)
        for f in futures:
            if not f.succeeded():
                raise TrailError("the dead-letter topic did not acknowledge; nothing was committed")

    def _write(self, rows: list[dict[str, Any]]) -> None:
        delay = self.cfg.backoff_initial_s
        paused = False
        while True:
            try:
                self.store.insert_events(rows)
                break
            except StoreError as exc:
                self.stats.store_failures += 1
                log.error("sink.store_unavailable", error=str(exc), retry_in_s=round(delay, 2), rows=len(rows))
                if not paused:
                    self._consumer.pause(*self._consumer.assignment())
                    paused = True
                end = time.monotonic() + delay
                while time.monotonic() < end:
                    self._consumer.poll(timeout_ms=100)  # paused: keeps the group alive, fetches nothing
                    if self._stop.is_set():
                        raise StoreError("stopped while the store was unavailable; nothing was committed") from None
                delay = min(delay * 2, self.cfg.backoff_max_s)
        if paused:
            self._consumer.resume(*self._consumer.paused())
            log.info("sink.store_recovered")

    def _commit(self, offsets: dict[Any, int]) -> None:
        from kafka.structs import OffsetAndMetadata

        keep = {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items() if tp not in self._revoked}
        if keep:
            self._consumer.commit(keep)
