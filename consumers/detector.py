"""Deployable detector consumer: consumer group `<namespace>trail-detector` on `trail.events`.

Configuration comes from ``TRAIL_*`` variables (see ``trail config show``):
TRAIL_KAFKA_BOOTSTRAP, TRAIL_CLICKHOUSE_DSN, TRAIL_CLICKHOUSE_DATABASE, TRAIL_NAMESPACE,
TRAIL_RULES_FILE, TRAIL_TIMEZONE, TRAIL_APPROVED_JOBS.

Writes: alerts to `trail.alerts` (keyed by alert_id), checkpoints to the `detector_checkpoints` table.
Run exactly one per namespace: its windows span every partition (it assigns itself all of
them). Restart it under a supervisor; on start it reloads its checkpoint and never republishes.
SIGTERM finishes the batch, commits (and checkpoints) and exits 0.

    python consumers/detector.py
"""

from __future__ import annotations

import sys

from trail.wiring import role_main, run_detector

if __name__ == "__main__":
    sys.exit(role_main("trail-detector", run_detector))
