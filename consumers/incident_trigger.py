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

from trail.wiring import role_main, run_trigger

if __name__ == "__main__":
    sys.exit(role_main("trail-incident-trigger", run_trigger))
