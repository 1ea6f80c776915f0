"""The detector: ``trail.events`` → rules → ``trail.alerts``, at least once, never twice visible.

Loop (the sink's discipline, STYLE.md):

1. poll a batch; decode each record (pure). A record that is not a valid v1 event is counted
   and skipped: the sink dead-letters it; detection goes on.
2. feed the events to the :class:`~trail.detect.engine.Engine` (event time, no wall clock);
3. publish the alerts it returned whose ids were never published (acks=all, idempotent
   producer, wait for the acknowledgement), keyed by ``alert_id``;
4. commit the offsets the batch covers, only then;
5. every ``checkpoint_seconds``, and on a clean stop, store a checkpoint: the engine's state
   and the offsets it covers (``detector_checkpoints``).

On start: the ids already published are read back from ``trail.alerts`` (and the alerts
table), so nothing is published twice; the newest checkpoint is loaded and every partition
re-read from the checkpoint's offsets, so the windows are exactly those before the stop or
crash. With no checkpoint (first start), the volume baseline and the consent withdrawals are
rebuilt from what the store holds.

One detector per namespace: its windows span every partition (an actor's events come from
many producers), so it assigns itself all partitions of ``trail.events`` and commits under
its own consumer group, ``<namespace>trail-detector``. A second instance would see the same
records; run a standby only behind a supervisor that starts it when the first is gone.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from trail.detect.alerts import Alert, rfc3339
from trail.detect.engine import Engine, event_ts
from trail.detect.rules import RuleSet
from trail.errors import StoreError, TrailError, ValidationError
from trail.events.model import ACTIONS, ACTOR_KINDS, MAX_EVENT_BYTES, OUTCOMES, SCHEMA_V1, validate_wire
from trail.ingest.topics import assign_all, close_quietly, consumer_options, security_options, seek_committed
from trail.logging import get_logger
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


class PublishError(TrailError):
    """trail.alerts did not acknowledge an alert; nothing past the last commit was committed."""


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
    consumer_options: dict[str, Any] = field(default_factory=dict)


class Detector:
    def __init__(self, config: DetectorConfig, store: Store, rules: RuleSet) -> None:
        self.cfg = config
        self.store = store
        self.rules = rules
        self.engine = Engine(rules)
        self.stats = DetectorStats()
        self.published: set[str] = set()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._consumer: Any = None
        self._producer: Any = None
        self._tps: list[Any] = []
        self._positions: dict[int, int] = {}
        self._buf: dict[Any, list[tuple[float, int, dict[str, Any] | None]]] = {}
        self._tail: dict[Any, float] = {}
        self._idle_since: dict[Any, float] = {}
        self._last_checkpoint = time.monotonic()
        #: Called with each batch of alerts right after they were acknowledged (metrics, tests).
        self.on_published: Callable[[list[Alert]], None] | None = None

    def stop(self) -> None:
        """Ask the loop to finish its batch, checkpoint and return (safe from a signal handler)."""
        self._stop.set()

    # ------------------------------------------------------------------ start
    def _connect(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        opts = consumer_options(
            self.cfg.bootstrap,
            self.cfg.group_id,
            self.cfg.consumer_options,
            max_poll_records=self.cfg.batch_size,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        self._consumer = KafkaConsumer(**opts)
        self._tps = assign_all(self._consumer, self.cfg.topic, self._stop, seek=False)  # _restore seeks
        self._producer = KafkaProducer(
            bootstrap_servers=self.cfg.bootstrap.split(","),
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            bootstrap_timeout_ms=10_000,
            **security_options(self.cfg.consumer_options),
        )

    def _restore(self) -> None:
        self.published = self._published_ids()
        checkpoint = self._load_checkpoint()
        if checkpoint is not None:
            offsets, state = checkpoint
            self.engine = Engine.from_state(self.rules, state)
            self.stats.restored_from = "checkpoint"
        else:
            offsets = {}
            self._seed_from_store()
            self.stats.restored_from = "store"
        for tp in self._tps:
            if tp.partition in offsets:
                self._consumer.seek(tp, offsets[tp.partition])
            else:
                seek_committed(self._consumer, tp)
            self._positions[tp.partition] = self._consumer.position(tp)
        log.info(
            "detector.restored",
            source=self.stats.restored_from,
            published_known=len(self.published),
            positions=self._positions,
            watermark=rfc3339(self.engine.watermark) if self.engine.watermark else None,
        )

    def _published_ids(self) -> set[str]:
        """Every alert id on ``trail.alerts`` and in the alerts table."""
        from trail.ingest.topics import read_to_end

        ids: set[str] = set()
        try:
            rows = self.store.query("SELECT DISTINCT toString(alert_id) AS id FROM {db}.alerts")
            ids.update(str(r["id"]) for r in rows)
        except StoreError as exc:
            log.warning("detector.alerts_table_unreadable", error=str(exc))
        for rec in read_to_end(self.cfg.bootstrap, self.cfg.alerts_topic):
            if rec.key:
                ids.add(rec.key.decode("utf-8", "replace"))
        return ids

    def _load_checkpoint(self) -> tuple[dict[int, int], dict[str, Any]] | None:
        rows = self.store.query(
            "SELECT offsets, state FROM {db}.detector_checkpoints WHERE group_id = {g:String} "
            "ORDER BY saved_at DESC LIMIT 1",
            {"g": self.cfg.group_id},
        )
        if not rows:
            return None
        offsets = {int(p): int(o) for p, o in json.loads(rows[0]["offsets"]).items()}
        state = json.loads(zlib.decompress(base64.b64decode(rows[0]["state"])))
        return offsets, state

    def _seed_from_store(self) -> None:
        """First start: the volume baseline and consent withdrawals from what the store holds."""
        rows = self.store.query("SELECT max(occurred_at) AS last, count() AS n FROM {db}.events")
        if not rows or not rows[0]["n"]:
            return
        last: datetime = rows[0]["last"]
        last = last if last.tzinfo else last.replace(tzinfo=UTC)
        today = self.engine.clock.hour(last.strftime("%Y-%m-%dT%H"))
        since = datetime.fromtimestamp(today.day_start, UTC) - timedelta(days=self.rules.volume_anomaly.baseline_days)
        until = datetime.fromtimestamp(today.day_start, UTC)
        hourly = self.store.query(
            "SELECT actor_id, any(actor_kind) AS actor_kind, any(actor_role) AS actor_role, "
            "any(actor_department) AS actor_department, toStartOfHour(occurred_at) AS hour, "
            "uniqExact(event_id) AS n FROM {db}.events "
            "WHERE occurred_at >= {since:DateTime64(6, 'UTC')} AND occurred_at < {until:DateTime64(6, 'UTC')} "
            "GROUP BY actor_id, hour",
            {"since": since, "until": until},
        )
        self.engine.load_hourly_counts(hourly)
        self.engine.seeded_before_day = today.local_day
        consent = self.store.query(
            "SELECT ref, maxIf(occurred_at, action = 'consent_withdraw') AS withdrawn, "
            "maxIf(occurred_at, action = 'consent_grant') AS granted FROM "
            "(SELECT arrayJoin(subject_refs) AS ref, occurred_at, action FROM {db}.events "
            " WHERE action IN ('consent_withdraw', 'consent_grant') AND outcome != 'denied') "
            "GROUP BY ref HAVING withdrawn > granted"
        )
        self.engine.load_consent(consent)
        log.info("detector.seeded", hourly_rows=len(hourly), withdrawn_subjects=len(consent))

    # ------------------------------------------------------------------ loop
    def run(self) -> DetectorStats:
        """Consume until :meth:`stop`; returns the counters. Raises on a fatal error, without
        committing or checkpointing past what was published."""
        self._connect()
        try:
            self._restore()
            log.info("detector.started", topic=self.cfg.topic, group=self.cfg.group_id, rules=self.rules.source)
            self.ready.set()
            while not self._stop.is_set():
                self.step()
            self.checkpoint()
        finally:
            self._close()
        log.info("detector.stopped", consumed=self.stats.consumed, published=self.stats.published)
        return self.stats

    def step(self) -> int:
        """One poll → merge → detect → publish → commit round; returns the records consumed.

        Partitions are merged in event time: a record is fed only when no partition that
        still has unread records (position below its high-water mark) could hold an older
        one, so a backlog on one partition (a detector catching up, a replay through several
        producers) does not make the others' events late. A partition that stays silent
        longer than ``max_idle_s`` no longer holds the others back.
        """
        polled = self._consumer.poll(timeout_ms=self.cfg.poll_timeout_ms, max_records=self.cfg.batch_size)
        n = 0
        full = self.cfg.full_validation
        for tp, records in polled.items():
            buf = self._buf.setdefault(tp, [])
            tail = self._tail.get(tp, 0.0)
            for rec in records:
                n += 1
                ev = decode_event(rec.value, full=full)
                if ev is None:
                    self.stats.malformed += 1
                    log.warning("detector.skipped_invalid", partition=rec.partition, offset=rec.offset)
                    buf.append((tail, rec.offset, None))
                    continue
                ts = event_ts(ev["occurred_at"])
                if ts > tail:
                    tail = ts
                buf.append((ts, rec.offset, ev))
            self._tail[tp] = tail
        if n:
            self.stats.consumed += n
            self.stats.batches += 1
        offsets, batch = self._releasable()
        alerts: list[Alert] = []
        feed = self.engine.feed
        for _ts, off, ev in batch:
            try:
                alerts.extend(feed(ev))
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
        self._backpressure()
        if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint_seconds and batch:
            self.checkpoint()
        return n

    def _releasable(self) -> tuple[dict[Any, int], list[tuple[float, int, dict[str, Any]]]]:
        """The buffered records that can be fed now, in event-time order, and the offsets
        to commit once they are."""
        now = time.monotonic()
        bound = float("inf")
        lateness = self.rules.lateness_s
        for tp in self._tps:
            buf = self._buf.get(tp)
            if buf:
                self._idle_since.pop(tp, None)
                bound = min(bound, self._tail[tp])
                continue
            since = self._idle_since.setdefault(tp, now)
            if now - since >= self.cfg.max_idle_s:
                continue  # silent for long: it no longer holds the others back
            high = self._consumer.highwater(tp)
            caught_up = high is not None and self._consumer.position(tp) >= high
            if not caught_up or tp not in self._tail:
                return {}, []  # wait a little for its records
            # Caught up as of its last fetch: what it sends next is at most `lateness` older.
            bound = min(bound, self._tail[tp] + lateness)
        offsets: dict[Any, int] = {}
        out: list[tuple[float, int, dict[str, Any]]] = []
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

    def _backpressure(self) -> None:
        """Pause partitions whose buffer is full (they wait for the slow ones), resume the others."""
        limit = self.cfg.batch_size * 4
        full = [tp for tp, buf in self._buf.items() if len(buf) >= limit]
        paused = set(self._consumer.paused())
        if full:
            self._consumer.pause(*[tp for tp in full if tp not in paused])
        resume = [tp for tp in paused if len(self._buf.get(tp, ())) < limit]
        if resume:
            self._consumer.resume(*resume)

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
        futures = []
        for a in fresh:
            a.detected_at = now
            futures.append(self._producer.send(self.cfg.alerts_topic, key=a.alert_id.encode(), value=a.to_bytes()))
        self._producer.flush(timeout=30)
        for f in futures:
            if not f.is_done or f.failed():
                raise PublishError(f"{self.cfg.alerts_topic} did not acknowledge an alert; nothing was committed")
        for a in fresh:
            self.published.add(a.alert_id)
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

    def _commit(self, offsets: dict[Any, int]) -> None:
        from kafka.structs import OffsetAndMetadata

        self._consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})

    def checkpoint(self) -> None:
        """Store the engine state with the offsets it covers (all committed already)."""
        state = base64.b64encode(zlib.compress(json.dumps(self.engine.state()).encode("utf-8"), 3)).decode("ascii")
        row = [self.cfg.group_id, datetime.now(UTC), json.dumps(self._positions), state]
        try:
            self.store.insert_rows("detector_checkpoints", ["group_id", "saved_at", "offsets", "state"], [row])
        except StoreError as exc:
            # Not fatal: a restart re-reads from the previous checkpoint (alerts are not republished).
            log.error("detector.checkpoint_failed", error=str(exc))
            return
        self._last_checkpoint = time.monotonic()
        self.stats.checkpoints += 1

    def _close(self) -> None:
        close_quietly(
            log,
            "detector.close_failed",
            lambda: self._consumer.close(autocommit=False),
            lambda: self._producer.close(5),
        )
