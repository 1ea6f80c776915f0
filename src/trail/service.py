"""The operations behind the command line and the HTTP API, over a store and an SDK client.

``trail up`` serves these through its API; when no stack runs, the CLI builds the same
object over the data directory (store opened in-process, events written straight to it
through the SDK, with the same validation, pseudonymisation, sequencing and hashing).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trail.errors import SpoolFullError, TrailError, ValidationError
from trail.ingest.decode import Rejected, decode
from trail.sdk.client import Client
from trail.storage.store import Gap, Store

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


def store_writer(store: Store) -> Callable[[bytes, list[bytes]], None]:
    """A transport function that writes SDK batches straight into the store."""

    def write(_key: bytes, values: list[bytes]) -> None:
        events = []
        for v in values:
            d = decode(v)
            if isinstance(d, Rejected):  # cannot happen for SDK output; refuse loudly if it does
                raise TrailError(f"internal: SDK produced an invalid event ({d.reason})")
            events.append(d)
        store.insert_events(events)

    return write


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
