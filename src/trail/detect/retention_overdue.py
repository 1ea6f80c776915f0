"""``retention_overdue`` (Shenzhen Art. 25): personal data collected into a dataset and never
deleted beyond the retention the organisation declared for that dataset.

A batch rule, run over the store (``trail retention check``, ``POST /v1/retention/check``), not a
streaming one: its condition is an absence over months. One alert per dataset and day, with the
number of people as its count (never one alert per person), the day of the check as the window
start (the oldest overdue collection in ``extra``), and a few collection events as evidence. The
alert id is fixed by dataset and day, so running the check again the same day raises nothing new.

A person is overdue in a dataset when their last successful ``collect`` into it is older than the
declared days and no ``delete``, ``destroy``, ``anonymize`` or ``deidentify`` of them in that same
dataset followed it. Deletion elsewhere does not count.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from trail.detect.alerts import Alert, alert_id_for
from trail.storage.retention_plan import overdue_people
from trail.storage.store import Store

RULE: Final = "retention_overdue"
SZ_25: Final = "Shenzhen Art. 25"
SEVERITY: Final = "medium"


def _rfc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_retention(
    store: Store, datasets: Iterable[tuple[str, str, int, str]], now: datetime | None = None
) -> list[Alert]:
    """``datasets``: (system, dataset, declared days, source of the declaration)."""
    now = now or datetime.now(UTC)
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for system, dataset, days, source in datasets:
        found = overdue_people(store, system, dataset, now - timedelta(days=days))
        if not found["people"]:
            continue
        key = f"{system}/{dataset}"
        out.append(
            Alert(
                alert_id=alert_id_for(RULE, key, day.timestamp()),
                rule=RULE,
                severity=SEVERITY,
                actor=system,
                actor_kind="dataset",
                key=key,
                window_start=_rfc(day),
                window_end=_rfc(now),
                count=found["people"],
                records=found["people"],
                evidence=found["evidence"],
                articles=[SZ_25],
                summary=(
                    f"{found['people']} people's data collected into {key} is kept beyond the declared "
                    f"{days} days ({source}) without deletion"
                ),
                trigger_event_id=found["evidence"][0] if found["evidence"] else "",
                detected_at=_rfc(now),
                extra={"oldest_collection": _rfc(found["oldest"]), "declared_days": str(days), "source": source},
            )
        )
    return out
