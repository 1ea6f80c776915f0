"""The operations behind the command line and the HTTP API, over a store and an SDK client.

``trail up`` serves these through its API; when no stack runs, the CLI builds the same
object over the data directory (store opened in-process, events written straight to it
through the SDK, with the same validation, pseudonymisation, sequencing and hashing).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trail.config import Settings
from trail.errors import SpoolFullError, ValidationError
from trail.events.model import parse_timestamp
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import checkpoint_signing_key, load_public_key
from trail.integrity.proof import apply_retention, build_proof
from trail.integrity.sealer import make_sealer
from trail.integrity.verify import Verifier
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport
from trail.storage.store import Gap, Store, open_store
from trail.storage.writer import store_writer as store_writer

MAX_ERRORS_REPORTED = 1000


@dataclass
class EmitResult:
    accepted: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "rejected": self.rejected, "errors": self.errors}
        if not self.delivered:
            out["pending"] = "accepted events are spooled and will be delivered when the broker returns"
        return out


def emit_lines(
    client: Client,
    lines: Iterable[bytes | str],
    *,
    progress: Callable[[int], None] | None = None,
    flush_timeout: float = 60.0,
) -> EmitResult:
    """Record one event per JSON line; a bad line is reported by number and costs nothing else."""
    result = EmitResult()
    for number, line in enumerate(lines, start=1):
        if progress is not None:
            progress(number)
        text = line.strip() if isinstance(line, str) else line.strip().decode("utf-8", "replace")
        if not text:
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            _reject(result, number, f"not valid JSON (column {exc.colno})")
            continue
        except RecursionError:
            _reject(result, number, "JSON nested too deeply")
            continue
        if not isinstance(raw, dict):
            _reject(result, number, f"an audit event must be a JSON object, got {type(raw).__name__}")
            continue
        try:
            client.record_event(raw)
            result.accepted += 1
        except ValidationError as exc:
            _reject(result, number, str(exc))
        except SpoolFullError as exc:
            _reject(result, number, str(exc))
    result.delivered = client.flush(timeout=flush_timeout)
    return result


def _reject(result: EmitResult, line: int, error: str) -> None:
    result.rejected += 1
    if len(result.errors) < MAX_ERRORS_REPORTED:
        result.errors.append({"line": line, "error": error})


@dataclass
class QueryFilters:
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    category: str | None = None
    limit: int = 100

    def as_params(self) -> dict[str, str]:
        out: dict[str, str] = {"limit": str(self.limit)}
        if self.since:
            out["since"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        if self.action:
            out["action"] = self.action
        if self.category:
            out["category"] = self.category
        return out


def query(store: Store, kind: str, ref_or_id: str | None, f: QueryFilters) -> list[dict[str, Any]]:
    """``kind`` is events, subject (by subject_ref) or actor (by actor id)."""
    return store.find_events(
        since=f.since,
        until=f.until,
        action=f.action,
        category=f.category,
        actor_id=ref_or_id if kind == "actor" else None,
        subject_ref=ref_or_id if kind == "subject" else None,
        limit=f.limit,
    )


def gaps_as_dicts(gaps: list[Gap]) -> list[dict[str, Any]]:
    return [
        {
            "producer_id": g.producer_id,
            "first_missing": g.first_missing,
            "last_missing": g.last_missing,
            "missing": g.count,
        }
        for g in gaps
    ]


class StoreBackend:
    """The API's operations over a store and an SDK client (used by the stack and the CLI)."""

    def __init__(
        self,
        store: Store,
        client: Client,
        extra_health: Any = None,
        *,
        settings: Settings,
        seal: Any = None,
    ) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self.incidents: Any = None
        self.seal = seal
        self._extra_health = extra_health
        self._emit_lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "store": self.store.ping()}
        s = self.client.stats
        out["sdk"] = {"recorded": s.recorded, "sent": s.sent, "spooled": s.spooled, "last_error": s.last_error}
        if self._extra_health:
            out.update(self._extra_health())
        return out

    def emit(self, lines: list[bytes]) -> dict[str, Any]:
        with self._emit_lock:
            return emit_lines(self.client, lines).as_dict()

    def query(self, kind: str, key: str | None, filters: QueryFilters) -> list[dict[str, Any]]:
        return query(self.store, kind, key, filters)

    def gaps(self, producer: str | None) -> list[dict[str, Any]]:
        return gaps_as_dicts(self.store.gaps(producer))

    def counts(self) -> dict[str, Any]:
        return self.store.counts()

    # -- integrity --------------------------------------------------------------------
    def verify(self, since: int | None, strict: bool, public_key: str | None = None) -> dict[str, Any]:
        s = self.settings
        if self.seal is not None:
            self.seal()  # seal what is stored so far, so the report covers it
        report = Verifier(
            self.store,
            load_public_key(public_key or s.public_key_path),
            AppendOnlyLog(s.checkpoint_log_path),
            strict=strict,
        ).run(since)
        return {"summary": report.summary(), "findings": [f.as_dict() for f in report.findings]}

    def proof(self, event_id: str) -> dict[str, Any]:
        if self.seal is not None:
            self.seal()
        return build_proof(self.store, event_id)

    def retention(self, before: str, reason: str) -> dict[str, Any]:
        s = self.settings
        rec = apply_retention(
            self.store,
            checkpoint_signing_key(s),
            AppendOnlyLog(s.checkpoint_log_path),
            parse_timestamp("--before", before),
            reason,
        )
        return {"applied": rec is not None, "record": rec.record() if rec else None}


def direct_backend(settings: Settings, service: str = "trail-cli") -> StoreBackend:
    """Open the data directory in-process: the store, and an SDK client writing straight to it."""
    store = open_store(settings.store_dsn, settings.clickhouse_database)
    client = Client(
        service=service,
        transport=CallbackTransport(store_writer(store)),
        subject_key=settings.require_subject_key(),
        spool_dir=settings.effective_spool_dir,
        spool_max_bytes=settings.spool_max_bytes,
        environment=settings.mode,
    )
    return StoreBackend(store, client, settings=settings, seal=_direct_sealer(settings, store))


def _direct_sealer(settings: Settings, store: Store) -> Any:
    """Without a running sink, direct writes are sealed by this process (if sealing is on)."""
    sealer = make_sealer(settings, store, None)
    if sealer is None:
        return None

    def seal() -> None:
        sealer.refresh_from_store()  # everything stored beyond the sealed tips
        sealer.seal()

    return seal
