"""The detector: ``trail.events`` → rules → ``trail.alerts``, at least once, never twice visible.

A step over the consumer loop (``trail.ingest.processor``), on every partition of
``trail.events``, committing under its own group ``<namespace>trail-detector``:

1. poll a batch; decode each record (pure). A record that is not a valid v1 event is counted
   and skipped: the sink dead-letters it; detection goes on.
2. merge the partitions in event time and feed the events to the
   :class:`~trail.detect.engine.Engine` (event time, no wall clock);
3. publish the alerts it returned whose ids were never published (acks=all, idempotent
   producer, wait for the acknowledgement), keyed by ``alert_id``;
4. commit the offsets the batch covers, only then;
5. every ``checkpoint_seconds``, and on a clean stop, store a checkpoint: the engine's state,
   the offsets it covers and the identity of the log they belong to (``detector_checkpoints``),
   within ``write_timeout_s`` (a failed or timed-out checkpoint is logged; the next one follows).

Where it starts. The ids already published are read back from ``trail.alerts`` and the
alerts table, so nothing is published twice. Then, per partition:

- from the newest checkpoint's offset, when the checkpoint belongs to this log: the windows
  are exactly those before the stop or crash;
- else from the group's committed offset;
- else from the **earliest** record: a detector sees every event the log still holds (its
  windows need them all; an alert it recomputes is already published and suppressed).

A checkpoint belongs to this log when it records the same log id: ``DetectorConfig.log_id``,
else the cluster id the broker reports. The local stack's broker keeps its log in memory, so
each of its starts is a new cluster with a new id: a restarted ``trail up`` finds the
checkpoint of the previous log, keeps its window state and the published ids (nothing old is
raised again), and reads the new log from its beginning. A checkpoint written before log ids
were recorded is trusted as this log's unless ``log_id`` is set. An offset outside the log
(from a checkpoint of this log, or committed) stops the detector with
:class:`~trail.ingest.errors.OffsetOutOfRange`. With no checkpoint at all (first start), the
volume baseline and the consent withdrawals are rebuilt from what the store holds.

One detector per namespace: its windows span every partition (an actor's events come from
many producers), so it assigns itself all partitions of ``trail.events``. A second instance
would see the same records; run a standby only behind a supervisor that starts it when the
first is gone.
"""

from __future__ import annotations

import base64
import json
import re
import time
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from trail import metrics
from trail.detect.alerts import Alert, rfc3339
from trail.detect.engine import Engine, event_ts
from trail.detect.rules import RuleSet
from trail.errors import PublishError as PublishError
from trail.errors import StoreError, ValidationError
from trail.events.model import (
    ACTIONS,
    ACTOR_KINDS,
    DEFAULT_MAX_CLOCK_SKEW_S,
    MAX_EVENT_BYTES,
    OUTCOMES,
    SCHEMA_V1,
    validate_wire,
)
from trail.ingest.errors import OffsetOutOfRange, WriteTimeout
from trail.ingest.kafka import AckedProducer, KafkaConsumerAdapter
from trail.ingest.processor import Processor, close_quietly
from trail.ingest.step import Partition, Polled, Step
from trail.ingest.timeout import TimeLimit
from trail.ingest.topics import read_to_end
from trail.logging import get_logger
from trail.storage import alerts as sql
from trail.storage.store import Store

_loads: Callable[[bytes], Any]
try:  # about 1.5x faster than the standard library on audit events; optional
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - the standard library is the fallback
    _loads = json.loads

log = get_logger("trail.detect")
_TS = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z")
_KINDS = frozenset(ACTOR_KINDS)
_ACTIONS = frozenset(ACTIONS)
_OUTCOMES = frozenset(OUTCOMES)


def decode_event(value: bytes | None, *, full: bool = False) -> dict[str, Any] | None:
    """The event as the engine reads it, or None for anything else (the sink dead-letters those).

    The default checks exactly what the rules read, with the types they need (canonical
    ``occurred_at``, actor kind and id, action, outcome, record count, categories, legal
    basis, subject refs, location, destination): about twice as fast as the full v1
    validation, which ``full=True`` runs instead (without recomputing the hash: the sink checks
    it before storing, and integrity is ``trail verify``'s job).
    """
    if value is None or len(value) > MAX_EVENT_BYTES:
        return None
    try:
        raw = _loads(value)
        if raw.__class__ is not dict:
            return None
        if full:
            return validate_wire(raw, check_hash=False)
        return raw if _fields_ok(raw) else None
    except (ValueError, RecursionError, ValidationError):
        return None


def _fields_ok(ev: dict[str, Any]) -> bool:
    try:
        at = ev["occurred_at"]
        actor = ev["actor"]
        n = ev["record_count"]
        refs = ev["subject_refs"]
        cats = ev["data_categories"]
        loc = ev["location"]
        dest = ev.get("destination")
        ok = (
            ev["schema"] == SCHEMA_V1
            and at.__class__ is str
            and len(at) == 27
            and at[10] == "T"
            and at[-1] == "Z"
            and actor.__class__ is dict
            and actor["kind"] in _KINDS
            and actor["id"].__class__ is str
            and ev["action"] in _ACTIONS
            and ev["outcome"] in _OUTCOMES
            and ev["legal_basis"].__class__ is str
            and ev["event_id"].__class__ is str
            and n.__class__ is int
            and n >= 0
            and cats.__class__ is list
            and refs.__class__ is list
            and loc.__class__ is dict
            and (dest is None or dest.__class__ is dict)
        )
        if not ok:
            return False
        if _TS.fullmatch(at) is None:
            return False
        return all(r.__class__ is str for r in refs) and all(c.__class__ is str for c in cats)
    except (KeyError, TypeError, AttributeError, ValueError):
        return False


@dataclass
class DetectorStats:
    consumed: int = 0
    #: Records done with: fed to the engine in event-time order (or skipped as malformed).
    processed: int = 0
    malformed: int = 0
    published: int = 0
    suppressed: int = 0
    batches: int = 0
    checkpoints: int = 0
    restored_from: str = ""
    #: The checkpoint found belonged to another log (its offsets were not used).
    new_log: bool = False


@dataclass
class DetectorConfig:
    bootstrap: str
    topic: str
    alerts_topic: str
    group_id: str = "trail-detector"
    batch_size: int = 5000
    poll_timeout_ms: int = 50
    checkpoint_seconds: float = 300.0
    max_idle_s: float = 2.0
    #: Run the full v1 validation on every record (slower) instead of the fields the rules read.
    full_validation: bool = False
    #: Identity of the trail.events log the offsets belong to, recorded with each checkpoint.
    #: None: the cluster id the broker reports (new at every start of the local broker).
    log_id: str | None = None
    #: The longest a checkpoint write may take before it counts as failed.
    write_timeout_s: float = 30.0
    #: How far ahead of its ingestion time an event's occurred_at may be before it is judged at
    #: its ingestion time instead (TRAIL_MAX_CLOCK_SKEW).
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    consumer_options: dict[str, Any] = field(default_factory=dict)


#: (event time bounded by ingestion time, offset, event or None when skipped, ingestion time)
_Buffered = tuple[float, int, dict[str, Any] | None, float]


class Detector(Step):
    def __init__(self, config: DetectorConfig, store: Store, rules: RuleSet) -> None:
        self.cfg = config
        self.store = store
        self.rules = rules
        self.engine = Engine(rules, max_skew_s=config.max_clock_skew_s)
        self.stats = DetectorStats()
        self.published: set[str] = set()
        self._producer: AckedProducer | None = None
        self._writes = TimeLimit("detector")
        self._log_id = ""
        self._positions: dict[int, int] = {}
        self._from_checkpoint: set[int] = set()
        self._buf: dict[Partition, list[_Buffered]] = {}
        self._tail: dict[Partition, float] = {}
        self._read: dict[Partition, int] = {}
        self._idle_since: dict[Partition, float] = {}
        self._last_checkpoint = time.monotonic()
        #: Called with each batch of alerts right after they were acknowledged (metrics, tests).
        self.on_published: Callable[[list[Alert]], None] | None = None
        self._loop = Processor(
            "detector",
            lambda: KafkaConsumerAdapter(
                config.bootstrap,
                config.topic,
                config.group_id,
                assign_all=True,
                tuned={
                    "max_poll_records": config.batch_size,
                    "fetch_max_bytes": 64 * 1024 * 1024,
                    "max_partition_fetch_bytes": 16 * 1024 * 1024,
                },
                options=config.consumer_options,
            ),
            self,
            no_offset="earliest",
            poll_timeout_s=config.poll_timeout_ms / 1000,
        )
        self.ready = self._loop.ready

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> DetectorStats:
        """Consume until :meth:`stop`; returns the counters. Raises on a fatal error, without
        committing or checkpointing past what was published."""
        try:
            self._loop.run()
        except OffsetOutOfRange as exc:
            if exc.partition in self._from_checkpoint:
                raise exc.with_hint(
                    f"The offset comes from the detector's checkpoint of log {self._log_id or '(unnamed)'}. If the "
                    f"topic was recreated on the same cluster, give the detector a new log id (DetectorConfig.log_id): "
                    "it keeps its windows and alert ids and reads the new log from its beginning"
                ) from None
            raise
        log.info("detector.stopped", consumed=self.stats.consumed, published=self.stats.published)
        return self.stats

    def stop(self) -> None:
        """Ask the loop to finish its batch, checkpoint and return (safe from a signal handler)."""
        self._loop.stop()

    def start(self, loop: Processor) -> None:
        super().start(loop)
        self._producer = AckedProducer(self.cfg.bootstrap, linger_ms=2, options=self.cfg.consumer_options)
        self._restore()
        log.info("detector.ready", topic=self.cfg.topic, group=self.cfg.group_id, rules=self.rules.source)

    def finish(self) -> None:
        self.checkpoint()

    def close(self) -> None:
        producer = self._producer
        close_quietly(log, "detector.close_failed", lambda: producer.close(5) if producer else None, self._writes.close)

    # ------------------------------------------------------------------ start
    def _restore(self) -> None:
        loop = self.loop
        self.published = self._published_ids()
        self._log_id = self.cfg.log_id or loop.consumer.log_id() or ""
        checkpoint = self._load_checkpoint()
        offsets: dict[int, int] = {}
        if checkpoint is not None:
            ckpt_offsets, state, ckpt_log = checkpoint
            self.engine = Engine.from_state(self.rules, state, max_skew_s=self.cfg.max_clock_skew_s, now=time.time())
            self.stats.restored_from = "checkpoint"
            if ckpt_log == self._log_id or (not ckpt_log and self.cfg.log_id is None):
                offsets = ckpt_offsets
            else:
                self.stats.new_log = True
                log.warning(
                    "detector.new_log",
                    checkpoint_log=ckpt_log or None,
                    log=self._log_id or None,
                    reason="the checkpoint's offsets belong to another log: this log is read from its "
                    "committed offsets, else from its beginning; window state and published alert ids are kept",
                )
        else:
            self._seed_from_store()
            self.stats.restored_from = "store"
        for p in sorted(loop.assignment()):
            if p.partition in offsets:
                loop.seek(p, offsets[p.partition])  # checked against the log on the first fetch
                self._positions[p.partition] = offsets[p.partition]
                self._from_checkpoint.add(p.partition)
            else:
                committed = loop.committed(p)
                if committed is not None:
                    self._positions[p.partition] = committed
        log.info(
            "detector.restored",
            source=self.stats.restored_from,
            published_known=len(self.published),
            positions=self._positions,
            watermark=rfc3339(self.engine.watermark) if self.engine.watermark else None,
        )

    def _published_ids(self) -> set[str]:
        """Every alert id on ``trail.alerts`` and in the alerts table."""

        ids: set[str] = set()
        try:
            ids.update(sql.published_alert_ids(self.store))
        except StoreError as exc:
            log.warning("detector.alerts_table_unreadable", error=str(exc))
        for rec in read_to_end(self.cfg.bootstrap, self.cfg.alerts_topic, options=self.cfg.consumer_options):
            if rec.key:
                ids.add(rec.key.decode("utf-8", "replace"))
        return ids

    def _load_checkpoint(self) -> tuple[dict[int, int], dict[str, Any], str] | None:
        row = sql.latest_detector_checkpoint(self.store, self.cfg.group_id)
        if row is None:
            return None
        offsets = {int(p): int(o) for p, o in json.loads(row["offsets"]).items()}
        state = json.loads(zlib.decompress(base64.b64decode(row["state"])))
        return offsets, state, str(row["log_id"])

    def _seed_from_store(self) -> None:
        """First start: the volume baseline and consent withdrawals from what the store holds."""
        last = sql.newest_event_time(self.store)
        if last is None:
            return
        last = last if last.tzinfo else last.replace(tzinfo=UTC)
        today = self.engine.clock.hour(last.strftime("%Y-%m-%dT%H"))
        since = datetime.fromtimestamp(today.day_start, UTC) - timedelta(days=self.rules.volume_anomaly.baseline_days)
        until = datetime.fromtimestamp(today.day_start, UTC)
        hourly = sql.hourly_counts(self.store, since, until)
        self.engine.load_hourly_counts(hourly)
        self.engine.seeded_before_day = today.local_day
        consent = sql.withdrawn_consents(self.store)
        self.engine.load_consent(consent)
        log.info("detector.seeded", hourly_rows=len(hourly), withdrawn_subjects=len(consent))

    # ------------------------------------------------------------------ the step
    def room(self) -> int | None:
        return self.cfg.batch_size

    def submit(self, polled: Polled) -> None:
        """Decode and buffer per partition, with each partition's newest event time."""
        n = 0
        full = self.cfg.full_validation
        for tp, records in polled.items():
            buf = self._buf.setdefault(tp, [])
            tail = self._tail.get(tp, 0.0)
            now = time.time()
            for rec in records:
                n += 1
                ev = decode_event(rec.value, full=full)
                if ev is None:
                    self.stats.malformed += 1
                    log.warning("detector.skipped_invalid", partition=rec.partition, offset=rec.offset)
                    buf.append((tail, rec.offset, None, now))
                    continue
                # Ingestion time: the broker's timestamp, never later than this host's clock.
                stamp = getattr(rec, "timestamp", -1)
                ingested = min(stamp / 1000, now) if isinstance(stamp, int) and stamp > 0 else now
                # Merged in event time, bounded by ingestion time: a record dated far ahead of
                # when it arrived does not hold its partition back (the engine judges it then).
                ts = min(event_ts(ev["occurred_at"]), ingested + self.engine.max_skew_s)
                if ts > tail:
                    tail = ts
                buf.append((ts, rec.offset, ev, ingested))
            self._tail[tp] = tail
            if records:
                self._read[tp] = records[-1].offset + 1
        if n:
            self.stats.consumed += n
            self.stats.batches += 1

    def poll(self) -> None:
        """Merge → detect → publish → commit → checkpoint (when due).

        Partitions are merged in event time: a record is fed only when no partition that
        still has unread records (position below its high-water mark) could hold an older
        one, so a backlog on one partition (a detector catching up, a replay through several
        producers) does not make the others' events late. A partition that stays silent
        longer than ``max_idle_s`` no longer holds the others back.
        """
        offsets, batch = self._releasable()
        alerts: list[Alert] = []
        feed = self.engine.feed
        for _ts, off, ev, ingested in batch:
            try:
                alerts.extend(feed(ev, ingested))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # An event the light check let through but the rules cannot read (e.g. 31 February).
                self.stats.malformed += 1
                log.warning("detector.skipped_unreadable", offset=off, error=type(exc).__name__)
        if alerts:
            self._publish(alerts)
        if offsets:
            self._commit(offsets)
            for tp, off in offsets.items():
                self._positions[tp.partition] = off
        if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint_seconds and batch:
            self.checkpoint()

    def revoke(self, partitions: Collection[Partition]) -> None:
        for p in partitions:
            self._buf.pop(p, None)
            self._tail.pop(p, None)
            self._read.pop(p, None)

    def backpressure(self) -> Collection[Partition]:
        """Partitions whose buffer is full: they wait for the slow ones."""
        limit = self.cfg.batch_size * 4
        return [tp for tp, buf in self._buf.items() if len(buf) >= limit]

    def _releasable(self) -> tuple[dict[Partition, int], list[tuple[float, int, dict[str, Any], float]]]:
        """The buffered records that can be fed now, in event-time order, and the offsets
        to commit once they are."""
        now = time.monotonic()
        bound = float("inf")
        lateness = self.rules.lateness_s
        for tp in self.loop.assignment():
            buf = self._buf.get(tp)
            if buf:
                self._idle_since.pop(tp, None)
                bound = min(bound, self._tail[tp])
                continue
            since = self._idle_since.setdefault(tp, now)
            if now - since >= self.cfg.max_idle_s:
                continue  # silent for long: it no longer holds the others back
            high = self.loop.highwater(tp)
            caught_up = high is not None and tp in self._read and self._read[tp] >= high
            if not caught_up or tp not in self._tail:
                return {}, []  # wait a little for its records
            # Caught up as of its last fetch: what it sends next is at most `lateness` older.
            bound = min(bound, self._tail[tp] + lateness)
        offsets: dict[Partition, int] = {}
        out: list[tuple[float, int, dict[str, Any], float]] = []
        for tp, buf in self._buf.items():
            i = 0
            for i, item in enumerate(buf):  # noqa: B007  # i is used after the loop
                if item[0] > bound:
                    break
            else:
                i = len(buf)
            if i:
                taken = buf[:i]
                del buf[:i]
                offsets[tp] = taken[-1][1] + 1
                self.stats.processed += len(taken)
                out.extend(t for t in taken if t[2] is not None)  # type: ignore[misc]
        if len(self._buf) > 1:
            out.sort(key=lambda t: t[0])
        return offsets, out

    def _publish(self, alerts: list[Alert]) -> None:
        fresh = []
        for a in alerts:
            if a.alert_id in self.published:
                self.stats.suppressed += 1
                continue
            fresh.append(a)
        if not fresh:
            return
        now = rfc3339(time.time())
        for a in fresh:
            a.detected_at = now
        assert self._producer is not None
        records = [(a.alert_id.encode(), a.to_bytes(), None) for a in fresh]
        if not self._producer.send_all(self.cfg.alerts_topic, records):
            raise PublishError(f"{self.cfg.alerts_topic} did not acknowledge an alert; nothing was committed")
        for a in fresh:
            self.published.add(a.alert_id)
            metrics.ALERTS_RAISED.labels(a.rule, a.severity).inc()
            log.info(
                "detector.alert",
                alert_id=a.alert_id,
                rule=a.rule,
                severity=a.severity,
                actor=a.actor,
                window_start=a.window_start,
                count=a.count,
            )
        self.stats.published += len(fresh)
        if self.on_published is not None:
            self.on_published(fresh)

    def _commit(self, offsets: dict[Partition, int]) -> None:
        """Commit what was fed and published (through the loop: never past the alerts)."""
        self.loop.commit(offsets)

    def checkpoint(self) -> None:
        """Store the engine state with the offsets it covers (all committed already) and the
        id of their log. A failure or a timeout is logged: a restart re-reads from the previous
        checkpoint (alerts are not republished)."""
        state = base64.b64encode(zlib.compress(json.dumps(self.engine.state()).encode("utf-8"), 3)).decode("ascii")
        row = [self.cfg.group_id, datetime.now(UTC), json.dumps(self._positions), state, self._log_id]
        timeout = self.cfg.write_timeout_s
        try:
            self._writes.run(
                lambda: sql.save_detector_checkpoint(self.store, row, timeout_s=timeout),
                timeout,
                "the detector checkpoint",
            )
        except (StoreError, WriteTimeout) as exc:
            log.error("detector.checkpoint_failed", error=str(exc))
            return
        self._last_checkpoint = time.monotonic()
        self.stats.checkpoints += 1
