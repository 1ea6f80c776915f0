"""Every Prometheus metric trail exposes, defined once, with its meaning.

Roles record into these (the consumer loop, the sink, the detector, the API); each role's
process serves them on ``TRAIL_METRICS_PORT`` (``trail sink|detect|alert-sink|trigger``) or,
for the API and ``trail up``, at ``GET /metrics`` of the API. Names follow Prometheus
conventions: ``trail_`` prefix, base units (seconds, bytes), ``_total`` for counters.

Gauges whose value lives elsewhere (open incidents, overdue obligations, the spool's size) are
read when scraped, through callbacks a role registers with :func:`watch`, so a scrape never sees
a stale copy and nothing polls in the background.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_log = structlog.get_logger("trail.metrics")

#: The registry every trail metric lives in (not the library's global one, so that a process
#: embedding trail exposes exactly trail's metrics).
REGISTRY: Final = CollectorRegistry(auto_describe=True)

_BATCH_BUCKETS = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 50000)
_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CONSUMER_LAG: Final = Gauge(
    "trail_consumer_lag_records",
    "Records in the partition not yet read by the role's consumer (high-water mark minus next offset).",
    ["role", "topic", "partition"],
    registry=REGISTRY,
)
BATCH_RECORDS: Final = Histogram(
    "trail_consumer_batch_records",
    "Records handed to the role's step in one poll.",
    ["role"],
    buckets=_BATCH_BUCKETS,
    registry=REGISTRY,
)
STEP_SECONDS: Final = Histogram(
    "trail_consumer_step_seconds",
    "Time of one round of the role's work after a poll (write, commit, publish).",
    ["role"],
    buckets=_SECONDS_BUCKETS,
    registry=REGISTRY,
)
WRITE_FAILURES: Final = Counter(
    "trail_consumer_write_failures_total",
    "Failed write attempts of a role (retried with backoff; nothing is committed past them).",
    ["role"],
    registry=REGISTRY,
)
EVENTS_STORED: Final = Counter(
    "trail_events_stored_total",
    "Events the sink inserted into the store (redeliveries included).",
    registry=REGISTRY,
)
INSERT_SECONDS: Final = Histogram(
    "trail_store_insert_seconds",
    "Time of one insert of a batch of events into the store.",
    buckets=_SECONDS_BUCKETS,
    registry=REGISTRY,
)
DEAD_LETTERS: Final = Counter(
    "trail_dead_letters_total",
    "Records the sink refused and sent to the dead-letter topic, by the field that failed.",
    ["reason"],
    registry=REGISTRY,
)
ALERTS_RAISED: Final = Counter(
    "trail_alerts_raised_total",
    "Alerts the streaming detector raised, by rule and severity.",
    ["rule", "severity"],
    registry=REGISTRY,
)
API_REQUESTS: Final = Counter(
    "trail_api_requests_total",
    "API and console requests, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
API_SECONDS: Final = Histogram(
    "trail_api_request_seconds",
    "Time to answer one API request (until the response starts), by route template.",
    ["route"],
    buckets=_SECONDS_BUCKETS,
    registry=REGISTRY,
)
SEALER_UNSEALED: Final = Gauge(
    "trail_sealer_unsealed_events",
    "Events the leading sealer has read from the log and not yet sealed (waiting for the sinks, or behind a gap).",
    registry=REGISTRY,
)
CHECKPOINTS_SIGNED: Final = Counter(
    "trail_checkpoints_signed_total",
    "Checkpoints this process signed as the leading sealer.",
    registry=REGISTRY,
)
SEALER_LEADING: Final = Gauge(
    "trail_sealer_leading",
    "1 while this process holds the sealer lease and seals, 0 while it waits as a standby.",
    registry=REGISTRY,
)

VERIFICATIONS: Final = Counter(
    "trail_verifications_total",
    "Verifications this process ran (API, console, compliance report), by result: intact or findings.",
    ["result"],
    registry=REGISTRY,
)
VERIFY_FINDINGS: Final = Gauge(
    "trail_verify_findings",
    "Findings of this process's last verification, by kind (every kind 0 when the trail was intact).",
    ["kind"],
    registry=REGISTRY,
)
VERIFY_LAST_RUN: Final = Gauge(
    "trail_verify_last_run_timestamp_seconds",
    "When this process's last verification finished (Unix time); alert when it grows old.",
    registry=REGISTRY,
)
VERIFY_SECONDS: Final = Gauge(
    "trail_verify_last_duration_seconds",
    "How long this process's last verification took.",
    registry=REGISTRY,
)

#: Gauges read at scrape time: name -> (help, labels).
WATCHED: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "trail_incidents_open": ("Incidents not yet closed, by grade.", ("grade",)),
    "trail_obligations_overdue": ("Obligations past their deadline and not yet met, by kind.", ("obligation",)),
    "trail_spool_bytes": ("Bytes in the SDK's local spool waiting for the broker.", ("service",)),
}

Reading = Callable[[], Iterable[tuple[tuple[str, ...], float]]]


class _Watched(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[str, list[Reading]] = {}

    def add(self, name: str, read: Reading) -> None:
        if name not in WATCHED:
            raise KeyError(f"{name} is not one of trail's watched metrics: {sorted(WATCHED)}")
        with self._lock:
            self._readers.setdefault(name, []).append(read)

    def remove(self, name: str, read: Reading) -> None:
        with self._lock:
            readers = self._readers.get(name, [])
            if read in readers:
                readers.remove(read)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        for name, (text, labels) in WATCHED.items():
            yield GaugeMetricFamily(name, text, labels=list(labels))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            readers = {k: list(v) for k, v in self._readers.items()}
        for name, (text, labels) in WATCHED.items():
            family = GaugeMetricFamily(name, text, labels=list(labels))
            for read in readers.get(name, []):
                try:
                    values = list(read())
                except Exception as exc:  # noqa: BLE001  # a failing source must not break the scrape
                    _log.warning("metrics.source_failed", metric=name, error=type(exc).__name__)
                    continue
                for label_values, value in values:
                    family.add_metric(list(label_values), value)
            yield family


_WATCHED: Final = _Watched()
REGISTRY.register(_WATCHED)


def watch(name: str, read: Reading) -> Callable[[], None]:
    """Register ``read`` as a source of the watched gauge ``name``; returns its removal."""
    _WATCHED.add(name, read)
    return lambda: _WATCHED.remove(name, read)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` of :data:`REGISTRY` on ``addr:port`` from a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
