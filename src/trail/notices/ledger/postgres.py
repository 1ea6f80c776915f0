"""The notice ledger in PostgreSQL: tables ``notice_*`` in a schema of their own (created when missing).

One autocommit connection (psycopg 3) shared by the ledger's threads; a batch is locked across
processes with a session-level advisory lock, which PostgreSQL drops with the connection of a
killed process.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from trail.notices.errors import BatchBusy, LedgerError
from trail.notices.ledger.backend import LedgerBackend

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresBackend(LedgerBackend):
    """One autocommit psycopg connection shared by the ledger's threads (serialised by a lock)."""

    ts_type = "TIMESTAMPTZ"

    def __init__(self, conninfo: str, schema: str) -> None:
        import psycopg

        if not _SCHEMA_RE.fullmatch(schema):
            raise LedgerError(f"schema name {schema!r} must be lowercase letters, digits and _ (max 63)")
        self.schema = schema
        self.batches = f"{schema}.notice_batches"
        self.deliveries = f"{schema}.notice_deliveries"
        self._psycopg = psycopg
        try:
            # No server-side prepared plans: a plan chosen while the table was empty stays bad.
            self._conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LedgerError(f"cannot open the notice ledger in PostgreSQL: {first}") from None
        self._mutex = threading.RLock()

    @contextlib.contextmanager
    def tx(self) -> Iterator[Any]:
        with self._mutex, self._conn.transaction(), self._conn.cursor() as cur:
            yield _PgCursor(cur)

    def execute1(self, sql: str, params: Sequence[Any]) -> None:
        with self._mutex:
            self._conn.execute(sql.replace("?", "%s"), params)  # one statement, committed on its own (autocommit)

    @contextlib.contextmanager
    def lock(self, batch_id: str) -> Iterator[None]:
        # Session-level: PostgreSQL drops it when the connection of a killed process goes away.
        key = f"trail.notices:{self.schema}:{batch_id}"
        with self._mutex:
            row = self._conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
        if not row or not row[0]:
            raise BatchBusy(f"notice batch {batch_id} is being run by another process")
        try:
            yield
        finally:
            with self._mutex:
                self._conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation)

    def ts(self, value: datetime) -> Any:
        return value

    def prepare(self, cur: Any) -> None:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")

    def close(self) -> None:
        self._conn.close()


class _PgCursor:
    """psycopg's cursor with sqlite3's ``?`` placeholders (our SQL holds no literal ``?``)."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _PgCursor:
        self._cur.execute(sql.replace("?", "%s"), params)
        return self

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self._cur.executemany(sql.replace("?", "%s"), params)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)
