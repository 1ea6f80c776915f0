"""Deployable API role: ``trail serve`` — the authenticated, audited HTTP API of DESIGN.md §9.

Configuration comes from ``TRAIL_*`` variables (see ``trail config show``): TRAIL_MODE=production,
TRAIL_KAFKA_BOOTSTRAP (and TRAIL_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_*), TRAIL_CLICKHOUSE_DSN,
TRAIL_INCIDENT_STORE (PostgreSQL: principals, tokens, holds and retention requests live there
too), TRAIL_SUBJECT_KEY_FILE, TRAIL_API_HOST/TRAIL_API_PORT and the TRAIL_API_* limits.

Writes: the access log and recorded events to ``trail.events``; alert reviews to
``trail.alerts``. Run it behind a TLS-terminating proxy (deploy/). SIGTERM finishes the
requests in flight, flushes and exits.

    python consumers/api.py
"""

from __future__ import annotations

import sys

from trail.api.serve import run_serve
from trail.wiring import role_main

if __name__ == "__main__":
    sys.exit(role_main("trail-api", run_serve))
