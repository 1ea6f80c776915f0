"""The access store on SQLite: the incident store's file in the data directory."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trail.errors import Conflict, StoreError
from trail.files import private_file


class SqliteDatabase:
    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            private_file(path)
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 10000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the access store {self.path}: {exc}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, tuple(params)).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"access store: {exc}") from None

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            try:
                return int(self._conn.execute(sql, tuple(params)).rowcount)
            except sqlite3.IntegrityError:
                raise Conflict("already exists") from None
            except sqlite3.Error as exc:
                raise StoreError(f"access store: {exc}") from None

    def script(self, statements: Sequence[str]) -> None:
        with self._lock:
            for stmt in statements:
                self._conn.execute(stmt)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
