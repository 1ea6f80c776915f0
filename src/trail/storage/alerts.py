"""The SQL behind detection: the alerts table (the review queue reads it, the alert sink fills it),
the detector's checkpoints, and what a first start seeds its windows with.

One logical row per ``alert_id``; a review inserts the whole alert again with a higher
``version`` and the table keeps the highest, so reads use ``FINAL``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from trail.storage.store import Store

ALERT_COLUMNS: Final = (
    "alert_id",
    "rule",
    "severity",
    "actor_id",
    "actor_kind",
    "alert_key",
    "window_start",
    "window_end",
    "count",
    "records",
    "evidence",
    "articles",
    "summary",
    "trigger_event_id",
    "detected_at",
    "status",
    "reviewer",
    "reason",
    "reviewed_at",
    "version",
    "message",
)
_SELECT = ", ".join("toString(alert_id) AS alert_id" if c == "alert_id" else c for c in ALERT_COLUMNS)


def insert_alerts(store: Store, rows: Sequence[Sequence[Any]], *, timeout_s: float | None = None) -> None:
    """Rows in ``ALERT_COLUMNS`` order."""
    store.insert_rows("alerts", list(ALERT_COLUMNS), [list(r) for r in rows], timeout_s=timeout_s)


def select_alerts(
    store: Store,
    *,
    status: str | None = None,
    rule: str | None = None,
    severity: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The current state of the alerts that match, newest window first."""
    where = ["1"]
    params: dict[str, Any] = {"limit": int(limit)}
    for col, name, value in (
        ("status", "status", status),
        ("rule", "rule", rule),
        ("severity", "severity", severity),
        ("actor_id", "actor", actor),
    ):
        if value:
            where.append(f"{col} = {{{name}:String}}")
            params[name] = value
    if since is not None:
        where.append("window_end >= {since:DateTime64(6, 'UTC')}")
        params["since"] = since
    return store.query(
        f"SELECT {_SELECT} FROM {{db}}.alerts FINAL WHERE {' AND '.join(where)} "
        "ORDER BY window_start DESC, alert_id LIMIT {limit:UInt64}",
        params,
    )


def alert_by_id(store: Store, alert_id: str) -> dict[str, Any] | None:
    rows = store.query(f"SELECT {_SELECT} FROM {{db}}.alerts FINAL WHERE alert_id = {{id:String}}", {"id": alert_id})
    return rows[0] if rows else None


def published_alert_ids(store: Store) -> set[str]:
    """Every alert id the alerts table holds."""
    return {str(r["id"]) for r in store.query("SELECT DISTINCT toString(alert_id) AS id FROM {db}.alerts")}


# ------------------------------------------------------------------ the detector's own state
DETECTOR_CHECKPOINT_COLUMNS: Final = ("group_id", "saved_at", "offsets", "state", "log_id")


def save_detector_checkpoint(store: Store, row: Sequence[Any], *, timeout_s: float | None = None) -> None:
    """One checkpoint row in ``DETECTOR_CHECKPOINT_COLUMNS`` order."""
    store.insert_rows("detector_checkpoints", list(DETECTOR_CHECKPOINT_COLUMNS), [list(row)], timeout_s=timeout_s)


def latest_detector_checkpoint(store: Store, group_id: str) -> dict[str, Any] | None:
    rows = store.query(
        "SELECT offsets, state, log_id FROM {db}.detector_checkpoints WHERE group_id = {g:String} "
        "ORDER BY saved_at DESC LIMIT 1",
        {"g": group_id},
    )
    return rows[0] if rows else None


def newest_event_time(store: Store) -> datetime | None:
    """The newest ``occurred_at`` in the store, or None when it holds no event."""
    rows = store.query("SELECT max(occurred_at) AS last, count() AS n FROM {db}.events")
    if not rows or not rows[0]["n"]:
        return None
    last: datetime = rows[0]["last"]
    return last


def hourly_counts(store: Store, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per actor and hour: distinct events, with the actor's kind, role and department."""
    return store.query(
        "SELECT actor_id, any(actor_kind) AS actor_kind, any(actor_role) AS actor_role, "
        "any(actor_department) AS actor_department, toStartOfHour(occurred_at) AS hour, "
        "uniqExact(event_id) AS n FROM {db}.events "
        "WHERE occurred_at >= {since:DateTime64(6, 'UTC')} AND occurred_at < {until:DateTime64(6, 'UTC')} "
        "GROUP BY actor_id, hour",
        {"since": since, "until": until},
    )


def withdrawn_consents(store: Store) -> list[dict[str, Any]]:
    """Subject refs whose last consent event is a withdrawal (``ref``, ``withdrawn``, ``granted``)."""
    return store.query(
        "SELECT ref, maxIf(occurred_at, action = 'consent_withdraw') AS withdrawn, "
        "maxIf(occurred_at, action = 'consent_grant') AS granted FROM "
        "(SELECT arrayJoin(subject_refs) AS ref, occurred_at, action FROM {db}.events "
        " WHERE action IN ('consent_withdraw', 'consent_grant') AND outcome != 'denied') "
        "GROUP BY ref HAVING withdrawn > granted"
    )
