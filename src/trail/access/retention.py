"""Retention as an administrators' decision: requested by one, approved by another, checked
against the floor and every legal hold, and recorded in the trail at each step.

Refused, and nothing deleted, when:
- the approver is the requester (four eyes; names compared as principals);
- ``before`` is later than now minus the retention floor (``TRAIL_RETENTION_FLOOR_DAYS``,
  at least 183 days: Cybersecurity Law Art. 21(3));
- any event of a checkpoint to expire occurred within the floor (a clock that ran ahead);
- any checkpoint to expire holds events inside a legal hold: the explicit holds of
  ``trail holds`` and, automatically, the evidence window of every incident not yet closed.

Only then does :func:`trail.integrity.proof.apply_retention` delete whole sealed ranges and
sign the retention record that ``verify`` accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from trail.access.retention_classes import RetentionPolicy, class_block, load_policy
from trail.access.retention_classes import plan as retention_plan
from trail.access.store import AccessStore, parse_text_time
from trail.config import Settings
from trail.errors import Refused, UsageError
from trail.integrity.checkpoint import AppendOnlyLog, Checkpoint
from trail.integrity.keys import checkpoint_signing_key
from trail.integrity.proof import apply_retention
from trail.storage import integrity as sql
from trail.storage.store import Store

#: An automatic hold: (start, end, what) of something that must not expire.
Hold = tuple[datetime, datetime, str]


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class RetentionService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        access: AccessStore,
        *,
        incident_holds: Callable[[], list[Hold]] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.access = access
        self.incident_holds = incident_holds or (lambda: [])
        self.clock = clock or (lambda: datetime.now(UTC))
        self.policy: RetentionPolicy = load_policy(settings.retention_policy, settings.retention_floor_days)

    @property
    def floor(self) -> timedelta:
        return timedelta(days=self.settings.retention_floor_days)

    def holds(self) -> list[Hold]:
        out: list[Hold] = [
            (parse_text_time(h["start_at"]), parse_text_time(h["end_at"]), f"legal hold {h['id']} ({h['reason'][:80]})")
            for h in self.access.holds(active_only=True)
        ]
        out.extend(self.incident_holds())
        return out

    def check(self, before: datetime) -> list[Checkpoint]:
        """The checkpoints a retention up to ``before`` would expire; Refused if any rule says no."""
        before = _aware(before)
        limit = self.clock() - self.floor
        if before > limit:
            raise Refused(
                f"before: {before.isoformat()} is within the retention floor of {self.floor.days} days "
                f"(nothing after {limit.isoformat()} may be deleted; Cybersecurity Law Art. 21(3))"
            )
        done = {int(c["seq"]) for r in sql.retention_records(self.store) for c in json.loads(r)["checkpoints"]}
        cps = [Checkpoint.from_record(json.loads(r)) for r in sql.checkpoints_created_before(self.store, before)]
        cps = [c for c in cps if c.seq not in done]
        holds = self.holds()
        for cp in cps:
            for r in cp.ranges:
                span = sql.range_time_span(self.store, r.producer, r.first, r.last)
                if span is None:
                    continue
                oldest, newest = span
                if newest > limit:
                    raise Refused(
                        f"checkpoint {cp.seq} holds events that occurred after {limit.isoformat()}, within the "
                        f"retention floor of {self.floor.days} days; nothing was deleted"
                    )
                for start, end, what in holds:
                    if oldest < end and newest >= start:
                        raise Refused(f"checkpoint {cp.seq} holds events under {what}; nothing was deleted")
            kept = class_block(
                self.store, self.policy, [(r.producer, r.first, r.last) for r in cp.ranges], self.clock()
            )
            if kept:
                k = kept[0]
                raise Refused(
                    f"checkpoint {cp.seq} holds {k['events']} events of retention class {k['class']}, kept "
                    f"{k['days']} days until {k['kept_until']} ({k['source']}); nothing was deleted"
                )
        return cps

    def plan(self, before: datetime | None = None) -> dict[str, Any]:
        """What a retention up to ``before`` (default: now minus the floor) would expire and what
        keeps the rest (retention classes, holds, the floor); changes nothing."""
        now = self.clock()
        limit = now - self.floor
        at = _aware(before) if before is not None else limit
        out = retention_plan(self.store, self.policy, self.holds, min(at, limit), now)
        out["floor_days"] = self.floor.days
        if at > limit:
            out["note"] = f"--before is within the floor of {self.floor.days} days; planned up to {limit.isoformat()}"
        return out

    def request(self, before: datetime, reason: str, *, by: str) -> dict[str, Any]:
        if not reason.strip():
            raise UsageError("reason: say why (the retention policy that ended)")
        self.check(before)  # refuse early what could never be approved
        return self.access.add_retention_request(_aware(before), reason.strip()[:1000], by=by)

    def approve(self, rid: str, *, by: str) -> dict[str, Any]:
        req = self.access.get_retention_request(rid)
        if req["status"] == "pending" and req["requested_by"] != by:
            self.check(parse_text_time(req["before_at"]))  # the rules again, now (holds may have been added)
        req = self.access.claim_retention_request(rid, by=by)
        s = self.settings
        rec = apply_retention(
            self.store,
            checkpoint_signing_key(s),
            AppendOnlyLog(s.checkpoint_log_path),
            parse_text_time(req["before_at"]),
            f"{req['reason']} (requested by {req['requested_by']}, approved by {by}, request {rid})",
        )
        result: dict[str, Any] = {"applied": rec is not None, "record": rec.record() if rec else None}
        if rec is not None:
            result["events"] = sum(int(c["count"]) for c in rec.record()["checkpoints"])
        return {"request": self.access.finish_retention_request(rid, "executed", result), **result}


def incident_holds(service: Any) -> Callable[[], list[Hold]]:
    """For every incident not yet closed, a hold over its evidence: the span of the events its
    evidence covers and of the windows of the alerts it was opened from."""

    def parse(text: Any) -> datetime | None:
        if not text:
            return None
        return _aware(datetime.fromisoformat(str(text).replace("Z", "+00:00")))

    def holds() -> list[Hold]:
        out: list[Hold] = []
        for row in service.summaries():
            if row["status"] == "closed":
                continue
            view = service.view(row["ref"])
            ev = view.get("evidence") or {}
            times = [parse(ev.get("window_start")), parse(ev.get("window_end"))]
            for a in view.get("alerts") or []:
                times += [parse(a.get("window_start")), parse(a.get("window_end"))]
            known = [t for t in times if t is not None]
            if known:
                out.append((min(known), max(known), f"the evidence of open incident {row['ref']}"))
        return out

    return holds
