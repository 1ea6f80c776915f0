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

from trail.config import load_settings
from trail.errors import ConfigError
from trail.logging import configure
from trail.wiring import run_alert_sink


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"trail-alert-sink: error: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    return run_alert_sink(settings)


if __name__ == "__main__":
    sys.exit(main())
