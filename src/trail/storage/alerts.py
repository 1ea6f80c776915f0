"""The SQL behind alerts: the alerts table the review queue reads and the alert sink fills.

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
)
_SELECT = ", ".join("toString(alert_id) AS alert_id" if c == "alert_id" else c for c in ALERT_COLUMNS)


def insert_alerts(store: Store, rows: Sequence[Sequence[Any]]) -> None:
    """Rows in ``ALERT_COLUMNS`` order."""
    store.insert_rows("alerts", list(ALERT_COLUMNS), [list(r) for r in rows])


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
