"""Leases: which one of several sealer processes may seal.

Exactly one process signs checkpoints at a time, or the chain of checkpoints would fork. The
sealer role takes a lease before it seals and checks it before every checkpoint; a standby
waits for it. Both kinds end with the holder's process, so a killed sealer is replaced without
anyone having to clean up:

* :class:`FileLease` — ``flock`` on a file (processes on one host: the local stack, tests);
* :class:`PostgresLease` — a PostgreSQL session advisory lock on the incident store (a
  production deployment's sealers on several hosts). The server drops it when the holder's
  connection ends; the holder checks its session before each checkpoint, so a sealer cut off
  from PostgreSQL stops sealing instead of racing its successor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any, Protocol

import psycopg

from trail.logging import get_logger

log = get_logger("trail.lease")

#: The advisory-lock key of the sealer lease (a fixed 63-bit number: "trailsea" in ASCII).
SEALER_LOCK_KEY = 0x747261696C736561
#: The advisory-lock key of the scheduled verification ("trailver"): one API replica runs it.
VERIFY_SCHEDULE_LOCK_KEY = 0x747261696C766572


class Lease(Protocol):
    name: str

    def acquire(self) -> bool:
        """Take the lease if it is free (never blocks); True when held afterwards."""

    def held(self) -> bool:
        """Whether this process still holds it (checked before each checkpoint)."""

    def release(self) -> None: ...


class FileLease:
    """An exclusive ``flock`` on ``path``; the kernel releases it when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"file {path}"
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class PostgresLease:
    """A session advisory lock (``pg_try_advisory_lock``) on a connection of its own."""

    def __init__(self, conninfo: str, key: int = SEALER_LOCK_KEY) -> None:
        self.conninfo = conninfo
        self.key = key
        self.name = f"postgresql advisory lock {key}"
        self._conn: Any = None

    def acquire(self) -> bool:
        if self._conn is not None and self.held():
            return True
        self.release()
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
        except psycopg.Error as exc:
            log.warning("lease.unreachable", lease=self.name, error=type(exc).__name__)
            return False
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if not row or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
            ).fetchone()
        except psycopg.Error as exc:  # a dead session is a lost lease
            log.warning("lease.lost", lease=self.name, error=type(exc).__name__)
            self.release()
            return False
        return bool(row and row[0])

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


def shared_lease(incident_store: str | None, lock_file: Path, key: int) -> Lease:
    """A lease among processes: an advisory lock in the PostgreSQL incident store when there is
    one (processes on several hosts), else a lock file (one host)."""
    url = incident_store or ""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresLease(url.split("?", 1)[0], key)
    return FileLease(lock_file)
