"""The notice ledger in SQLite: tables ``notice_*`` in a file (beside the incidents, by default).

WAL mode, as eventsourcing uses for the same file; a batch is locked across processes with an
``flock`` on a file beside the database, which goes away with a killed process.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from trail.notices.errors import BatchBusy, LedgerError
from trail.notices.ledger.backend import LedgerBackend


class SqliteBackend(LedgerBackend):
    """One SQLite connection shared by the ledger's threads (serialised by a lock)."""

    ts_type = "TEXT"
    batches = "notice_batches"
    deliveries = "notice_deliveries"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:" or "mode=memory" in self.path
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            if not self.memory:
                self._conn.execute("PRAGMA journal_mode=WAL")  # as eventsourcing uses for the same file
            # A killed process loses nothing committed in WAL mode; only a power cut could.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the notice ledger {self.path}: {exc}") from None
        self._mutex = threading.RLock()

    @contextlib.contextmanager
    def tx(self) -> Iterator[Any]:
        with self._mutex:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def execute1(self, sql: str, params: Sequence[Any]) -> None:
        with self._mutex:
            self._conn.execute(sql, params)  # one statement, committed on its own (autocommit)

    @contextlib.contextmanager
    def lock(self, batch_id: str) -> Iterator[None]:
        if self.memory:
            yield
            return
        with open(f"{self.path}.notice-{batch_id}.lock", "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BatchBusy(f"notice batch {batch_id} is being run by another process") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def prepare(self, cur: Any) -> None:
        """Nothing: the tables live in the file's main schema."""

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def ts(self, value: datetime) -> Any:
        return value.isoformat()

    def close(self) -> None:
        self._conn.close()
