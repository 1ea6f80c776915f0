"""The access store on PostgreSQL: the incident store's database and schema (production)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from trail.errors import ConfigError, Conflict, StoreError


class PostgresDatabase:
    kind = "postgres"

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        schema = parse_qs(u.query).get("schema", ["trail"])[0]
        if not schema.replace("_", "").isalnum():
            raise ConfigError("TRAIL_INCIDENT_STORE: ?schema= takes letters, digits and '_' only")
        self.schema = schema
        self._params: dict[str, Any] = {
            "dbname": (u.path or "/postgres").lstrip("/") or "postgres",
            "host": u.hostname or "127.0.0.1",
            "port": u.port or 5432,
            "user": unquote(u.username or "postgres"),
            "password": unquote(u.password or "") or None,
            "connect_timeout": 5,
            "autocommit": True,
        }
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._lock:
            self._connect()

    def _connect(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(**self._params, prepare_threshold=None)
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(f'SET search_path TO "{self.schema}"')
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot reach the access store (PostgreSQL {self._params['host']}:{self._params['port']}/"
                f"{self._params['dbname']}): {_first_line(exc)}"
            ) from None
        self._conn = conn
        return conn

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        import psycopg

        for attempt in (1, 2):
            conn = self._connect()
            try:
                return conn.execute(sql.replace("?", "%s"), tuple(params))
            except psycopg.errors.UniqueViolation:
                raise Conflict("already exists") from None
            except psycopg.OperationalError as exc:  # a dropped connection: reconnect once
                self._conn = None
                if attempt == 2:
                    raise StoreError(f"access store: {_first_line(exc)}") from None
            except psycopg.Error as exc:
                raise StoreError(f"access store: {_first_line(exc)}") from None
        raise StoreError("access store: unreachable")  # pragma: no cover

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._run(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            return int(self._run(sql, params).rowcount)

    def script(self, statements: Sequence[str]) -> None:
        with self._lock:
            for stmt in statements:
                self._run(stmt, ())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
