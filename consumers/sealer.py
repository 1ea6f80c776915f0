"""Deployable sealer: the one process that signs checkpoints over what every sink stored. It reads
``trail.events`` (group ``trail-sealer``) and seals each event once the sinks' group committed past it.

Configuration comes from ``TRAIL_*`` variables (see ``trail config show``): TRAIL_CLICKHOUSE_DSN,
TRAIL_CHECKPOINT_KEY_FILE (the Ed25519 signing key), TRAIL_CHECKPOINT_SECONDS (how often),
TRAIL_KAFKA_BOOTSTRAP (checkpoints are also published to ``trail.checkpoints``) and
TRAIL_INCIDENT_STORE: with PostgreSQL there, the sealers share an advisory lock, so run two on
different hosts — one seals, the other takes over when it dies. Without it the lease is a lock
file in TRAIL_DATA_DIR (sealers on one host). Run the sinks with TRAIL_CHECKPOINT_SECONDS=0.

    python consumers/sealer.py
"""

from __future__ import annotations

import sys

from trail.wiring import role_main, run_sealer

if __name__ == "__main__":
    sys.exit(role_main("trail-sealer", run_sealer))
