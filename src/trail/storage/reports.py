"""The SQL behind the compliance report: each figure is one query an auditor can rerun.

Every query is built as text with the period's bounds and the database written in as
literals (they are trail's own formatted timestamps and validated names, never user text),
run exactly as shown, and returned with its rows, so the report carries the query that produced
each figure. Events are counted once per ``event_id`` (``LIMIT 1 BY event_id``: a redelivered
event is one operation); the access log (``source_service = 'trail-access'``) is counted apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from trail.events.model import SENSITIVE_CATEGORIES
from trail.storage.store import Store

ACCESS_SERVICE: Final = "trail-access"
BULK_RULES: Final = ("bulk_export", "bulk_destruction")
_SENSITIVE: Final = "[" + ", ".join(f"'{c}'" for c in sorted(SENSITIVE_CATEGORIES)) + "]"


def _ts(dt: datetime) -> str:
    return "toDateTime64('" + dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + "', 6, 'UTC')"


class PeriodQueries:
    """The figures of one period, each as ``{"value" or "rows", "query"}``."""

    def __init__(self, store: Store, since: datetime, until: datetime) -> None:
        self.store = store
        self.since, self.until = since, until
        self.db = store.db

    @property
    def _period(self) -> str:
        return f"occurred_at >= {_ts(self.since)} AND occurred_at < {_ts(self.until)}"

    @property
    def events(self) -> str:
        """The period's operations, once each, without the access log."""
        return (
            f"(SELECT * FROM {self.db}.events WHERE {self._period} AND source_service != '{ACCESS_SERVICE}' "
            "LIMIT 1 BY event_id)"
        )

    @property
    def access(self) -> str:
        return (
            f"(SELECT * FROM {self.db}.events WHERE {self._period} AND source_service = '{ACCESS_SERVICE}' "
            "LIMIT 1 BY event_id)"
        )

    def run(self, sql: str) -> dict[str, Any]:
        rows = self.store.query(sql)
        return {"rows": [{k: _plain(v) for k, v in r.items()} for r in rows], "query": sql}

    def one(self, sql: str) -> dict[str, Any]:
        out = self.run(sql)
        row = out["rows"][0] if out["rows"] else {}
        return {**row, "query": sql}

    # ------------------------------------------------------------------ inventory
    def total(self) -> dict[str, Any]:
        return self.one(f"SELECT count() AS events, sum(record_count) AS records FROM {self.events}")

    def by(self, column: str, limit: int = 100) -> dict[str, Any]:
        expr = "arrayJoin(data_categories)" if column == "category" else column
        return self.run(
            f"SELECT {expr} AS {column}, count() AS events, sum(record_count) AS records FROM {self.events} "
            f"GROUP BY {column} ORDER BY events DESC, {column} LIMIT {int(limit)}"
        )

    def by_system(self) -> dict[str, Any]:
        return self.run(
            "SELECT target_system AS system, target_dataset AS dataset, count() AS events, "
            f"sum(record_count) AS records FROM {self.events} GROUP BY system, dataset ORDER BY events DESC, system, "
            "dataset LIMIT 100"
        )

    # ------------------------------------------------------------------ sensitive PI and consent
    def sensitive(self) -> dict[str, Any]:
        return self.one(
            f"SELECT count() AS events, sum(record_count) AS records FROM {self.events} "
            f"WHERE hasAny(data_categories, {_SENSITIVE}) AND outcome != 'denied'"
        )

    def sensitive_without_consent(self) -> dict[str, Any]:
        return self.one(
            f"SELECT count() AS events, sum(record_count) AS records FROM {self.events} "
            f"WHERE hasAny(data_categories, {_SENSITIVE}) AND outcome != 'denied' "
            "AND (legal_basis NOT IN ('consent', 'law') OR (legal_basis = 'consent' AND consent_ref = ''))"
        )

    # ------------------------------------------------------------------ provision, deletion
    def provisions(self, kind: str) -> dict[str, Any]:
        out = self.one(
            f"SELECT count() AS events, sum(record_count) AS records, uniqExact(destination_name) AS recipients "
            f"FROM {self.events} WHERE destination_kind = '{kind}' AND outcome = 'success'"
        )
        named = self.run(
            "SELECT destination_name AS recipient, destination_region AS region, count() AS events, "
            f"sum(record_count) AS records FROM {self.events} WHERE destination_kind = '{kind}' "
            "AND outcome = 'success' GROUP BY recipient, region ORDER BY events DESC, recipient LIMIT 100"
        )
        out["by_recipient"] = named
        return out

    def deletions(self) -> dict[str, Any]:
        return self.run(
            f"SELECT action, count() AS events, sum(record_count) AS records FROM {self.events} "
            "WHERE action IN ('delete', 'destroy', 'anonymize', 'deidentify') AND outcome = 'success' "
            "GROUP BY action ORDER BY action"
        )

    def retention_records(self) -> dict[str, Any]:
        return self.run(
            f"SELECT seq, created_at, record FROM {self.db}.retention_records "
            f"WHERE created_at >= {_ts(self.since)} AND created_at < {_ts(self.until)} ORDER BY seq"
        )

    # ------------------------------------------------------------------ alerts
    def _alerts(self) -> str:
        return (
            f"(SELECT * FROM {self.db}.alerts FINAL WHERE window_start >= {_ts(self.since)} "
            f"AND window_start < {_ts(self.until)})"
        )

    def alerts_by_rule(self) -> dict[str, Any]:
        return self.run(
            "SELECT rule, count() AS total, countIf(status = 'open') AS open, countIf(status = 'acked') AS acked, "
            f"countIf(status = 'dismissed') AS dismissed FROM {self._alerts()} GROUP BY rule ORDER BY rule"
        )

    def bulk(self) -> dict[str, Any]:
        rules = ", ".join(f"'{r}'" for r in BULK_RULES)
        return self.one(
            "SELECT count() AS total, countIf(status != 'open') AS reviewed, "
            "quantileExactIf(0.5)(dateDiff('second', detected_at, reviewed_at), status != 'open') "
            "AS median_review_seconds, "
            "maxIf(dateDiff('second', detected_at, reviewed_at), status != 'open') AS max_review_seconds "
            f"FROM {self._alerts()} WHERE rule IN ({rules})"
        )

    # ------------------------------------------------------------------ the access log
    def access_by_principal(self) -> dict[str, Any]:
        return self.run(
            "SELECT actor_id AS principal, actor_role AS role, count() AS requests, "
            "countIf(outcome = 'denied') AS denied, countIf(length(subject_refs) > 0) AS person_lookups, "
            f"sum(record_count) AS rows FROM {self.access} GROUP BY principal, role "
            "ORDER BY requests DESC, principal LIMIT 200"
        )

    def access_total(self) -> dict[str, Any]:
        return self.one(
            "SELECT count() AS requests, countIf(outcome = 'denied') AS denied, "
            f"countIf(length(subject_refs) > 0) AS person_lookups FROM {self.access}"
        )


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, float) and v != v:  # NaN (a median over nothing)
        return None
    return v
