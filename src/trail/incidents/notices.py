"""Notices to every affected person (PIPL Art. 57): a resumable batch job with a ledger.

The incident engine plans a batch (who is to be told, on which channel) and runs it::

    with open_ledger(settings.data_dir / "incidents.db") as ledger:
        batch_id = plan_batch(ledger, incident_id, subject_refs, channel.name)
        summary = run_batch(ledger, batch_id, resolver=load_resolver(spec), channel=channel,
                            render=render_notice, on_result=record_event, stop=stop_event)

The ledger (tables ``notice_batches`` and ``notice_deliveries`` in SQLite or a PostgreSQL
schema) holds one row per person and batch, keyed by subject ref, with no contact details.
Each delivery moves ``pending → sending → sent | failed | in_doubt`` (or ``skipped`` when
another batch of the same incident already reached that person); ``sending`` is committed
*before* the channel is called and the outcome right after, each in its own short
transaction, so a killed process loses at most the one notice in flight:

- on the next run, a row still in ``sending`` becomes ``in_doubt`` — the notice may or may not
  have gone out — and is reported (``on_result`` and the summary) but not sent again unless
  the caller passes ``resend_in_doubt=True``. A resend is safe for receivers that
  de-duplicate: the notice id is the e-mail's Message-ID, the webhook's Idempotency-Key and
  the outbox file's name (the outbox skips a notice whose file exists);
- ``pending`` rows and ``failed`` rows whose failure was retryable are tried again, up to
  ``max_attempts`` times per run, in passes with a growing pause between them;
- a unique index over (incident, subject ref) among ``sending``/``sent``/``in_doubt`` rows
  makes the database refuse a second delivery to one person for one incident, whatever
  the batches.

One run per batch at a time: a second one gets :class:`BatchBusy` (an ``flock`` beside the
SQLite file, an advisory lock in PostgreSQL; both go away with a killed process).

Contacts are resolved in chunks (500 refs), so memory stays flat at 100,000 people.

Errors, beside those of :mod:`trail.incidents.delivery`::

    NoticeError
    ├── LedgerError     the ledger cannot be opened or used
    ├── BatchBusy       another process is running that batch
    └── RenderError     the notice template failed for one contact
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trail.incidents.delivery import (
    RESOLVE_CHUNK,
    Channel,
    ChannelError,
    Contact,
    ContactResolver,
    DeliveryFailed,
    NoticeError,
    OutgoingNotice,
    RenderedNotice,
    is_subject_ref,
    normalise_language,
    notice_id_for,
    resolve_checked,
)
from trail.logging import get_logger

__all__ = [
    "BatchBusy",
    "BatchInfo",
    "BatchSummary",
    "Channel",
    "ChannelError",
    "Contact",
    "ContactResolver",
    "DeliveryFailed",
    "DeliveryResult",
    "LedgerError",
    "NoticeError",
    "NoticeLedger",
    "OutgoingNotice",
    "RenderError",
    "RenderedNotice",
    "batch_status",
    "deliveries",
    "in_doubt_refs",
    "open_ledger",
    "plan_batch",
    "requeue_failed",
    "run_batch",
]

log = get_logger("trail.notices")

STATUSES = ("pending", "sending", "sent", "failed", "in_doubt", "skipped")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PLAN_CHUNK = 500
Render = Callable[[Contact], RenderedNotice]


class LedgerError(NoticeError):
    """The notice ledger cannot be opened or used."""


class BatchBusy(NoticeError):
    """Another process (or thread) is running this batch; wait for it or stop it first."""


class RenderError(NoticeError):
    """The notice template failed for one contact; nothing was sent to that person."""


# -- results --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one attempt, for the incident's audit history (no contact data)."""

    batch_id: str
    incident_id: str
    notice_id: str
    subject_ref: str
    channel: str
    status: str  # sent | failed | in_doubt | skipped
    attempt: int
    error: str | None
    retryable: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """Where a batch stands after a run; counts are read back from the ledger."""

    batch_id: str
    incident_id: str
    channel: str
    total: int
    sent: int
    failed: int  # all failed rows, including the retryable ones
    retryable: int  # failed rows a later run will try again
    in_doubt: int
    pending: int
    skipped: int
    interrupted: bool
    elapsed: float
    stopped_reason: str | None = None

    @property
    def finished(self) -> bool:
        """True when no person of the batch is left to try or to check."""
        return self.pending == 0 and self.retryable == 0 and self.in_doubt == 0


@dataclass(frozen=True, slots=True)
class BatchInfo:
    batch_id: str
    incident_id: str
    channel: str
    created_at: datetime
    total: int
    status: str  # open | done
    counts: Mapping[str, int] = field(default_factory=dict)  # per delivery status, plus "retryable"


@dataclass(frozen=True, slots=True)
class _Row:
    ref: str
    notice_id: str
    attempts: int


# -- the ledger -----------------------------------------------------------------------------
_DDL = (
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


class _Backend(ABC):
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


class _SqliteBackend(_Backend):
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

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def ts(self, value: datetime) -> Any:
        return value.isoformat()

    def close(self) -> None:
        self._conn.close()


class _PostgresBackend(_Backend):
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

    def __init__(self, backend: _Backend) -> None:
        self._b = backend
        self._held: set[str] = set()
        self._held_mutex = threading.Lock()
        try:
            with backend.tx() as cur:
                if isinstance(backend, _PostgresBackend):
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {backend.schema}")
                for ddl in _DDL:
                    cur.execute(backend.sql(ddl))
        except Exception as exc:  # noqa: BLE001  # sqlite3 or psycopg errors: either way the ledger is unusable
            backend.close()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LedgerError(f"cannot create the notice tables: {first}") from None

    @classmethod
    def sqlite(cls, path: Path | str) -> NoticeLedger:
        """Tables ``notice_*`` in an SQLite file (shared with other tables, e.g. ``DATA_DIR/incidents.db``)."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return cls(_SqliteBackend(path))

    @classmethod
    def postgres(cls, conninfo: str, schema: str = "trail_notices") -> NoticeLedger:
        """Tables ``notice_*`` in ``schema`` (created when missing) of a PostgreSQL database."""
        return cls(_PostgresBackend(conninfo, schema))

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
    def _recover(self, batch_id: str) -> list[_Row]:
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
        return [_Row(r[0], r[1], int(r[2])) for r in rows]

    def _page(self, batch_id: str, after: str, limit: int, in_doubt: bool) -> list[_Row]:
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
        return [_Row(r[0], r[1], int(r[2])) for r in rows]

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


def open_ledger(target: str | Path, *, schema: str = "trail_notices") -> NoticeLedger:
    """A ledger from a ``postgresql://`` URL (tables in ``schema``) or an SQLite file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return NoticeLedger.postgres(text, schema)
    return NoticeLedger.sqlite(text.removeprefix("sqlite://"))


# -- the public operations ------------------------------------------------------------------
def plan_batch(ledger: NoticeLedger, incident_id: str, subject_refs: Iterable[str], channel_name: str) -> str:
    """Record who is to be told about ``incident_id`` on ``channel_name``; returns the batch id.

    Idempotent: refs already sent, in progress or planned for this incident (on this channel,
    or anywhere unless they failed for good there) are left out; new refs join the incident's
    open batch on that channel if there is one. A ref that failed for good on another channel
    can be planned again here (e.g. no e-mail address → the SMS webhook). All or nothing: one
    transaction; a malformed ref plans nothing.
    """
    if not _ID_RE.fullmatch(incident_id):
        raise NoticeError("incident id must be 1-128 letters, digits or . _ : - (starting with a letter or digit)")
    if not _ID_RE.fullmatch(channel_name):
        raise NoticeError("channel name must be 1-128 letters, digits or . _ : -")
    batch_id, added, total = ledger._plan(incident_id, subject_refs, channel_name)
    log.info(
        "notices.batch_planned",
        batch_id=batch_id,
        incident_id=incident_id,
        channel=channel_name,
        added=added,
        total=total,
    )
    return batch_id


def batch_status(ledger: NoticeLedger, batch_id: str) -> BatchInfo:
    """A batch with its counts per delivery status (``trail incidents show``)."""
    info = ledger.batch(batch_id)
    if info is None:
        raise NoticeError(f"no notice batch {batch_id}")
    return info


def deliveries(ledger: NoticeLedger, incident_id: str) -> dict[str, int]:
    """Counts per delivery status over every batch of an incident (plus ``retryable``)."""
    return ledger.counts(incident_id=incident_id)


def in_doubt_refs(ledger: NoticeLedger, batch_id: str) -> list[str]:
    """Subject refs whose notice may or may not have gone out (to check in the outbox or mail log)."""
    return ledger.refs_in(batch_id, "in_doubt")


def requeue_failed(ledger: NoticeLedger, batch_id: str) -> int:
    """Make every failed delivery of a batch pending again (after fixing the cause); returns how many."""
    n = ledger._requeue_failed(batch_id)
    log.info("notices.failed_requeued", batch_id=batch_id, count=n)
    return n


class _Run:
    """One run of one batch: the state shared by its passes."""

    def __init__(
        self,
        ledger: NoticeLedger,
        info: BatchInfo,
        channel: Channel,
        resolver: ContactResolver,
        render: Render,
        on_result: Callable[[DeliveryResult], None] | None,
        progress: Callable[[int, int], None] | None,
        stop: threading.Event | None,
        max_consecutive_failures: int,
    ) -> None:
        self.ledger = ledger
        self.info = info
        self.channel = channel
        self.resolver = resolver
        self.render = render
        self.on_result = on_result
        self.progress = progress
        self.stop = stop
        self.max_consecutive_failures = max_consecutive_failures
        self.done = 0
        self.consecutive_failures = 0
        self.retry: list[_Row] = []
        self.interrupted = False
        self.stopped_reason: str | None = None

    def emit(
        self,
        row: _Row,
        status: str,
        attempt: int,
        error: str | None = None,
        retryable: bool = False,
        *,
        counted: bool = True,
    ) -> None:
        if counted and (status != "failed" or not retryable):
            self.done += 1
        if self.on_result is not None:
            self.on_result(
                DeliveryResult(
                    self.info.batch_id,
                    self.info.incident_id,
                    row.notice_id,
                    row.ref,
                    self.channel.name,
                    status,
                    attempt,
                    error,
                    retryable,
                    _now(),
                )
            )
        if counted and self.progress is not None:
            self.progress(self.done, self.info.total)

    def pause(self, seconds: float) -> bool:
        """Wait between passes; True when told to stop meanwhile."""
        if seconds > 0:
            if self.stop is not None:
                self.stop.wait(seconds)
            else:
                time.sleep(seconds)
        return self.should_stop()

    def should_stop(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            self.interrupted = True
            self.stopped_reason = self.stopped_reason or "stopped on request"
        return self.interrupted

    def chunk(self, rows: Sequence[_Row]) -> None:
        contacts = resolve_checked(self.resolver, [r.ref for r in rows])
        for row in rows:
            if self.should_stop():
                return
            self.one(row, contacts.get(row.ref))
            if self.interrupted:
                return

    def one(self, row: _Row, contact: Contact | None) -> None:
        attempt = row.attempts + 1
        batch_id = self.info.batch_id
        if contact is None:
            self.ledger._finish(batch_id, row.ref, "failed", attempt, "no contact", retryable=False)
            self.emit(row, "failed", attempt, "no contact")
            return
        notice = self.build(row, contact)
        if not self.ledger._start(batch_id, row.ref, attempt):
            error = "already delivered in another batch of this incident"
            self.ledger._finish(batch_id, row.ref, "skipped", row.attempts, error)
            self.emit(row, "skipped", row.attempts, error)
            return
        try:
            self.channel.send(notice)
        except ChannelError as exc:
            self.ledger._finish(batch_id, row.ref, "failed", attempt, exc.reason, retryable=True)
            self.emit(row, "failed", attempt, exc.reason, retryable=True)
            raise
        except DeliveryFailed as exc:
            self.ledger._finish(batch_id, row.ref, "failed", attempt, exc.reason, retryable=exc.retryable)
            log.debug(
                "notices.delivery_failed",
                batch_id=batch_id,
                ref=row.ref[:12],
                attempt=attempt,
                error=exc.reason,
                retryable=exc.retryable,
            )
            self.emit(row, "failed", attempt, exc.reason, retryable=exc.retryable)
            if exc.retryable:
                self.retry.append(_Row(row.ref, row.notice_id, attempt))
                self.consecutive_failures += 1
                if self.consecutive_failures >= self.max_consecutive_failures:
                    self.interrupted = True
                    self.stopped_reason = (
                        f"the channel failed {self.consecutive_failures} times in a row (last: {exc.reason}); "
                        "run the batch again when it works"
                    )
                    log.warning(
                        "notices.channel_failing",
                        batch_id=batch_id,
                        channel=self.channel.name,
                        failures=self.consecutive_failures,
                        error=exc.reason,
                    )
            return
        except BaseException as exc:
            # Unknown whether it went out: say so, then let the exception through.
            error = f"channel raised {type(exc).__name__}; delivery unknown"
            with contextlib.suppress(Exception):
                self.ledger._finish(batch_id, row.ref, "in_doubt", attempt, error)
                self.emit(row, "in_doubt", attempt, error)
            raise
        self.consecutive_failures = 0
        self.ledger._finish(batch_id, row.ref, "sent", attempt)
        self.emit(row, "sent", attempt)

    def build(self, row: _Row, contact: Contact) -> OutgoingNotice:
        try:
            rendered = self.render(contact)
            language = normalise_language(rendered.language)
        except Exception as exc:
            # The template's own error stays chained for its developer; this message holds no contact data.
            raise RenderError(
                f"rendering the notice for subject {row.ref[:12]}… failed: {type(exc).__name__}; nothing was sent to it"
            ) from exc
        return OutgoingNotice(
            notice_id=row.notice_id,
            incident_id=self.info.incident_id,
            subject_ref=row.ref,
            contact=contact,
            language=language,
            subject=rendered.subject,
            body_text=rendered.body_text,
            body_html=rendered.body_html,
        )


def run_batch(
    ledger: NoticeLedger,
    batch_id: str,
    *,
    resolver: ContactResolver,
    channel: Channel,
    render: Render,
    on_result: Callable[[DeliveryResult], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    max_attempts: int = 3,
    retry_backoff_s: float = 5.0,
    resend_in_doubt: bool = False,
    max_consecutive_failures: int = 50,
    chunk_size: int = RESOLVE_CHUNK,
) -> BatchSummary:
    """Deliver a planned batch, or what is left of it; safe to call again after any interruption.

    - Rows left in ``sending`` by a killed run become ``in_doubt``; they are reported through
      ``on_result`` and the summary, and sent again only with ``resend_in_doubt=True``.
    - ``pending`` rows and retryable failures are tried, each up to ``max_attempts`` times in
      this run; passes after the first wait ``retry_backoff_s``, doubling each time.
    - A ref the resolver does not know fails for good with ``no contact``.
    - ``on_result`` gets every attempt's outcome once the ledger holds it; ``progress(done,
      total)`` counts people settled (sent, failed for good, skipped, in doubt).
    - Setting ``stop`` finishes the notice in flight, records it and returns with
      ``interrupted=True``; so does a channel that failed ``max_consecutive_failures`` times in
      a row (with ``stopped_reason``). :class:`ChannelError`, :class:`ResolverError` and
      :class:`RenderError` are raised after the ledger is brought up to date.
    """
    if max_attempts < 1:
        raise NoticeError("max_attempts must be at least 1")
    info = batch_status(ledger, batch_id)
    if info.channel != channel.name:
        raise NoticeError(f"notice batch {batch_id} was planned for channel {info.channel}, not {channel.name}")
    started = time.monotonic()
    run = _Run(ledger, info, channel, resolver, render, on_result, progress, stop, max(1, max_consecutive_failures))
    with ledger._lock(batch_id):
        run.info = info = batch_status(ledger, batch_id)  # planning may have added people meanwhile
        recovered = ledger._recover(batch_id)
        if recovered:
            log.warning(
                "notices.in_doubt_found",
                batch_id=batch_id,
                count=len(recovered),
                hint="interrupted while sending; resend with resend_in_doubt=True after checking",
            )
        for row in recovered:
            run.emit(row, "in_doubt", row.attempts, "interrupted while sending; delivery unknown", counted=False)
        counts = ledger.counts(batch_id=batch_id)
        run.done = info.total - counts["pending"] - counts["retryable"] - (counts["in_doubt"] if resend_in_doubt else 0)
        try:
            after = ""
            while not run.should_stop():
                page = ledger._page(batch_id, after, chunk_size, resend_in_doubt)
                if not page:
                    break
                run.chunk(page)
                after = page[-1].ref
            for attempt_pass in range(2, max_attempts + 1):
                if not run.retry or run.should_stop():
                    break
                if run.pause(retry_backoff_s * 2 ** (attempt_pass - 2)):
                    break
                todo, run.retry = run.retry, []
                for start in range(0, len(todo), chunk_size):
                    run.chunk(todo[start : start + chunk_size])
                    if run.interrupted:
                        break
        finally:
            ledger._close_batch(batch_id)
    final = ledger.counts(batch_id=batch_id)
    summary = BatchSummary(
        batch_id=batch_id,
        incident_id=info.incident_id,
        channel=info.channel,
        total=sum(final[status] for status in STATUSES),
        sent=final["sent"],
        failed=final["failed"],
        retryable=final["retryable"],
        in_doubt=final["in_doubt"],
        pending=final["pending"],
        skipped=final["skipped"],
        interrupted=run.interrupted,
        elapsed=time.monotonic() - started,
        stopped_reason=run.stopped_reason,
    )
    log.info(
        "notices.batch_run",
        batch_id=batch_id,
        incident_id=info.incident_id,
        channel=info.channel,
        total=summary.total,
        sent=summary.sent,
        failed=summary.failed,
        retryable=summary.retryable,
        in_doubt=summary.in_doubt,
        pending=summary.pending,
        skipped=summary.skipped,
        interrupted=summary.interrupted,
        stopped_reason=summary.stopped_reason,
        elapsed_s=round(summary.elapsed, 3),
    )
    return summary
