"""The incident trigger: ``trail.alerts`` → incidents, for high and critical alerts.

One consumer (group ``<ns>trail-incident-trigger``) reads every alert the detectors publish.
An alert whose severity is in ``TRAIL_INCIDENT_SEVERITIES`` (default high, critical) opens the
incident of its correlated group — alerts about the same actor within 24 h — or is attached to
it; reviews of alerts (a republished alert with a higher version) are not new findings and are
skipped. Opening is idempotent (the incident id derives from the group's first alert, and an
alert already attached is skipped), so a redelivered alert, a restarted trigger or two triggers
racing all end with one incident per group. Offsets are committed after the incident store
has saved what the polled alerts caused.

Evidence needs the alert's events in the store; the sink stores in batches, so the trigger
waits (bounded) for the events an alert cites before it freezes the evidence. What arrives
later can be added with ``trail incidents evidence ID``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import PersistenceError

from trail.detect.alerts import Alert
from trail.errors import StoreError, TrailError, ValidationError
from trail.incidents.application import IncidentService, parse_time
from trail.ingest.batch import Batch, BatchStep
from trail.ingest.errors import WriteFailed, WriteTimeout
from trail.ingest.kafka import KafkaConsumerAdapter
from trail.ingest.processor import Processor
from trail.ingest.step import Record
from trail.ingest.timeout import TimeLimit
from trail.logging import get_logger
from trail.storage.evidence import stored_count
from trail.storage.store import Store

log = get_logger("trail.incident_trigger")


@dataclass
class TriggerConfig:
    bootstrap: str
    topic: str
    group_id: str = "trail-incident-trigger"
    severities: tuple[str, ...] = ("high", "critical")
    poll_seconds: float = 0.2
    evidence_wait_s: float = 20.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    #: The longest opening an incident (evidence from the store, save to the incident store)
    #: may take before it counts as failed; above the incident store's own retries (~22 s).
    write_timeout_s: float = 60.0
    consumer_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TriggerStats:
    seen: int = 0
    opened: int = 0
    attached: int = 0
    ignored: int = 0
    malformed: int = 0


class IncidentTrigger(BatchStep[Record]):
    """A :class:`~trail.ingest.batch.BatchStep` over the consumer loop, on every partition of
    ``trail.alerts``: each poll's alerts are one batch, handled in order (a failing save is
    retried with capped backoff, the alerts before it are not handled again), then committed.

    A group with no committed offset starts at the **earliest** alert: an alert published while
    no trigger ran (a new deployment, a broker whose log started anew) must still open its
    incident, and opening is idempotent, so an alert read again changes nothing. A committed
    offset outside the log stops the trigger with :class:`~trail.ingest.errors.OffsetOutOfRange`.
    """

    def __init__(self, config: TriggerConfig, service: IncidentService, store: Store | None) -> None:
        super().__init__(batch_size=500, batch_seconds=0.0)
        self.cfg = config
        self.service = service
        self.store = store
        self.stats = TriggerStats()
        self._writes = TimeLimit("incident-trigger")
        #: The record being handled: (its batch, its index, its alert or None), classified once.
        self._in_hand: tuple[Batch[Record], int, Alert | None] | None = None
        self._loop = Processor(
            "trigger",
            lambda: KafkaConsumerAdapter(
                config.bootstrap, config.topic, config.group_id, assign_all=True, options=config.consumer_options
            ),
            self,
            no_offset="earliest",
            poll_timeout_s=config.poll_seconds,
            backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s,
        )
        self.ready = self._loop.ready

    def run(self) -> TriggerStats:
        self._loop.run()
        return self.stats

    def stop(self) -> None:
        """Ask the loop to finish the alert in hand, commit and return (safe from a signal handler)."""
        self._loop.stop()

    def close(self) -> None:
        self._writes.close()

    def take(self, record: Record) -> Record:
        return record

    def write(self, batch: Batch[Record]) -> None:
        """Handle the batch's alerts in order, from where the last attempt stopped: the record
        at ``batch.stage`` is classified (and counted) once, however often its save is retried."""
        records = batch.all()
        while batch.stage < len(records):
            hand = self._in_hand
            if hand is None or hand[0] is not batch or hand[1] != batch.stage:
                alert = self._classify(records[batch.stage])
                if alert is not None:
                    self._wait_for_events(alert)
                hand = self._in_hand = (batch, batch.stage, alert)
            alert = hand[2]
            if alert is not None:
                self._handle(alert)
            batch.stage += 1
        self._in_hand = None

    def _classify(self, rec: Record) -> Alert | None:
        """The alert to handle, or None (counted as ignored or malformed); counted as seen last,
        so ``seen`` covers only records whose kind is known."""
        try:
            try:
                alert = Alert.from_bytes(rec.value or b"")
            except ValidationError as exc:
                self.stats.malformed += 1
                log.warning("trigger.malformed_alert", partition=rec.partition, offset=rec.offset, reason=str(exc))
                return None
            if not self.wants(alert):
                self.stats.ignored += 1
                return None
            problem = _unusable(alert)
            if problem:  # a poison alert must not block the ones behind it
                self.stats.malformed += 1
                log.warning("trigger.unusable_alert", alert=alert.alert_id, offset=rec.offset, reason=problem)
                return None
            return alert
        finally:
            self.stats.seen += 1

    def wants(self, alert: Alert) -> bool:
        return alert.severity in self.cfg.severities and alert.version == 0 and alert.status == "open"

    def _handle(self, alert: Alert) -> None:
        try:
            inc, attached, created = self._writes.run(
                lambda: self.service.open_from_alerts([alert.to_dict()]),
                self.cfg.write_timeout_s,
                f"opening the incident of alert {alert.alert_id}",
            )
        except (StoreError, WriteTimeout) as exc:  # the event store (evidence), or a save that hung
            raise WriteFailed("store_unavailable", _first_line(exc)) from exc
        except (TrailError, PersistenceError) as exc:  # the incident store (beyond its own retries)
            raise WriteFailed("incident_store_failed", _first_line(exc)) from exc
        if created:
            self.stats.opened += 1
        elif attached:
            self.stats.attached += 1
        log.info(
            "trigger.alert_handled",
            alert=alert.alert_id,
            rule=alert.rule,
            incident=inc.ref,
            created=created,
            grade=inc.grade["level"] if inc.grade else None,
        )

    def _wait_for_events(self, alert: Alert) -> None:
        if self.store is None or not alert.evidence:
            return
        ids = sorted(set(alert.evidence))
        deadline = time.monotonic() + self.cfg.evidence_wait_s
        while True:
            try:
                if stored_count(self.store, ids) >= len(ids):
                    return
            except StoreError as exc:
                log.warning("trigger.store_unavailable", error=str(exc))
            if time.monotonic() >= deadline or self.loop.stopping:
                log.warning("trigger.evidence_incomplete", alert=alert.alert_id, expected=len(ids))
                return
            time.sleep(0.25)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unusable(alert: Alert) -> str:
    """Why an alert that decoded cannot be handled at all (retrying would never help), or ''."""

    for name in ("window_start", "window_end"):
        try:
            parse_time(str(getattr(alert, name)), name)
        except TrailError:
            return f"{name} is not a time"
    for i, ev in enumerate(alert.evidence):
        try:
            uuid.UUID(str(ev))
        except ValueError:
            return f"evidence[{i}] is not an event id"
    return ""
