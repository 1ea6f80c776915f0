"""The alert a detector publishes to ``trail.alerts`` and the alerts table stores.

``alert_id`` is derived from what the alert is about, never from when it was computed:
UUIDv5 over ``rule | key | window_start``. A live run, a replay of the same history and a
replay after a crash therefore name the same alert the same way, which is what lets the
detector refuse to publish an alert twice and the alerts table de-duplicate.

Alerts carry no personal data: actor ids (staff numbers, service names), event ids and, for
subject-keyed rules, nothing about the subject beyond the event ids that touched it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from trail.errors import ValidationError
from trail.messages import from_dict
from trail.storage.alerts import ALERT_COLUMNS as ALERT_COLUMNS

#: Namespace of alert ids (a fixed, random UUID: changing it renames every alert).
ALERT_NAMESPACE: Final = uuid.UUID("6f0e5c1a-3a57-4d6b-9a57-2f1d8e0c7b44")
MAX_EVIDENCE: Final = 100
STATUSES: Final = ("open", "acked", "dismissed")


def alert_id_for(rule: str, key: str, window_start: float) -> str:
    """The deterministic id of the alert of ``rule`` about ``key`` in the window starting at
    ``window_start`` (event time, epoch seconds)."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{rule}|{key}|{rfc3339(window_start)}"))


def rfc3339(epoch_s: float) -> str:
    """RFC 3339, UTC, microseconds (as ``occurred_at``)."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> float:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass
class Alert:
    """One finding of one rule about one key (actor, IP or operation) in one event-time window."""

    alert_id: str
    rule: str
    severity: str
    actor: str
    actor_kind: str
    key: str
    window_start: str
    window_end: str
    count: int
    records: int
    evidence: list[str]
    articles: list[str]
    summary: str
    #: The event whose arrival completed the finding (for latency measurement and triage).
    trigger_event_id: str
    status: str = "open"
    #: Wall-clock time at which the detector published the alert (not part of the finding).
    detected_at: str = ""
    reviewer: str = ""
    reason: str = ""
    reviewed_at: str = ""
    version: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    #: The summary as a message code and its parameters (trail.messages), to say it in Chinese too.
    message: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def finding(self) -> tuple[str, str, str, str, str, str]:
        """What must be equal between a live run and a replay: id, rule, actor, key and window."""
        return (self.alert_id, self.rule, self.actor, self.key, self.window_start, self.window_end)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Alert:
        try:
            return cls(
                alert_id=str(uuid.UUID(str(raw["alert_id"]))),
                rule=str(raw["rule"]),
                severity=str(raw["severity"]),
                actor=str(raw["actor"]),
                actor_kind=str(raw.get("actor_kind", "")),
                key=str(raw.get("key", "")),
                window_start=str(raw["window_start"]),
                window_end=str(raw["window_end"]),
                count=int(raw["count"]),
                records=int(raw.get("records", 0)),
                evidence=[str(e) for e in raw.get("evidence", [])][:MAX_EVIDENCE],
                articles=[str(a) for a in raw.get("articles", [])],
                summary=str(raw.get("summary", "")),
                trigger_event_id=str(raw.get("trigger_event_id", "")),
                status=str(raw.get("status", "open")),
                detected_at=str(raw.get("detected_at", "")),
                reviewer=str(raw.get("reviewer", "")),
                reason=str(raw.get("reason", "")),
                reviewed_at=str(raw.get("reviewed_at", "")),
                version=int(raw.get("version", 0)),
                extra={str(k): str(v) for k, v in dict(raw.get("extra", {})).items()},
                message=_message(raw.get("message")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError("alert", f"not a trail alert ({type(exc).__name__}: {str(exc)[:60]})") from None

    @classmethod
    def from_bytes(cls, value: bytes) -> Alert:
        try:
            raw = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValidationError("alert", "not valid UTF-8 JSON") from None
        if not isinstance(raw, dict):
            raise ValidationError("alert", "must be a JSON object")
        return cls.from_dict(raw)

    def public(self) -> dict[str, Any]:
        """The form ``trail alerts list --format json`` prints."""
        out = self.to_dict()
        out.pop("version", None)
        return out


#: Columns of the alerts table (migration 0005) in writer order.


def _ts(text: str) -> datetime:
    if not text:
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromtimestamp(parse_rfc3339(text), UTC)


def _message(raw: Any) -> dict[str, Any]:
    m = from_dict(raw)
    return m.as_dict() if m is not None else {}


def alert_row(a: Alert) -> list[Any]:
    """A row of the alerts table."""
    return [
        a.alert_id,
        a.rule,
        a.severity,
        a.actor,
        a.actor_kind,
        a.key,
        _ts(a.window_start),
        _ts(a.window_end),
        a.count,
        a.records,
        a.evidence,
        a.articles,
        a.summary,
        a.trigger_event_id,
        _ts(a.detected_at),
        a.status,
        a.reviewer,
        a.reason,
        _ts(a.reviewed_at),
        a.version,
        json.dumps(a.message, ensure_ascii=False, sort_keys=True) if a.message else "",
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, datetime):
        if value.timestamp() == 0:
            return ""
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def alert_from_row(row: dict[str, Any]) -> Alert:
    return Alert(
        alert_id=str(row["alert_id"]),
        rule=row["rule"],
        severity=row["severity"],
        actor=row["actor_id"],
        actor_kind=row["actor_kind"],
        key=row["alert_key"],
        window_start=_fmt(row["window_start"]),
        window_end=_fmt(row["window_end"]),
        count=int(row["count"]),
        records=int(row["records"]),
        evidence=list(row["evidence"]),
        articles=list(row["articles"]),
        summary=row["summary"],
        trigger_event_id=row["trigger_event_id"],
        status=row["status"],
        detected_at=_fmt(row["detected_at"]),
        reviewer=row["reviewer"],
        reason=row["reason"],
        reviewed_at=_fmt(row["reviewed_at"]),
        version=int(row["version"]),
        message=_message(_json(row.get("message", ""))),
    )


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if text else None
    except (TypeError, ValueError):
        return None
