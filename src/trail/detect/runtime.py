"""Detection inside one process: the detector and the alert sink in threads (``trail up``).

    handle = start_detection(settings, store, bootstrap)
    ...
    handle.stop()          # finish the batch, checkpoint, commit, close

The deployable processes (``consumers/detector.py``, ``consumers/alert_sink.py``) run the
same objects, one per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from trail.detect.alert_sink import AlertSink, AlertSinkConfig
from trail.detect.consumer import Detector, DetectorConfig
from trail.detect.rules import RuleSet, rules_from_settings
from trail.errors import TrailError
from trail.logging import get_logger
from trail.storage.store import Store

log = get_logger("trail.detect")


def _security(settings: Any) -> dict[str, Any]:
    from trail.config import Settings, kafka_options

    return kafka_options(settings) if isinstance(settings, Settings) else {}


def detector_config(settings: Any, bootstrap: str, **overrides: Any) -> DetectorConfig:
    """The detector's configuration from the settings (TRAIL_DETECTOR_CHECKPOINT_SECONDS, when
    the settings have it, else 300 s)."""
    overrides.setdefault("checkpoint_seconds", float(getattr(settings, "detector_checkpoint_seconds", 300.0)))
    overrides["consumer_options"] = {**_security(settings), **overrides.get("consumer_options", {})}
    return DetectorConfig(
        bootstrap=bootstrap,
        topic=settings.topic("events"),
        alerts_topic=settings.topic("alerts"),
        group_id=f"{settings.namespace}trail-detector",
        **overrides,
    )


def alert_sink_config(settings: Any, bootstrap: str, **overrides: Any) -> AlertSinkConfig:
    overrides["consumer_options"] = {**_security(settings), **overrides.get("consumer_options", {})}
    return AlertSinkConfig(
        bootstrap=bootstrap,
        topic=settings.topic("alerts"),
        group_id=f"{settings.namespace}trail-alert-sink",
        **overrides,
    )


@dataclass
class _Runner:
    name: str
    target: Any
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.target.run()
        except BaseException as exc:  # reported through health and on stop
            self.error = exc
            log.exception("detect.thread_failed", thread=self.name, internal=True)

    @property
    def alive(self) -> bool:
        return bool(self.thread and self.thread.is_alive())


@dataclass
class DetectionHandle:
    detector: Detector
    alert_sink: AlertSink
    runners: list[_Runner] = field(default_factory=list)

    def wait_ready(self, timeout: float = 60.0) -> None:
        readies = (self.detector.ready, self.alert_sink.ready)
        for r, ready in zip(self.runners, readies, strict=True):
            if not ready.wait(timeout):
                raise TrailError(f"{r.name} did not start within {timeout:.0f} s: {r.error or 'no error'}")

    def health(self) -> dict[str, Any]:
        d = self.detector.stats
        return {
            "detector": {
                "running": self.runners[0].alive,
                "consumed": d.consumed,
                "malformed": d.malformed,
                "alerts": d.published,
                "error": str(self.runners[0].error) if self.runners[0].error else None,
            },
            "alert_sink": {
                "running": self.runners[1].alive,
                "stored": self.alert_sink.stats.stored,
                "error": str(self.runners[1].error) if self.runners[1].error else None,
            },
        }

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the detector first (checkpoint, commit), then the alert sink."""
        self.detector.stop()
        if self.runners and self.runners[0].thread is not None:
            self.runners[0].thread.join(timeout)
        self.alert_sink.stop()
        if len(self.runners) > 1 and self.runners[1].thread is not None:
            self.runners[1].thread.join(timeout)


def start_detection(
    settings: Any,
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
    handle = DetectionHandle(detector, sink, [_Runner("trail-detector", detector), _Runner("trail-alert-sink", sink)])
    for r in handle.runners:
        r.start()
    if wait:
        handle.wait_ready()
    return handle


def _run_role(settings: Any, role: str) -> int:
    """Run the detector or the alert sink as its own process until SIGTERM/SIGINT.

    Exit status: 0 clean stop; 2 bad configuration; 3 the store or broker failed.
    """
    from trail.config import resolve_bootstrap
    from trail.errors import ConfigError, StoreError
    from trail.roles import run_until_signal
    from trail.storage.store import open_store

    try:
        rules = rules_from_settings(settings)
        bootstrap = resolve_bootstrap(settings)
    except ConfigError as exc:
        log.error(f"{role}.config_invalid", reason=str(exc))
        return 2
    store = open_store(settings.store_dsn, settings.clickhouse_database)
    worker: Detector | AlertSink
    if role == "detector":
        worker = Detector(detector_config(settings, bootstrap), store, rules)
    else:
        worker = AlertSink(alert_sink_config(settings, bootstrap), store)

    return run_until_signal(worker, role, log, errors=(((StoreError, TrailError), 3, "failed"),), cleanup=store.close)


def run_detector(settings: Any) -> int:
    """``consumers/detector.py``: the detector alone (consumer group ``<ns>trail-detector``)."""
    return _run_role(settings, "detector")


def run_alert_sink(settings: Any) -> int:
    """``consumers/alert_sink.py``: trail.alerts → alerts table (group ``<ns>trail-alert-sink``)."""
    return _run_role(settings, "alert_sink")
