"""Requests as an eventsourcing application: SQLite beside the incidents locally, PostgreSQL in
production (the incident store's database, schema ``<schema>_requests``), views with their
clocks, and the check that a deletion or withdrawal closed as done is followed in the trail."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventsourcing.application import Application

from trail.config import Settings
from trail.errors import ConfigError, NotFound, ValidationError
from trail.incidents.application import _ensure_schema, persistence_env
from trail.rights.requests import (
    KINDS,
    SubjectRequest,
    clock,
    deadline_for,
    fmt,
    parse,
    parse_deadlines,
)
from trail.storage.store import Store

_OPENED_TOPIC = f"{SubjectRequest.__module__}:SubjectRequest.Opened"


class RequestApp(Application[uuid.UUID]):
    name = "requests"


class RequestService:
    def __init__(
        self,
        *,
        store_url: str | None,
        sqlite_path: str,
        deadlines: str = "",
        store: Store | None = None,
        clock_fn: Callable[[], datetime] | None = None,
    ) -> None:
        self.deadlines = parse_deadlines(deadlines)
        env = persistence_env(store_url, sqlite_path)
        if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
            env["POSTGRES_SCHEMA"] = env["POSTGRES_SCHEMA"] + "_requests"
            _ensure_schema(env)
        else:
            Path(env["SQLITE_DBNAME"]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.app = RequestApp(env=env)
        except Exception as exc:  # noqa: BLE001 - persistence errors of either backend
            raise ConfigError(f"cannot open the request store: {str(exc).splitlines()[0]}") from None
        self.store = store
        self.now = clock_fn or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None) -> RequestService:
        return cls(
            store_url=settings.incident_store,
            sqlite_path=str(settings.data_dir / "requests.db"),
            deadlines=settings.request_deadlines,
            store=store,
        )

    def shutdown(self) -> None:
        self.app.close()

    # ------------------------------------------------------------------ loading
    def ids(self) -> list[uuid.UUID]:
        out: list[uuid.UUID] = []
        start = 1
        while True:
            batch = self.app.recorder.select_notifications(start=start, limit=1000, topics=[_OPENED_TOPIC])
            out.extend(n.originator_id for n in batch)  # type: ignore[misc]
            if len(batch) < 1000:
                return out
            start = batch[-1].id + 1

    def get(self, ref: str) -> SubjectRequest:
        key = ref.strip().upper().removeprefix("REQ-")
        if len(key) != 8 or not all(c in "0123456789ABCDEF" for c in key):
            raise NotFound(f"{ref!r} is not a request reference (REQ-1A2B3C4D): see `trail requests list`")
        for rid in self.ids():
            if rid.hex.upper().startswith(key):
                agg: Any = self.app.repository.get(rid)
                assert isinstance(agg, SubjectRequest)
                return agg
        raise NotFound(f"no request {ref}: see `trail requests list`")

    # ------------------------------------------------------------------ commands
    def open(
        self, *, kind: str, subject_ref: str, by: str, received_at: str | None = None, channel: str = "", note: str = ""
    ) -> dict[str, Any]:
        if kind not in KINDS:
            raise ValidationError("kind", f"one of {', '.join(KINDS)}")
        now = self.now()
        try:
            received = parse(received_at) if received_at else now
        except ValueError:
            raise ValidationError("received_at", "an RFC 3339 time like 2026-11-30T09:00:00Z") from None
        if received > now:
            raise ValidationError("received_at", "is in the future: give when the request arrived")
        with self._lock:
            req = SubjectRequest(
                id=uuid.uuid4(),
                kind=kind,
                subject_ref=subject_ref,
                received_at=fmt(received),
                channel=channel.strip()[:200],
                note=note.strip()[:2000],
                deadline=deadline_for(kind, received, self.deadlines),
                at=fmt(now),
                by=by,
            )
            self.app.save(req)
        return self.view(req)

    def _change(self, ref: str, fn: Callable[[SubjectRequest, str], None]) -> dict[str, Any]:
        with self._lock:
            req = self.get(ref)
            fn(req, fmt(self.now()))
            self.app.save(req)
        return self.view(req)

    def respond(self, ref: str, summary: str, documents: list[str], *, by: str) -> dict[str, Any]:
        return self._change(ref, lambda r, at: r.respond(summary, documents, at=at, by=by))

    def refuse(self, ref: str, reason: str, *, by: str) -> dict[str, Any]:
        return self._change(ref, lambda r, at: r.refuse(reason, at=at, by=by))

    def close(self, ref: str, outcome: str, note: str, *, by: str) -> dict[str, Any]:
        return self._change(ref, lambda r, at: r.close(outcome, note, at=at, by=by))

    # ------------------------------------------------------------------ views
    def view(self, ref: str | SubjectRequest, *, now: datetime | None = None) -> dict[str, Any]:
        req = ref if isinstance(ref, SubjectRequest) else self.get(ref)
        c = clock(req.deadline["due_at"], req.answered_at, now or self.now())
        out: dict[str, Any] = {
            "ref": req.ref,
            "kind": req.kind,
            "subject_ref": req.subject_ref,
            "status": req.status,
            "received_at": req.received_at,
            "channel": req.channel,
            "note": req.note,
            "opened_at": req.opened_at,
            "opened_by": req.opened_by,
            "deadline": dict(req.deadline),
            "due_at": req.deadline["due_at"],
            "clock": c["state"],
            "due_soon": c["due_soon"],
            "overdue": c["overdue"],
            "answered_at": req.answered_at,
            "responses": list(req.responses),
            "documents": list(req.documents),
            "refusal": req.refusal,
            "outcome": req.outcome,
        }
        out["expected_events"] = self._expected(req)
        return out

    def _expected(self, req: SubjectRequest) -> dict[str, Any] | None:
        """For a deletion or withdrawal closed as done: whether the trail holds the matching event
        for the person since the request arrived (``seen``), or still waits for it (``missing``)."""
        if not req.outcome or not req.outcome.get("expects"):
            return None
        actions = list(req.outcome["expects"])
        seen: list[dict[str, str]] = []
        if self.store is not None:
            since = parse(req.received_at)
            for action in actions:
                rows = self.store.find_events(subject_ref=req.subject_ref, action=action, since=since, limit=1)
                seen.extend({"action": r["action"], "event_id": r["event_id"], "at": r["occurred_at"]} for r in rows)
        return {"actions": actions, "state": "seen" if seen else "missing", "events": seen}

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        out = []
        for rid in self.ids():
            v = self.view(self.app.repository.get(rid))
            if status and v["status"] != status:
                continue
            out.append(v)
        return out

    def summary(self, since: datetime, until: datetime) -> dict[str, Any]:
        """For the compliance report: requests received in the period and their timeliness."""
        items = [v for v in self.list() if since <= parse(v["received_at"]) < until]
        return {
            "total": len(items),
            "by_kind": {
                k: sum(1 for v in items if v["kind"] == k) for k in KINDS if any(v["kind"] == k for v in items)
            },
            "on_time": sum(1 for v in items if v["clock"] == "answered_on_time"),
            "late": sum(1 for v in items if v["clock"] == "answered_late"),
            "overdue": sum(1 for v in items if v["overdue"]),
            "open": sum(1 for v in items if v["status"] in ("open", "responded")),
            "refused": sum(1 for v in items if v["status"] == "refused"),
            "expected_events_missing": sum(
                1 for v in items if v["expected_events"] and v["expected_events"]["state"] == "missing"
            ),
            "items": [
                {k: v[k] for k in ("ref", "kind", "status", "received_at", "due_at", "answered_at", "clock")}
                for v in items
            ],
            "query": "trail requests list (requests received in the period; clock: answered on time, late, "
            "overdue; refused with reasons)",
        }
