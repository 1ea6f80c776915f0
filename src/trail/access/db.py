"""The one small interface both databases of the access store offer (SQLite and PostgreSQL).

Statements are written once with ``?`` placeholders; the PostgreSQL module turns them into
``%s``. Calls are serialised on one connection per process (the store is opened once and
shared), which keeps SQLite's single writer and PostgreSQL's one session simple and safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Database(Protocol):
    kind: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (in its own transaction); rows for a query, [] otherwise."""

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one changing statement; the number of rows it changed."""

    def script(self, statements: Sequence[str]) -> None:
        """Run the schema statements (idempotent)."""

    def close(self) -> None: ...
