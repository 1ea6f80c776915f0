"""Run the sink as its own process: settings, logging, store, signals, loop.

SIGTERM and SIGINT ask the loop to flush the partial batch, commit and exit 0. A halt
(dead-letter ratio) exits 4; a store that stayed down until stop exits 3.
"""

from __future__ import annotations

from typing import Any

from trail.config import Settings, kafka_options, resolve_bootstrap
from trail.errors import StoreError
from trail.ingest.sink import Sink, SinkConfig, SinkHalted
from trail.logging import get_logger
from trail.roles import run_until_signal
from trail.storage.store import open_store

log = get_logger("trail.sink")


def build_sink(settings: Settings, **overrides: Any) -> Sink:
    from trail.integrity.sealer import make_sealer

    store = open_store(settings.store_dsn, settings.clickhouse_database)
    bootstrap = resolve_bootstrap(settings)
    overrides["consumer_options"] = {**kafka_options(settings), **overrides.get("consumer_options", {})}
    cfg = SinkConfig(
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
    return Sink(cfg, store, make_sealer(settings, store, bootstrap, kafka_options(settings)))


def run_sink(settings: Settings) -> int:
    sink = build_sink(settings)
    return run_until_signal(
        sink,
        "sink",
        log,
        errors=((SinkHalted, 4, "halted"), (StoreError, 3, "store_failed")),
        cleanup=sink.store.close,
    )
