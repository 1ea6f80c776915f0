"""The notice ledger: who is to be told about an incident, on which channel, and where each stands.

Tables ``notice_batches`` and ``notice_deliveries`` in SQLite (:mod:`.sqlite`) or a
PostgreSQL schema (:mod:`.postgres`), both behind one interface (:mod:`.backend`), with the SQL
written once (:mod:`.notice_ledger`). One row per person and batch, keyed by subject ref, with
no contact details. Each delivery moves ``pending → sending → sent | failed | in_doubt`` (or
``skipped`` when another batch of the same incident already reached that person); ``sending``
is committed *before* the channel is called and the outcome right after, each in its own short
transaction, so a killed process loses at most the one notice in flight. A unique index over
(incident, subject ref) among ``sending``/``sent``/``in_doubt`` rows makes the database refuse
a second delivery to one person for one incident, whatever the batches.
"""

from __future__ import annotations

from pathlib import Path

from trail.notices.ledger.backend import LedgerBackend
from trail.notices.ledger.notice_ledger import STATUSES, BatchInfo, DeliveryRow, NoticeLedger

__all__ = ["STATUSES", "BatchInfo", "DeliveryRow", "LedgerBackend", "NoticeLedger", "open_ledger"]


def open_ledger(target: str | Path, *, schema: str = "trail_notices") -> NoticeLedger:
    """A ledger from a ``postgresql://`` URL (tables in ``schema``) or an SQLite file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return NoticeLedger.postgres(text, schema)
    return NoticeLedger.sqlite(text.removeprefix("sqlite://"))
