"""Running one deployable role (sink, detector, alert sink, incident trigger) as a process.

Every role stops the same way: SIGTERM or SIGINT asks the worker to stop (it finishes what it
holds, commits and returns); an error the role expects becomes a logged line and an exit
status; whatever the role opened is closed on the way out.

The sink's process (``consumers/sink.py``, ``trail sink``) is wired here: settings, store,
sealer, loop. Exit status: 0 clean stop, 3 the store stayed down until stop, 4 halted
(dead-letter ratio), 5 an offset out of range (see the log line for what to do).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trail.config import Settings
    from trail.ingest.sink import Sink


def run_until_signal(
    worker: Any,
    role: str,
    log: Any,
    *,
    errors: Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str]],
    cleanup: Callable[[], None],
) -> int:
    """Run ``worker.run()`` until it returns (0) or raises one of ``errors``: ``(exception
    types, exit status, log event suffix)``, logged as ``<role>.<suffix>``."""

    def on_signal(signum: int, _frame: Any) -> None:
        log.info(f"{role}.signal", signal=signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
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


def build_sink(settings: Settings, **overrides: Any) -> Sink:
    """The sink of ``settings``, sealing what it stores when sealing is on."""
    from trail.ingest.sink import Sink, SinkConfig
    from trail.integrity.sealer import make_sealer
    from trail.local.stack import resolve_bootstrap
    from trail.storage.store import open_store

    store = open_store(settings.store_dsn, settings.clickhouse_database)
    bootstrap = resolve_bootstrap(settings)
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
    return Sink(cfg, store, make_sealer(settings, store, bootstrap))


def run_sink(settings: Settings) -> int:
    """``consumers/sink.py``: the sink alone until SIGTERM/SIGINT (see the exit statuses above)."""
    from trail.errors import StoreError
    from trail.ingest.errors import OffsetOutOfRange, StoppedWhileFailing
    from trail.ingest.sink import SinkHalted
    from trail.logging import get_logger

    sink = build_sink(settings)
    return run_until_signal(
        sink,
        "sink",
        get_logger("trail.sink"),
        errors=(
            (SinkHalted, 4, "halted"),
            (OffsetOutOfRange, 5, "offsets_out_of_range"),
            ((StoreError, StoppedWhileFailing), 3, "store_failed"),
        ),
        cleanup=sink.store.close,
    )
