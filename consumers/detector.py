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

from trail.config import load_settings
from trail.errors import ConfigError
from trail.logging import configure
from trail.wiring import run_detector


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"trail-detector: error: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    return run_detector(settings)


if __name__ == "__main__":
    sys.exit(main())
