"""Deployable sink consumer: consumer group ``trail-sink`` on ``trail.events`` → ClickHouse.

Configuration comes from ``TRAIL_*`` variables (see ``trail config show``):
TRAIL_KAFKA_BOOTSTRAP, TRAIL_CLICKHOUSE_DSN, TRAIL_CLICKHOUSE_DATABASE, TRAIL_NAMESPACE,
TRAIL_SINK_BATCH_SIZE, TRAIL_SINK_BATCH_SECONDS, TRAIL_SINK_MAX_DEADLETTER_RATIO.

Writes: the ``events`` table (and, through its materialised view, ``subject_index``);
dead letters to ``trail.deadletter``. Run one or more; the group shares the partitions.
SIGTERM flushes the partial batch and commits.

    python consumers/sink.py
"""

from __future__ import annotations

import sys

from trail.config import load_settings
from trail.errors import ConfigError
from trail.logging import configure
from trail.wiring import run_sink


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"trail-sink: error: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    return run_sink(settings)


if __name__ == "__main__":
    sys.exit(main())
