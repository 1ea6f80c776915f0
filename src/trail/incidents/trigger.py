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

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import PersistenceError

from trail.detect.alerts import Alert
from trail.errors import StoreError, TrailError, ValidationError
from trail.incidents.application import IncidentService
from trail.ingest.topics import assign_all, close_quietly, consumer_options
from trail.logging import get_logger
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
    consumer_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TriggerStats:
    seen: int = 0
    opened: int = 0
    attached: int = 0
    ignored: int = 0
    malformed: int = 0


class IncidentTrigger:
    def __init__(self, config: TriggerConfig, service: IncidentService, store: Store | None) -> None:
        self.cfg = config
        self.service = service
        self.store = store
        self.stats = TriggerStats()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._consumer: Any = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> TriggerStats:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            **consumer_options(self.cfg.bootstrap, self.cfg.group_id, self.cfg.consumer_options)
        )
        assign_all(self._consumer, self.cfg.topic, self._stop)
        self.ready.set()
        log.info("trigger.started", topic=self.cfg.topic, group=self.cfg.group_id, severities=self.cfg.severities)
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            close_quietly(log, "trigger.close_failed", lambda: self._consumer.close(autocommit=False))
        return self.stats

    def step(self) -> int:
        polled = self._consumer.poll(timeout_ms=int(self.cfg.poll_seconds * 1000))
        offsets: dict[Any, int] = {}
        handled = 0
        for tp, records in polled.items():
            for rec in records:
                self.stats.seen += 1
                try:
                    alert = Alert.from_bytes(rec.value or b"")
                except ValidationError as exc:
                    self.stats.malformed += 1
                    log.warning("trigger.malformed_alert", partition=rec.partition, offset=rec.offset, reason=str(exc))
                    continue
                if not self.wants(alert):
                    self.stats.ignored += 1
                    continue
                problem = _unusable(alert)
                if problem:  # a poison alert must not block the ones behind it
                    self.stats.malformed += 1
                    log.warning("trigger.unusable_alert", alert=alert.alert_id, offset=rec.offset, reason=problem)
                    continue
                self._handle(alert)
                handled += 1
            if records:
                offsets[tp] = records[-1].offset + 1
        if offsets:
            from kafka.structs import OffsetAndMetadata

            self._consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        return handled

    def wants(self, alert: Alert) -> bool:
        return alert.severity in self.cfg.severities and alert.version == 0 and alert.status == "open"

    def _handle(self, alert: Alert) -> None:
        self._wait_for_events(alert)
        delay = self.cfg.backoff_initial_s
        while True:
            try:
                inc, attached, created = self.service.open_from_alerts([alert.to_dict()])
                break
            except StoreError as exc:  # the event store: evidence could not be computed yet
                log.error("trigger.store_unavailable", error=str(exc), retry_in_s=round(delay, 2))
            except (TrailError, PersistenceError) as exc:  # the incident store (beyond its own retries)
                log.error("trigger.incident_store_failed", error=_first_line(exc), retry_in_s=round(delay, 2))
            if self._stop.wait(delay):
                raise TrailError("stopped while the incident store was failing; the alert will be redelivered")
            delay = min(delay * 2, self.cfg.backoff_max_s)
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
                [row] = self.store.query(
                    "SELECT uniqExact(event_id) AS n FROM {db}.events WHERE event_id IN {ids:Array(UUID)}",
                    {"ids": ids},
                )
                if int(row["n"]) >= len(ids):
                    return
            except StoreError as exc:
                log.warning("trigger.store_unavailable", error=str(exc))
            if time.monotonic() >= deadline or self._stop.wait(0.25):
                log.warning("trigger.evidence_incomplete", alert=alert.alert_id, expected=len(ids))
                return


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unusable(alert: Alert) -> str:
    """Why an alert that decoded cannot be handled at all (retrying would never help), or ''."""
    import uuid

    from trail.incidents.application import parse_time

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


def trigger_config(settings: Any, bootstrap: str, **overrides: Any) -> TriggerConfig:
    severities = tuple(x.strip() for x in str(settings.incident_severities).split(",") if x.strip())
    from trail.config import Settings, kafka_options

    if isinstance(settings, Settings):
        overrides["consumer_options"] = {**kafka_options(settings), **overrides.get("consumer_options", {})}
    return TriggerConfig(
        bootstrap=bootstrap,
        topic=settings.topic("alerts"),
        group_id=f"{settings.namespace}trail-incident-trigger",
        severities=severities,
        **overrides,
    )


def incident_service(settings: Any, store: Store | None = None, **kwargs: Any) -> IncidentService:
    """The incident service configured from the settings (playbook, incident store, time zone)."""
    from trail.incidents.playbook import load_playbook

    return IncidentService(
        load_playbook(settings.playbook),
        store_url=settings.incident_store,
        sqlite_path=str(settings.incident_store_path),
        store=store,
        timezone=settings.timezone,
        **kwargs,
    )


def run_trigger(settings: Any) -> int:
    """``consumers/incident_trigger.py``: the trigger alone until SIGTERM/SIGINT.

    Exit status: 0 clean stop; 2 bad configuration (playbook, incident store); 3 failures.
    """
    from trail.config import resolve_bootstrap
    from trail.errors import ConfigError
    from trail.incidents.playbook import PlaybookError
    from trail.roles import run_until_signal
    from trail.storage.store import open_store

    try:
        bootstrap = resolve_bootstrap(settings)
        store = open_store(settings.store_dsn, settings.clickhouse_database)
        service = incident_service(settings, store)
    except (ConfigError, PlaybookError) as exc:
        log.error("trigger.config_invalid", reason=str(exc))
        return 2
    trigger = IncidentTrigger(trigger_config(settings, bootstrap), service, store)

    def cleanup() -> None:
        service.shutdown()
        store.close()

    return run_until_signal(trigger, "trigger", log, errors=((TrailError, 3, "failed"),), cleanup=cleanup)
