"""The notice ledger: batches and per-person deliveries, the same SQL over SQLite or PostgreSQL.

Methods starting with ``_`` are the steps of :mod:`trail.notices.runner` (plan, recover, page,
start, finish, close a batch); the public ones read.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trail.files import private_file
from trail.notices.errors import BatchBusy, LedgerError, NoticeError
from trail.notices.ledger.backend import DDL, LedgerBackend
from trail.notices.ledger.postgres import PostgresBackend
from trail.notices.ledger.sqlite import SqliteBackend
from trail.notices.model import is_subject_ref, notice_id_for

STATUSES = ("pending", "sending", "sent", "failed", "in_doubt", "skipped")
_PLAN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A batch: incident, channel, when it was planned, how many people and where each stands."""

    batch_id: str
    incident_id: str
    channel: str
    created_at: datetime
    total: int
    status: str  # open | done
    counts: Mapping[str, int] = field(default_factory=dict)  # per delivery status, plus "retryable"


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery still to be tried: the person's ref, the notice id and the attempts so far."""

    ref: str
    notice_id: str
    attempts: int


def _now() -> datetime:
    return datetime.now(UTC)


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


class NoticeLedger:
    """Batches and per-person deliveries of notices, in SQLite or PostgreSQL.

    Build one with :meth:`sqlite`, :meth:`postgres` or :func:`open_ledger`. Holds no contact
    details: a delivery row has the subject ref, the notice id, a status, attempts and a
    sanitised error. The tables are created when missing.
    """

    def __init__(self, backend: LedgerBackend) -> None:
        self._b = backend
        self._held: set[str] = set()
        self._held_mutex = threading.Lock()
        try:
            with backend.tx() as cur:
                backend.prepare(cur)
                for ddl in DDL:
                    cur.execute(backend.sql(ddl))
        except Exception as exc:  # noqa: BLE001  # sqlite3 or psycopg errors: either way the ledger is unusable
            backend.close()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LedgerError(f"cannot create the notice tables: {first}") from None

    @classmethod
    def sqlite(cls, path: Path | str) -> NoticeLedger:
        """Tables ``notice_*`` in an SQLite file (shared with other tables, e.g. ``DATA_DIR/incidents.db``)."""
        if str(path) != ":memory:":
            private_file(path)
        return cls(SqliteBackend(path))

    @classmethod
    def postgres(cls, conninfo: str, schema: str = "trail_notices") -> NoticeLedger:
        """Tables ``notice_*`` in ``schema`` (created when missing) of a PostgreSQL database."""
        return cls(PostgresBackend(conninfo, schema))

    def close(self) -> None:
        self._b.close()

    def __enter__(self) -> NoticeLedger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------
    def batch(self, batch_id: str) -> BatchInfo | None:
        with self._b.tx() as cur:
            row = cur.execute(
                self._b.sql(
                    "SELECT batch_id, incident_id, channel, created_at, total, status FROM {batches} WHERE batch_id = ?"
                ),
                (batch_id,),
            ).fetchone()
            if row is None:
                return None
            counts = self._counts(cur, "batch_id = ?", (batch_id,))
        return BatchInfo(row[0], row[1], row[2], _as_datetime(row[3]), int(row[4]), row[5], counts)

    def batches_of(self, incident_id: str) -> list[BatchInfo]:
        with self._b.tx() as cur:
            ids = [
                r[0]
                for r in cur.execute(
                    self._b.sql("SELECT batch_id FROM {batches} WHERE incident_id = ? ORDER BY created_at, batch_id"),
                    (incident_id,),
                ).fetchall()
            ]
        return [b for b in (self.batch(i) for i in ids) if b is not None]

    def counts(self, *, batch_id: str | None = None, incident_id: str | None = None) -> dict[str, int]:
        where, params = ("batch_id = ?", (batch_id,)) if batch_id is not None else ("incident_id = ?", (incident_id,))
        with self._b.tx() as cur:
            return self._counts(cur, where, params)

    def _counts(self, cur: Any, where: str, params: Sequence[Any]) -> dict[str, int]:
        out = dict.fromkeys((*STATUSES, "retryable"), 0)
        rows = cur.execute(
            self._b.sql(
                f"SELECT status, retryable, count(*) FROM {{deliveries}} WHERE {where} GROUP BY status, retryable"
            ),
            params,
        ).fetchall()
        for status, retryable, n in rows:
            out[status] += int(n)
            if status == "failed" and retryable:
                out["retryable"] += int(n)
        return out

    def refs_in(self, batch_id: str, status: str) -> list[str]:
        with self._b.tx() as cur:
            rows = cur.execute(
                self._b.sql(
                    "SELECT subject_ref FROM {deliveries} WHERE batch_id = ? AND status = ? ORDER BY subject_ref"
                ),
                (batch_id, status),
            ).fetchall()
        return [r[0] for r in rows]

    # -- planning ---------------------------------------------------------------------------
    def _plan(self, incident_id: str, refs: Iterable[str], channel: str) -> tuple[str, int, int]:
        now = self._b.ts(_now())
        with self._b.tx() as cur:
            row = cur.execute(
                self._b.sql(
                    "SELECT batch_id FROM {batches} WHERE incident_id = ? AND channel = ? AND status = 'open' "
                    "ORDER BY created_at DESC LIMIT 1"
                ),
                (incident_id, channel),
            ).fetchone()
            batch_id: str | None = row[0] if row else None
            added = 0
            chunk: list[str] = []
            # Everyone already planned, in progress or reached for this incident, read once: a
            # query per chunk degrades to a scan per chunk while the new rows are unanalysed.
            taken = {
                r[0]
                for r in cur.execute(
                    self._b.sql(
                        "SELECT d.subject_ref FROM {deliveries} d JOIN {batches} b ON b.batch_id = d.batch_id "
                        "WHERE d.incident_id = ? AND ("
                        "d.status IN ('pending', 'sending', 'sent', 'in_doubt') "
                        "OR (d.status = 'failed' AND d.retryable = 1) OR b.channel = ?)"
                    ),
                    (incident_id, channel),
                ).fetchall()
            }

            def flush() -> None:
                nonlocal batch_id, added
                new = [r for r in dict.fromkeys(chunk) if r not in taken]
                taken.update(new)
                chunk.clear()
                if not new:
                    return
                if batch_id is None:
                    batch_id = uuid.uuid4().hex
                    cur.execute(
                        self._b.sql(
                            "INSERT INTO {batches} (batch_id, incident_id, channel, created_at, total, status) "
                            "VALUES (?, ?, ?, ?, 0, 'open')"
                        ),
                        (batch_id, incident_id, channel, now),
                    )
                cur.executemany(
                    self._b.sql(
                        "INSERT INTO {deliveries} (batch_id, subject_ref, incident_id, notice_id, status, "
                        "updated_at) VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING"
                    ),
                    [(batch_id, r, incident_id, notice_id_for(incident_id, r), now) for r in new],
                )
                added += len(new)

            for position, ref in enumerate(refs):
                if not is_subject_ref(ref):
                    raise NoticeError(
                        f"subject ref #{position} is not 64 lowercase hex characters (a trail subject ref); "
                        "nothing was planned"
                    )
                chunk.append(ref)
                if len(chunk) >= _PLAN_CHUNK:
                    flush()
            if chunk:
                flush()
            if batch_id is None:
                latest = cur.execute(
                    self._b.sql(
                        "SELECT batch_id FROM {batches} WHERE incident_id = ? AND channel = ? "
                        "ORDER BY created_at DESC LIMIT 1"
                    ),
                    (incident_id, channel),
                ).fetchone()
                if latest:
                    batch_id = str(latest[0])
                else:
                    batch_id = uuid.uuid4().hex
                    cur.execute(
                        self._b.sql(
                            "INSERT INTO {batches} (batch_id, incident_id, channel, created_at, total, status) "
                            "VALUES (?, ?, ?, ?, 0, 'done')"
                        ),
                        (batch_id, incident_id, channel, now),
                    )
            else:
                cur.execute(
                    self._b.sql(
                        "UPDATE {batches} SET status = 'open', total = "
                        "(SELECT count(*) FROM {deliveries} WHERE batch_id = ?) WHERE batch_id = ?"
                    ),
                    (batch_id, batch_id),
                )
            total = cur.execute(self._b.sql("SELECT total FROM {batches} WHERE batch_id = ?"), (batch_id,)).fetchone()[
                0
            ]
        return batch_id, added, int(total)

    # -- running ----------------------------------------------------------------------------
    def _recover(self, batch_id: str) -> list[DeliveryRow]:
        """Rows left in ``sending`` by a process that died: they become ``in_doubt``."""
        with self._b.tx() as cur:
            rows = cur.execute(
                self._b.sql(
                    "SELECT subject_ref, notice_id, attempts FROM {deliveries} "
                    "WHERE batch_id = ? AND status = 'sending' ORDER BY subject_ref"
                ),
                (batch_id,),
            ).fetchall()
            if rows:
                cur.execute(
                    self._b.sql(
                        "UPDATE {deliveries} SET status = 'in_doubt', retryable = 0, "
                        "last_error = 'interrupted while sending; delivery unknown', updated_at = ? "
                        "WHERE batch_id = ? AND status = 'sending'"
                    ),
                    (self._b.ts(_now()), batch_id),
                )
        return [DeliveryRow(r[0], r[1], int(r[2])) for r in rows]

    def _page(self, batch_id: str, after: str, limit: int, in_doubt: bool) -> list[DeliveryRow]:
        extra = " OR status = 'in_doubt'" if in_doubt else ""
        with self._b.tx() as cur:
            rows = cur.execute(
                self._b.sql(
                    "SELECT subject_ref, notice_id, attempts FROM {deliveries} WHERE batch_id = ? "
                    "AND subject_ref > ? AND (status = 'pending' OR (status = 'failed' AND retryable = 1)"
                    f"{extra}) ORDER BY subject_ref LIMIT ?"
                ),
                (batch_id, after, limit),
            ).fetchall()
        return [DeliveryRow(r[0], r[1], int(r[2])) for r in rows]

    def _start(self, batch_id: str, ref: str, attempt: int) -> bool:
        """Commit ``sending`` before the channel is called; False if the person was reached elsewhere."""
        try:
            self._b.execute1(
                self._b.sql(
                    "UPDATE {deliveries} SET status = 'sending', attempts = ?, updated_at = ? "
                    "WHERE batch_id = ? AND subject_ref = ?"
                ),
                (attempt, self._b.ts(_now()), batch_id, ref),
            )
        except Exception as exc:
            if self._b.is_unique_violation(exc):
                return False
            raise
        return True

    def _finish(
        self, batch_id: str, ref: str, status: str, attempt: int, error: str | None = None, retryable: bool = False
    ) -> None:
        self._b.execute1(
            self._b.sql(
                "UPDATE {deliveries} SET status = ?, attempts = ?, retryable = ?, last_error = ?, "
                "updated_at = ? WHERE batch_id = ? AND subject_ref = ?"
            ),
            (status, attempt, 1 if retryable else 0, error, self._b.ts(_now()), batch_id, ref),
        )

    def _close_batch(self, batch_id: str) -> None:
        with self._b.tx() as cur:
            c = self._counts(cur, "batch_id = ?", (batch_id,))
            done = c["pending"] == 0 and c["sending"] == 0 and c["in_doubt"] == 0 and c["retryable"] == 0
            cur.execute(
                self._b.sql("UPDATE {batches} SET status = ? WHERE batch_id = ?"),
                ("done" if done else "open", batch_id),
            )

    def _requeue_failed(self, batch_id: str) -> int:
        with self._b.tx() as cur:
            cur.execute(
                self._b.sql(
                    "UPDATE {deliveries} SET status = 'pending', retryable = 0, updated_at = ? "
                    "WHERE batch_id = ? AND status = 'failed'"
                ),
                (self._b.ts(_now()), batch_id),
            )
            n = cur.rowcount
            if n:
                cur.execute(self._b.sql("UPDATE {batches} SET status = 'open' WHERE batch_id = ?"), (batch_id,))
        return int(n)

    @contextlib.contextmanager
    def _lock(self, batch_id: str) -> Iterator[None]:
        with self._held_mutex:
            if batch_id in self._held:
                raise BatchBusy(f"notice batch {batch_id} is already running in this process")
            self._held.add(batch_id)
        try:
            with self._b.lock(batch_id):
                yield
        finally:
            with self._held_mutex:
                self._held.discard(batch_id)

    def dump(self) -> list[tuple[Any, ...]]:
        """Every row of both tables (for tests and support: it holds no contact data)."""
        with self._b.tx() as cur:
            out = [tuple(r) for r in cur.execute(self._b.sql("SELECT * FROM {batches}")).fetchall()]
            out += [tuple(r) for r in cur.execute(self._b.sql("SELECT * FROM {deliveries}")).fetchall()]
        return out
