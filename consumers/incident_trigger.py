"""Deployable incident trigger: consumer group `<namespace>trail-incident-trigger` on `trail.alerts`.

Configuration comes from ``TRAIL_*`` variables (see ``trail config show``):
TRAIL_KAFKA_BOOTSTRAP, TRAIL_NAMESPACE, TRAIL_CLICKHOUSE_DSN (the evidence is computed in the
store), TRAIL_INCIDENT_STORE (``postgresql://user:pass@host:5432/db?schema=trail``),
TRAIL_PLAYBOOK, TRAIL_INCIDENT_SEVERITIES (default ``high,critical``).

Reads alerts; for each high or critical one, opens the incident of its correlated group
(same actor within 24 h) or attaches the alert to it, freezes the evidence from the store,
grades it with the playbook and starts the reporting clocks. Idempotent: redelivered alerts
and restarts never open a second incident. Run one per namespace. SIGTERM finishes the alert
in hand, commits and exits 0.

    python consumers/incident_trigger.py
"""

from __future__ import annotations

import sys

from trail.config import load_settings
from trail.errors import ConfigError
from trail.logging import configure
from trail.wiring import run_trigger


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"trail-incident-trigger: error: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    return run_trigger(settings)


if __name__ == "__main__":
    sys.exit(main())
