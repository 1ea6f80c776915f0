"""Deployable alert sink consumer: consumer group `<namespace>trail-alert-sink` on `trail.alerts`.

Configuration comes from ``TRAIL_*`` variables (see ``trail config show``):
TRAIL_KAFKA_BOOTSTRAP, TRAIL_CLICKHOUSE_DSN, TRAIL_CLICKHOUSE_DATABASE, TRAIL_NAMESPACE.

Writes: the `alerts` table (idempotent on alert_id; reviews are newer versions).
One instance is enough (alerts are few); a second only re-inserts the same rows.
SIGTERM finishes the batch, commits (and checkpoints) and exits 0.

    python consumers/alert_sink.py
"""

from __future__ import annotations

import sys

from trail.wiring import role_main, run_alert_sink

if __name__ == "__main__":
    sys.exit(role_main("trail-alert-sink", run_alert_sink))
