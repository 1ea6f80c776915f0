"""The interface every ledger backend implements, and the tables it holds.

The ledger's SQL (:mod:`trail.notices.ledger.notice_ledger`) is written once, with ``?``
placeholders and ``{batches}``/``{deliveries}``/``{ts}`` for the backend's table names and
timestamp type; a backend supplies transactions, one-statement writes, a per-batch lock across
processes, and the few things that differ (how a unique violation looks, how a time is stored,
what must exist before the tables).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any

#: The tables and indexes, created when missing.
DDL = (
    """CREATE TABLE IF NOT EXISTS {batches} (
        batch_id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        created_at {ts} NOT NULL,
        total INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('open', 'done'))
    )""",
    "CREATE INDEX IF NOT EXISTS notice_batches_incident ON {batches} (incident_id, channel)",
    """CREATE TABLE IF NOT EXISTS {deliveries} (
        batch_id TEXT NOT NULL REFERENCES {batches} (batch_id),
        subject_ref TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        notice_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'in_doubt', 'skipped')),
        retryable INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at {ts} NOT NULL,
        PRIMARY KEY (batch_id, subject_ref)
    )""",
    "CREATE INDEX IF NOT EXISTS notice_deliveries_incident ON {deliveries} (incident_id, subject_ref)",
    # One person, one incident: at most one delivery that went, may have gone, or is going out.
    """CREATE UNIQUE INDEX IF NOT EXISTS notice_deliveries_once ON {deliveries} (incident_id, subject_ref)
        WHERE status IN ('sending', 'sent', 'in_doubt')""",
)


class LedgerBackend(ABC):
    """What differs between SQLite and PostgreSQL; SQL is written with ``?`` placeholders."""

    batches: str
    deliveries: str
    ts_type: str

    @abstractmethod
    def tx(self) -> contextlib.AbstractContextManager[Any]:
        """A cursor inside one committed-on-success transaction."""

    @abstractmethod
    def execute1(self, sql: str, params: Sequence[Any]) -> None:
        """One statement in a transaction of its own (one round trip)."""

    @abstractmethod
    def lock(self, batch_id: str) -> contextlib.AbstractContextManager[None]:
        """Exclude other processes from running the batch (raises BatchBusy)."""

    @abstractmethod
    def is_unique_violation(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def ts(self, value: datetime) -> Any: ...

    @abstractmethod
    def close(self) -> None: ...

    def sql(self, text: str) -> str:
        return text.format(batches=self.batches, deliveries=self.deliveries, ts=self.ts_type)

    @abstractmethod
    def prepare(self, cur: Any) -> None:
        """Create what the tables need before they are created (e.g. a schema)."""
