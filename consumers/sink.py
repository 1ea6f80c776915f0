"""Deployable sink consumer: consumer group ``trail-sink`` on ``trail.events`` → ClickHouse.

Configuration comes from ``TRAIL_*`` variables (see ``trail config show``):
TRAIL_KAFKA_BOOTSTRAP, TRAIL_CLICKHOUSE_DSN, TRAIL_CLICKHOUSE_DATABASE, TRAIL_NAMESPACE,
TRAIL_SINK_BATCH_SIZE, TRAIL_SINK_BATCH_SECONDS, TRAIL_SINK_MAX_DEADLETTER_RATIO.

Writes: the ``events`` table (and, through its materialised views, ``pages_by_subject`` and ``pages_by_actor``);
dead letters to ``trail.deadletter``. Run one or more; the group shares the partitions.
SIGTERM flushes the partial batch and commits.

    python consumers/sink.py
"""

from __future__ import annotations

import sys

from trail.wiring import role_main, run_sink

if __name__ == "__main__":
    sys.exit(role_main("trail-sink", run_sink))
