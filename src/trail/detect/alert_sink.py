"""The alert sink: ``trail.alerts`` → the alerts table, idempotent on ``alert_id``.

A :class:`~trail.ingest.batch.BatchStep` over the consumer loop, on every partition of
``trail.alerts`` (group ``<namespace>trail-alert-sink``): decode, insert (within
``write_timeout_s``, retried with capped backoff while the store fails), then commit.
Redelivered alerts are inserted again with version 0; the table (ReplacingMergeTree on
``alert_id`` by ``version``) keeps one row per alert, and a review (a higher version) always
wins. A record that is not an alert is skipped with a warning (the detector never writes one).

A group with no committed offset starts at the **earliest** alert: every alert must reach the
table (a new deployment, or a broker whose log started anew), and a redelivered one changes
nothing. A committed offset outside the log stops it with
:class:`~trail.ingest.errors.OffsetOutOfRange`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trail.detect.alerts import Alert, alert_row
from trail.errors import StoreError, ValidationError
from trail.ingest.batch import Batch, BatchStep
from trail.ingest.errors import WriteFailed, WriteTimeout
from trail.ingest.kafka import KafkaConsumerAdapter
from trail.ingest.processor import Processor
from trail.ingest.step import Record
from trail.ingest.timeout import TimeLimit
from trail.logging import get_logger
from trail.storage import alerts as sql
from trail.storage.store import Store

log = get_logger("trail.alert_sink")


@dataclass
class AlertSinkConfig:
    bootstrap: str
    topic: str
    group_id: str = "trail-alert-sink"
    batch_seconds: float = 0.2
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    #: The longest an insert may take before it counts as failed.
    write_timeout_s: float = 30.0
    consumer_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlertSinkStats:
    stored: int = 0
    skipped: int = 0
    store_failures: int = 0


class AlertSink(BatchStep[list[Any]]):
    def __init__(self, config: AlertSinkConfig, store: Store) -> None:
        super().__init__(batch_size=5000, batch_seconds=config.batch_seconds)
        self.cfg = config
        self.store = store
        self.stats = AlertSinkStats()
        self._writes = TimeLimit("alert-sink")
        self._loop = Processor(
            "alert_sink",
            lambda: KafkaConsumerAdapter(
                config.bootstrap, config.topic, config.group_id, assign_all=True, options=config.consumer_options
            ),
            self,
            no_offset="earliest",
            poll_timeout_s=min(0.1, config.batch_seconds) or 0.1,
            backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s,
        )
        self.ready = self._loop.ready

    def run(self) -> AlertSinkStats:
        self._loop.run()
        return self.stats

    def stop(self) -> None:
        """Ask the loop to write what it holds, commit and return (safe from a signal handler)."""
        self._loop.stop()

    def close(self) -> None:
        self._writes.close()

    def take(self, record: Record) -> list[Any] | None:
        try:
            return alert_row(Alert.from_bytes(record.value or b""))
        except ValidationError as exc:
            self.stats.skipped += 1
            log.warning("alert_sink.skipped", partition=record.partition, offset=record.offset, reason=str(exc))
            return None

    def write(self, batch: Batch[list[Any]]) -> None:
        rows = batch.all()
        if not rows:
            return
        timeout = self.cfg.write_timeout_s
        try:
            self._writes.run(
                lambda: sql.insert_alerts(self.store, rows, timeout_s=timeout),
                timeout,
                f"insert of {len(rows)} alerts",
            )
        except (StoreError, WriteTimeout) as exc:
            self.stats.store_failures += 1
            raise WriteFailed("store_unavailable", str(exc)) from exc
        self.stats.stored += len(rows)
