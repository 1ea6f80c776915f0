"""The review queue: list, show, acknowledge and dismiss alerts (MIIT Art. 13(3): review bulk
export, copy and destruction).

A review stores the alert again with the new status, the reviewer, the reason and a higher
``version`` (the alerts table keeps the highest), and records an audit event through the SDK
with the reviewer as actor, so the trail shows who reviewed what, when and why.

Where alerts are read and written:

* :class:`StoreAlerts`: the alerts table (a ClickHouse server, or the local chDB directory
  when no ``trail up`` owns it);
* :class:`TopicAlerts`: ``trail.alerts`` itself, folded by ``alert_id`` (highest version
  wins). A review published there is stored by the alert sink like any alert, so the topic
  stays the complete log of every alert's state; used while ``trail up`` owns the store.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any, Final, Protocol

from trail.detect.alerts import Alert, alert_from_row, alert_row, rfc3339
from trail.detect.rules import ALERT_RULES, SEVERITIES
from trail.errors import TrailError, UsageError, ValidationError
from trail.events.model import ActorKind
from trail.ingest.topics import read_to_end
from trail.sdk.client import Client
from trail.storage import alerts as sql
from trail.storage.store import Store

DECISIONS: Final = {"ack": "acked", "dismiss": "dismissed"}
REVIEW_PURPOSE: Final = "alert review (MIIT Art. 13(3))"
MAX_REASON: Final = 1000


class AlertFilters:
    def __init__(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        severity: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> None:
        if rule and rule not in ALERT_RULES:
            raise UsageError(f"--rule: unknown rule (known: {', '.join(ALERT_RULES)})")
        if severity and severity not in SEVERITIES:
            raise UsageError(f"--severity: must be one of {', '.join(SEVERITIES)}")
        self.status, self.rule, self.severity, self.actor, self.since = status, rule, severity, actor, since
        self.limit = int(limit)

    def match(self, a: Alert) -> bool:
        return (
            (not self.status or a.status == self.status)
            and (not self.rule or a.rule == self.rule)
            and (not self.severity or a.severity == self.severity)
            and (not self.actor or a.actor == self.actor)
            and (self.since is None or (a.window_end >= rfc3339(self.since.timestamp())))
        )


class Alerts(Protocol):
    def list(self, f: AlertFilters) -> list[Alert]: ...

    def get(self, alert_id: str) -> Alert: ...

    def put(self, alert: Alert) -> None: ...


def _uuid(alert_id: str) -> str:
    try:
        return str(uuid.UUID(alert_id))
    except ValueError:
        raise UsageError("ALERT_ID: not a UUID (see `trail alerts list`)") from None


class StoreAlerts:
    """The alerts table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def list(self, f: AlertFilters) -> list[Alert]:
        rows = sql.select_alerts(
            self.store, status=f.status, rule=f.rule, severity=f.severity, actor=f.actor, since=f.since, limit=f.limit
        )
        return [alert_from_row(r) for r in rows]

    def get(self, alert_id: str) -> Alert:
        uid = _uuid(alert_id)
        row = sql.alert_by_id(self.store, uid)
        if row is None:
            raise UsageError(f"ALERT_ID: no alert {uid} (see `trail alerts list`)")
        return alert_from_row(row)

    def put(self, alert: Alert) -> None:
        sql.insert_alerts(self.store, [alert_row(alert)])


class TopicAlerts:
    """``trail.alerts`` read from the beginning and folded by alert id; reviews published to it."""

    def __init__(self, bootstrap: str, topic: str, *, options: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.options = options or {}

    def _fold(self) -> dict[str, Alert]:

        out: dict[str, Alert] = {}
        for rec in read_to_end(self.bootstrap, self.topic, options=self.options):
            try:
                a = Alert.from_bytes(rec.value or b"")
            except ValidationError:
                continue
            old = out.get(a.alert_id)
            if old is None or a.version >= old.version:
                out[a.alert_id] = a
        return out

    def list(self, f: AlertFilters) -> list[Alert]:
        alerts = sorted((a for a in self._fold().values() if f.match(a)), key=lambda a: a.alert_id)
        alerts.sort(key=lambda a: a.window_start, reverse=True)
        return alerts[: f.limit]

    def get(self, alert_id: str) -> Alert:
        uid = _uuid(alert_id)
        found = self._fold().get(uid)
        if found is None:
            raise UsageError(f"ALERT_ID: no alert {uid} (see `trail alerts list`)")
        return found

    def put(self, alert: Alert) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap.split(","),
            acks="all",
            enable_idempotence=True,
            bootstrap_timeout_ms=10_000,
            **self.options,
        )
        try:
            future = producer.send(self.topic, key=alert.alert_id.encode(), value=alert.to_bytes())
            producer.flush(timeout=30)
            if not future.is_done or future.failed():
                raise TrailError(f"{self.topic} did not acknowledge the review; run the command again")
        finally:
            producer.close(timeout=5)


class SplitAlerts:
    """Read from one place (the store), write to another (the topic the alert sink applies)."""

    def __init__(self, reader: Alerts, writer: Alerts) -> None:
        self.reader = reader
        self.writer = writer

    def list(self, f: AlertFilters) -> list[Alert]:
        return self.reader.list(f)

    def get(self, alert_id: str) -> Alert:
        return self.reader.get(alert_id)

    def put(self, alert: Alert) -> None:
        self.writer.put(alert)


def _alerts(where: Alerts | Store) -> Alerts:
    return StoreAlerts(where) if isinstance(where, Store) else where


def list_alerts(
    where: Alerts | Store,
    *,
    status: str | None = None,
    rule: str | None = None,
    severity: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Alert]:
    """Alerts, newest window first."""
    f = AlertFilters(status=status, rule=rule, severity=severity, actor=actor, since=since, limit=limit)
    return _alerts(where).list(f)


def get_alert(where: Alerts | Store, alert_id: str) -> Alert:
    return _alerts(where).get(alert_id)


def review_alert(
    where: Alerts | Store,
    client: Client,
    alert_id: str,
    decision: str,
    *,
    reviewer: str,
    reason: str,
    reviewer_kind: ActorKind = "staff",
) -> Alert:
    """Acknowledge (``ack``) or dismiss (``dismiss``) an alert; returns the stored alert.

    The audit event (actor = reviewer; action ``view`` for ack, ``use`` for dismiss; purpose
    "alert review (MIIT Art. 13(3))"; legal basis ``law``; attributes alert_id, decision,
    rule, reason) is recorded and delivered before the status changes, so a review is never
    stored unaudited.
    """
    alerts = _alerts(where)
    if decision not in DECISIONS:
        raise UsageError(f"decision: must be one of {', '.join(DECISIONS)}")
    if not reviewer or len(reviewer) > 256:
        raise UsageError("--reviewer: give the reviewer's staff id (1-256 characters)")
    reason = reason.strip()
    if not reason:
        raise UsageError("--reason: say why (it is kept with the alert and in the trail)")
    if len(reason) > MAX_REASON:
        raise UsageError(f"--reason: at most {MAX_REASON} characters")
    alert = alerts.get(alert_id)
    status = DECISIONS[decision]
    if alert.status == "dismissed":
        raise UsageError(f"ALERT_ID: alert {alert.alert_id} was already dismissed by {alert.reviewer}")
    client.record(
        actor={"kind": reviewer_kind, "id": reviewer},
        action="view" if decision == "ack" else "use",
        data_categories=["other"],
        record_count=0,
        purpose=REVIEW_PURPOSE,
        legal_basis="law",
        target={"system": "trail", "dataset": "alerts", "resource": alert.alert_id},
        attributes={"alert_id": alert.alert_id, "decision": decision, "rule": alert.rule, "reason": reason},
    )
    if not client.flush(timeout=30):
        raise TrailError("the review's audit event was not delivered (broker down?); the alert was not changed")
    now = time.time()
    alert.status = status
    alert.reviewer = reviewer
    alert.reason = reason
    alert.reviewed_at = rfc3339(now)
    alert.version = max(alert.version + 1, int(now * 1000))
    alerts.put(alert)
    return alert
