"""The alert sink: ``trail.alerts`` → the alerts table, idempotent on ``alert_id``.

A small consumer with the sink's discipline: batch, write, then commit. Redelivered alerts
are inserted again with version 0; the table (ReplacingMergeTree on ``alert_id`` by
``version``) keeps one row per alert, and a review (a higher version) always wins.
A record that is not an alert is skipped with a warning (the detector never writes one).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from trail.detect.alerts import ALERT_COLUMNS, Alert, alert_row
from trail.errors import StoreError, ValidationError
from trail.ingest.topics import assign_all, close_quietly, consumer_options
from trail.logging import get_logger
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
    consumer_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlertSinkStats:
    stored: int = 0
    skipped: int = 0
    store_failures: int = 0


class AlertSink:
    def __init__(self, config: AlertSinkConfig, store: Store) -> None:
        self.cfg = config
        self.store = store
        self.stats = AlertSinkStats()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._consumer: Any = None

    def stop(self) -> None:
        self._stop.set()

    def _connect(self) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            **consumer_options(self.cfg.bootstrap, self.cfg.group_id, self.cfg.consumer_options)
        )
        assign_all(self._consumer, self.cfg.topic, self._stop)

    def run(self) -> AlertSinkStats:
        self._connect()
        self.ready.set()
        log.info("alert_sink.started", topic=self.cfg.topic, group=self.cfg.group_id)
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            close_quietly(log, "alert_sink.close_failed", lambda: self._consumer.close(autocommit=False))
        return self.stats

    def step(self) -> int:
        polled = self._consumer.poll(timeout_ms=int(self.cfg.batch_seconds * 1000))
        rows: list[list[Any]] = []
        offsets: dict[Any, int] = {}
        for tp, records in polled.items():
            for rec in records:
                try:
                    rows.append(alert_row(Alert.from_bytes(rec.value or b"")))
                except ValidationError as exc:
                    self.stats.skipped += 1
                    log.warning("alert_sink.skipped", partition=rec.partition, offset=rec.offset, reason=str(exc))
            if records:
                offsets[tp] = records[-1].offset + 1
        if rows:
            self._write(rows)
        if offsets:
            from kafka.structs import OffsetAndMetadata

            self._consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        return len(rows)

    def _write(self, rows: list[list[Any]]) -> None:
        delay = self.cfg.backoff_initial_s
        while True:
            try:
                self.store.insert_rows("alerts", list(ALERT_COLUMNS), rows)
                self.stats.stored += len(rows)
                return
            except StoreError as exc:
                self.stats.store_failures += 1
                log.error("alert_sink.store_unavailable", error=str(exc), retry_in_s=round(delay, 2))
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, self.cfg.backoff_max_s)
