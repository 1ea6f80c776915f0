"""Building every role from the settings, and running one as a process (snuba's consumer builder).

The domain packages take explicit configuration objects and know nothing of ``TRAIL_*``
variables; this module is the one place that reads :class:`~trail.config.Settings` and turns
them into a store, a sink with its sealer, a detector, an alert sink, an incident service and
trigger. The local stack (``trail up``), the API, the command line and ``consumers/`` build
their roles here, so a role is wired the same way wherever it runs.

    store = wiring.open_trail_store(settings)
    sink = wiring.build_sink(settings, store, bootstrap)

Running a role as its own process (``consumers/*.py``, ``trail sink``): :func:`run_sink`,
:func:`run_detector`, :func:`run_alert_sink`, :func:`run_trigger`. Each stops the same way:
SIGTERM or SIGINT asks the worker to stop (it finishes what it holds, commits and returns); an
error the role expects becomes a logged line and an exit status; whatever the role opened is
closed on the way out. Exit statuses: 0 clean stop; 2 bad configuration; 3 the store or broker
failed (or stayed down until stop); 4 the sink halted on the dead-letter ratio; 5 an offset out
of range (the log line says what to do).
"""

from __future__ import annotations

import signal
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trail import metrics
from trail.config import Settings, kafka_options, load_settings, resolve_bootstrap
from trail.detect.alert_sink import AlertSink, AlertSinkConfig
from trail.detect.consumer import Detector, DetectorConfig
from trail.detect.rules import RuleSet, rules_from_settings
from trail.errors import ConfigError, PlaybookError, StoreError, TrailError
from trail.files import private_umask
from trail.incidents.application import IncidentService
from trail.incidents.trigger import IncidentTrigger, TriggerConfig
from trail.ingest.errors import OffsetOutOfRange, StoppedWhileFailing
from trail.ingest.kafka import GroupOffsets
from trail.ingest.sink import Sink, SinkConfig, SinkHalted
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import checkpoint_signing_key
from trail.integrity.lease import SEALER_LOCK_KEY, Lease, shared_lease
from trail.integrity.log_sealer import log_consumer
from trail.integrity.sealer import Sealer, kafka_publisher, make_sealer
from trail.integrity.sealer_role import LogFeed, SealerRole
from trail.logging import configure, get_logger
from trail.storage.store import Store, open_store

log = get_logger("trail.roles")


# ---------------------------------------------------------------- building
def open_trail_store(settings: Settings) -> Store:
    """The trail's store (ClickHouse server or the data directory's chDB), migrated."""
    return open_store(settings.store_dsn, settings.clickhouse_database, cluster=settings.clickhouse_cluster)


def _secured(settings: Settings, overrides: dict[str, Any]) -> dict[str, Any]:
    """The role's overrides with the broker security settings (TRAIL_KAFKA_*) in its client options."""
    overrides["consumer_options"] = {**kafka_options(settings), **overrides.get("consumer_options", {})}
    return overrides


def sink_config(settings: Settings, bootstrap: str, **overrides: Any) -> SinkConfig:
    _secured(settings, overrides)
    return SinkConfig(
        bootstrap=bootstrap,
        topic=settings.topic("events"),
        deadletter_topic=settings.topic("deadletter"),
        group_id=f"{settings.namespace}trail-sink",
        batch_size=settings.sink_batch_size,
        batch_seconds=settings.sink_batch_seconds,
        max_deadletter_ratio=settings.sink_max_deadletter_ratio,
        seal_seconds=settings.checkpoint_seconds,
        **overrides,
    )


def build_sink(settings: Settings, store: Store, bootstrap: str, *, sealing: bool = True, **overrides: Any) -> Sink:
    """The sink of ``settings``, sealing what it stores when sealing is on (and ``sealing``:
    ``trail up`` seals in a sealer role beside it instead)."""
    sealer = make_sealer(settings, store, bootstrap, kafka_options(settings)) if sealing else None
    return Sink(sink_config(settings, bootstrap, **overrides), store, sealer)


def detector_config(settings: Settings, bootstrap: str, **overrides: Any) -> DetectorConfig:
    overrides.setdefault("checkpoint_seconds", settings.detector_checkpoint_seconds)
    _secured(settings, overrides)
    return DetectorConfig(
        bootstrap=bootstrap,
        topic=settings.topic("events"),
        alerts_topic=settings.topic("alerts"),
        group_id=f"{settings.namespace}trail-detector",
        **{"max_clock_skew_s": settings.max_clock_skew, **overrides},
    )


def alert_sink_config(settings: Settings, bootstrap: str, **overrides: Any) -> AlertSinkConfig:
    _secured(settings, overrides)
    return AlertSinkConfig(
        bootstrap=bootstrap,
        topic=settings.topic("alerts"),
        group_id=f"{settings.namespace}trail-alert-sink",
        **overrides,
    )


def trigger_config(settings: Settings, bootstrap: str, **overrides: Any) -> TriggerConfig:
    severities = tuple(x.strip() for x in settings.incident_severities.split(",") if x.strip())
    _secured(settings, overrides)
    return TriggerConfig(
        bootstrap=bootstrap,
        topic=settings.topic("alerts"),
        group_id=f"{settings.namespace}trail-incident-trigger",
        severities=severities,
        **overrides,
    )


def incident_service(settings: Settings, store: Store | None = None) -> IncidentService:
    """The incident service of ``settings`` (playbook, incident store, time zone)."""
    return IncidentService.from_settings(settings, store)


def build_trigger(settings: Settings, service: IncidentService, store: Store | None, bootstrap: str) -> IncidentTrigger:
    return IncidentTrigger(trigger_config(settings, bootstrap), service, store)


# ---------------------------------------------------------------- roles in threads (one process)
@dataclass
class RoleThread:
    """One role's ``run()`` in a daemon thread; what it raised is kept for health and stop."""

    name: str
    target: Any
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> RoleThread:
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.target.run()
        except BaseException as exc:  # reported through health and on stop
            self.error = exc
            log.exception("roles.thread_failed", thread=self.name, internal=True)

    @property
    def alive(self) -> bool:
        return bool(self.thread and self.thread.is_alive())

    def wait_ready(self, timeout: float) -> None:
        if not self.target.ready.wait(timeout):
            raise TrailError(f"{self.name} did not start within {timeout:.0f} s: {self.error or 'no error'}")

    def stop(self, timeout: float = 30.0) -> None:
        self.target.stop()
        if self.thread is not None:
            self.thread.join(timeout)


@dataclass
class DetectionHandle:
    """The detector and the alert sink running in threads of one process (``trail up``)."""

    detector: Detector
    alert_sink: AlertSink
    runners: list[RoleThread] = field(default_factory=list)

    def wait_ready(self, timeout: float = 60.0) -> None:
        for r in self.runners:
            r.wait_ready(timeout)

    def health(self) -> dict[str, Any]:
        d, a = self.runners
        return {
            "detector": {
                "running": d.alive,
                "consumed": self.detector.stats.consumed,
                "malformed": self.detector.stats.malformed,
                "alerts": self.detector.stats.published,
                "error": str(d.error) if d.error else None,
            },
            "alert_sink": {
                "running": a.alive,
                "stored": self.alert_sink.stats.stored,
                "error": str(a.error) if a.error else None,
            },
        }

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the detector first (checkpoint, commit), then the alert sink."""
        for r in self.runners:
            r.stop(timeout)


def start_detection(
    settings: Settings,
    store: Store,
    bootstrap: str,
    *,
    rules: RuleSet | None = None,
    wait: bool = True,
    detector_overrides: dict[str, Any] | None = None,
) -> DetectionHandle:
    """Start the detector and the alert sink in threads over ``store``; returns the handle."""
    rs = rules or rules_from_settings(settings)
    detector = Detector(detector_config(settings, bootstrap, **(detector_overrides or {})), store, rs)
    sink = AlertSink(alert_sink_config(settings, bootstrap), store)
    handle = DetectionHandle(
        detector, sink, [RoleThread("trail-detector", detector), RoleThread("trail-alert-sink", sink)]
    )
    for r in handle.runners:
        r.start()
    if wait:
        handle.wait_ready()
    return handle


# ---------------------------------------------------------------- one role as a process
ErrorMap = Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str]]


def stop_on_signal(worker: Any, role: str) -> None:
    """SIGTERM and SIGINT call ``worker.stop()`` from now on (install it before a role starts
    serving, so a signal as soon as it answers is already a clean stop)."""

    def on_signal(signum: int, _frame: Any) -> None:
        log.info(f"{role}.signal", signal=signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_until_signal(worker: Any, role: str, *, errors: ErrorMap, cleanup: Callable[[], None]) -> int:
    """Run ``worker.run()`` until it returns (0) or raises one of ``errors``: ``(exception
    types, exit status, log event suffix)``, logged as ``<role>.<suffix>``."""
    stop_on_signal(worker, role)
    try:
        worker.run()
        return 0
    except BaseException as exc:
        for kinds, status, event in errors:
            if isinstance(exc, kinds):
                log.error(f"{role}.{event}", reason=str(exc))
                return status
        raise
    finally:
        cleanup()


def serve_metrics(settings: Settings, role: str) -> None:
    """Serve the process's Prometheus metrics when ``TRAIL_METRICS_PORT`` is set."""
    if settings.metrics_port:
        metrics.serve(settings.metrics_port, settings.metrics_host)
        log.info(f"{role}.metrics", host=settings.metrics_host, port=settings.metrics_port)


def watch_incidents(service: IncidentService) -> Callable[[], None]:
    """Open incidents by grade and overdue obligations, read from ``service`` at each scrape
    (held weakly: a service shut down and dropped stops reporting). Returns the removal."""
    ref = weakref.ref(service)

    def views() -> list[dict[str, Any]]:
        svc = ref()
        return [svc.view(i) for i in svc.ids()] if svc is not None else []

    def open_by_grade() -> list[tuple[tuple[str, ...], float]]:
        grades = Counter((v["grade"] or {}).get("level", "-") for v in views() if v["status"] != "closed")
        return [((g,), float(n)) for g, n in sorted(grades.items())]

    def overdue() -> list[tuple[tuple[str, ...], float]]:
        late = Counter(o["id"] for v in views() for o in v["obligations"] if o["state"] == "overdue")
        return [((k,), float(n)) for k, n in sorted(late.items())]

    removals = [
        metrics.watch("trail_incidents_open", open_by_grade),
        metrics.watch("trail_obligations_overdue", overdue),
    ]

    def unwatch() -> None:
        for remove in removals:
            remove()

    return unwatch


def sealer_lease(settings: Settings) -> Lease:
    """The sealer's lease: an advisory lock in the PostgreSQL incident store when there is one
    (sealers on several hosts), else a lock file in the data directory (one host)."""
    return shared_lease(settings.incident_store, settings.data_dir / "sealer.lock", SEALER_LOCK_KEY)


def build_sealer_role(settings: Settings, store: Store, bootstrap: str | None) -> SealerRole:
    """The sealer role (``consumers/sealer.py``, and ``trail up``'s): seals every
    ``TRAIL_CHECKPOINT_SECONDS`` (10 s when sinks' sealing is off with 0) while it holds the
    lease — from the events topic with a broker, else from the store."""
    key = checkpoint_signing_key(settings)
    options = kafka_options(settings)
    publish = kafka_publisher(bootstrap, settings.topic("checkpoints"), options) if bootstrap else None

    def make(adopt_stored: bool) -> Sealer:
        return Sealer(store, key, AppendOnlyLog(settings.checkpoint_log_path), publish, adopt_stored=adopt_stored)

    feed = None
    if bootstrap:
        topic = settings.topic("events")
        feed = LogFeed(
            consumer=log_consumer(bootstrap, topic, f"{settings.namespace}trail-sealer", options),
            sinks=lambda: GroupOffsets(bootstrap, topic, sink_config(settings, bootstrap).group_id, options),
            stall_warn_s=settings.sealer_stall_warn,
        )
    return SealerRole(make, store, sealer_lease(settings), interval_s=settings.checkpoint_seconds or 10.0, feed=feed)


def role_main(name: str, run: Callable[[Settings], int]) -> int:
    """The entry point of a deployable role (``consumers/*.py``): settings from ``TRAIL_*``
    (exit 2 with the reason when they are wrong), logging configured, then ``run``."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    return run(settings)


def _configured(role: str, build: Callable[[], int]) -> int:
    private_umask()  # a long-running role: whatever it or its libraries write is private
    try:
        return build()
    except (ConfigError, PlaybookError) as exc:
        log.error(f"{role}.config_invalid", reason=str(exc))
        return 2


def run_sink(settings: Settings) -> int:
    """``consumers/sink.py``: the sink alone (consumer group ``<ns>trail-sink``)."""

    def run() -> int:
        serve_metrics(settings, "sink")
        bootstrap = resolve_bootstrap(settings)
        store = open_trail_store(settings)
        sink = build_sink(settings, store, bootstrap)
        return run_until_signal(
            sink,
            "sink",
            errors=(
                (SinkHalted, 4, "halted"),
                (OffsetOutOfRange, 5, "offsets_out_of_range"),
                ((StoreError, StoppedWhileFailing), 3, "store_failed"),
            ),
            cleanup=store.close,
        )

    return _configured("sink", run)


def run_detector(settings: Settings) -> int:
    """``consumers/detector.py``: the detector alone (consumer group ``<ns>trail-detector``)."""

    def run() -> int:
        serve_metrics(settings, "detector")
        rules = rules_from_settings(settings)
        bootstrap = resolve_bootstrap(settings)
        store = open_trail_store(settings)
        worker = Detector(detector_config(settings, bootstrap), store, rules)
        return run_until_signal(
            worker,
            "detector",
            errors=((OffsetOutOfRange, 5, "offsets_out_of_range"), (TrailError, 3, "failed")),
            cleanup=store.close,
        )

    return _configured("detector", run)


def run_alert_sink(settings: Settings) -> int:
    """``consumers/alert_sink.py``: trail.alerts → alerts table (group ``<ns>trail-alert-sink``)."""

    def run() -> int:
        serve_metrics(settings, "alert_sink")
        bootstrap = resolve_bootstrap(settings)
        store = open_trail_store(settings)
        worker = AlertSink(alert_sink_config(settings, bootstrap), store)
        return run_until_signal(
            worker,
            "alert_sink",
            errors=((OffsetOutOfRange, 5, "offsets_out_of_range"), (TrailError, 3, "failed")),
            cleanup=store.close,
        )

    return _configured("alert_sink", run)


def run_trigger(settings: Settings) -> int:
    """``consumers/incident_trigger.py``: alerts → incidents (group ``<ns>trail-incident-trigger``)."""

    def run() -> int:
        serve_metrics(settings, "trigger")
        bootstrap = resolve_bootstrap(settings)
        store = open_trail_store(settings)
        try:
            service = incident_service(settings, store)
        except BaseException:
            store.close()
            raise
        trigger = build_trigger(settings, service, store, bootstrap)
        unwatch = watch_incidents(service)

        def cleanup() -> None:
            unwatch()
            service.shutdown()
            store.close()

        return run_until_signal(
            trigger,
            "trigger",
            errors=((OffsetOutOfRange, 5, "offsets_out_of_range"), (TrailError, 3, "failed")),
            cleanup=cleanup,
        )

    return _configured("trigger", run)


def run_sealer(settings: Settings) -> int:
    """``consumers/sealer.py``: the one process that signs checkpoints (others wait as standbys)."""

    def run() -> int:
        serve_metrics(settings, "sealer")
        bootstrap = resolve_bootstrap(settings)
        store = open_trail_store(settings)
        role = build_sealer_role(settings, store, bootstrap)
        return run_until_signal(
            role,
            "sealer",
            errors=((OffsetOutOfRange, 5, "offsets_out_of_range"), (TrailError, 3, "failed")),
            cleanup=store.close,
        )

    return _configured("sealer", run)
