"""Retention classes: how long each kind of record in the trail is kept, each with its source,
and the plan of what a retention up to a time would expire.

Defaults (every one a floor an organisation may raise, never lower):
- ``audit_events``: every event, >= 183 days (Cybersecurity Law Art. 21(3), network logs >= 6 months);
- ``provision_records``: providing, transferring or disclosing PI, and anything sent to a third
  party, abroad or the public, >= 3 years (Network Data Security Management Regulations Art. 12;
  PIPL Art. 56 processing records >= 3 years);
- ``entrusted_processing``: operations by entrusted parties (actor kind ``agent``), >= 3 years
  (NDSR Art. 12).

The policy file (``TRAIL_RETENTION_POLICY``, YAML) may add classes and declare the retention of
datasets (``datasets: [{system, dataset, days, source}]``), which the ``retention_overdue``
detector checks (Shenzhen Art. 25). Retention deletes whole sealed checkpoints, so a checkpoint
expires only when every class it holds events of has passed its period, and no hold covers it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

from trail.errors import ConfigError
from trail.events.model import ACTIONS, DATA_CATEGORIES
from trail.integrity.checkpoint import Checkpoint
from trail.storage import integrity as isql
from trail.storage.retention_plan import class_predicate, class_spans

DESTINATION_KINDS: Final = ("file", "media", "third_party", "public", "abroad")
ACTOR_KINDS: Final = ("staff", "service", "agent", "subject", "system")
THREE_YEARS: Final = 1095


@dataclass(frozen=True)
class RetentionClass:
    name: str
    days: int
    source: str
    status: str = "verify"
    actions: tuple[str, ...] = ()
    destination_kinds: tuple[str, ...] = ()
    actor_kinds: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def predicate(self) -> str:
        """The class as a condition over the events table (trail.storage.retention_plan)."""
        return class_predicate(self.actions, self.destination_kinds, self.actor_kinds, self.categories)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "days": self.days,
            "source": self.source,
            "status": self.status,
            "actions": list(self.actions),
            "destination_kinds": list(self.destination_kinds),
            "actor_kinds": list(self.actor_kinds),
            "categories": list(self.categories),
        }


DEFAULT_CLASSES: Final = (
    RetentionClass(
        "audit_events", 183, "Cybersecurity Law Art. 21(3): network logs kept at least six months", "verify"
    ),
    RetentionClass(
        "provision_records",
        THREE_YEARS,
        "Network Data Security Management Regulations Art. 12: records of providing PI kept at least 3 years; "
        "PIPL Art. 56",
        "verify",
        actions=("provide", "transfer", "disclose"),
        destination_kinds=("third_party", "abroad", "public"),
    ),
    RetentionClass(
        "entrusted_processing",
        THREE_YEARS,
        "Network Data Security Management Regulations Art. 12: records of entrusted processing kept at least 3 years",
        "verify",
        actor_kinds=("agent",),
    ),
)


@dataclass(frozen=True)
class DatasetRetention:
    system: str
    dataset: str
    days: int
    source: str


@dataclass(frozen=True)
class RetentionPolicy:
    classes: tuple[RetentionClass, ...] = DEFAULT_CLASSES
    datasets: tuple[DatasetRetention, ...] = ()
    where: str = "defaults"

    def as_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "classes": [c.as_dict() for c in self.classes],
            "datasets": [d.__dict__ for d in self.datasets],
        }


def _names(where: str, value: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    items = value if isinstance(value, list) else ([] if value is None else [value])
    bad = [str(x) for x in items if x not in allowed]
    if bad:
        raise ConfigError(f"{where}: unknown {', '.join(bad)} (allowed: {', '.join(allowed)})")
    return tuple(str(x) for x in items)


def _days(where: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{where}: a whole number of days, at least {low}")
    return value


def load_policy(path: Path | None, floor_days: int = 183) -> RetentionPolicy:
    """The default classes, with the file's classes and datasets (a class of a default's name
    replaces it but may not shorten it)."""
    if path is None:
        return RetentionPolicy(classes=_with_floor(DEFAULT_CLASSES, floor_days))
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"TRAIL_RETENTION_POLICY: cannot read {path} ({exc})") from None
    if not isinstance(doc, dict) or set(doc) - {"classes", "datasets"}:
        raise ConfigError(f"{path}: a mapping with 'classes' and/or 'datasets'")
    classes = {c.name: c for c in _with_floor(DEFAULT_CLASSES, floor_days)}
    for i, raw in enumerate(doc.get("classes") or []):
        where = f"{path}: classes[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw.get("source"):
            raise ConfigError(f"{where}: needs name, days and source")
        name = raw["name"]
        low = classes[name].days if name in classes else floor_days
        classes[name] = RetentionClass(
            name=name,
            days=_days(f"{where}.days", raw.get("days"), low),
            source=str(raw["source"]),
            status=str(raw.get("status", "organisation policy")),
            actions=_names(f"{where}.actions", raw.get("actions"), ACTIONS),
            destination_kinds=_names(f"{where}.destination_kinds", raw.get("destination_kinds"), DESTINATION_KINDS),
            actor_kinds=_names(f"{where}.actor_kinds", raw.get("actor_kinds"), ACTOR_KINDS),
            categories=_names(f"{where}.categories", raw.get("categories"), DATA_CATEGORIES),
        )
    datasets = []
    for i, raw in enumerate(doc.get("datasets") or []):
        where = f"{path}: datasets[{i}]"
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in ("system", "dataset", "source")):
            raise ConfigError(f"{where}: needs system, dataset, days and source")
        datasets.append(
            DatasetRetention(raw["system"], raw["dataset"], _days(f"{where}.days", raw.get("days"), 1), raw["source"])
        )
    return RetentionPolicy(tuple(classes.values()), tuple(datasets), str(path))


def _with_floor(classes: Sequence[RetentionClass], floor_days: int) -> tuple[RetentionClass, ...]:
    """The configured floor (TRAIL_RETENTION_FLOOR_DAYS) raises every class below it."""
    return tuple(c if c.days >= floor_days else RetentionClass(**{**c.__dict__, "days": floor_days}) for c in classes)


def class_block(
    store: Any, policy: RetentionPolicy, ranges: Sequence[tuple[str, int, int]], now: datetime
) -> list[dict[str, Any]]:
    """The classes whose period has not passed for some event of these ranges: ``[{class, days,
    source, events, newest, kept_until}]`` (empty: the classes let the ranges expire)."""
    spans = class_spans(store, ranges, {c.name: c.predicate() for c in policy.classes})
    out = []
    for c in policy.classes:
        count, newest = spans.get(c.name, (0, None))
        if count and newest is not None and newest > now - timedelta(days=c.days):
            out.append(
                {
                    "class": c.name,
                    "days": c.days,
                    "source": c.source,
                    "events": count,
                    "newest": newest.isoformat(),
                    "kept_until": (newest + timedelta(days=c.days)).isoformat(),
                }
            )
    return out


@dataclass
class PlanEntry:
    seq: int
    created_at: str
    events: int
    oldest: str | None
    newest: str | None
    by_class: dict[str, int] = field(default_factory=dict)
    kept_by: list[dict[str, Any]] = field(default_factory=list)

    @property
    def expires(self) -> bool:
        return not self.kept_by

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "expires": self.expires}


def plan(
    store: Any,
    policy: RetentionPolicy,
    holds: Callable[[], list[tuple[datetime, datetime, str]]],
    before: datetime,
    now: datetime,
) -> dict[str, Any]:
    """What a retention up to ``before`` would expire, checkpoint by checkpoint, and what keeps the
    rest: a class whose period has not passed, or a hold (explicit, or an open incident's evidence)."""
    done = {int(c["seq"]) for r in isql.retention_records(store) for c in json.loads(r)["checkpoints"]}
    cps = [Checkpoint.from_record(json.loads(r)) for r in isql.checkpoints_created_before(store, before)]
    active = holds()
    entries = []
    for cp in cps:
        if cp.seq in done:
            continue
        ranges = [(r.producer, r.first, r.last) for r in cp.ranges]
        spans = [s for s in (isql.range_time_span(store, *r) for r in ranges) if s is not None]
        oldest = min((s[0] for s in spans), default=None)
        newest = max((s[1] for s in spans), default=None)
        counts = class_spans(store, ranges, {c.name: c.predicate() for c in policy.classes})
        entry = PlanEntry(
            seq=cp.seq,
            created_at=cp.created_at,
            events=cp.count,
            oldest=oldest.isoformat() if oldest else None,
            newest=newest.isoformat() if newest else None,
            by_class={k: v[0] for k, v in counts.items() if v[0]},
        )
        entry.kept_by.extend({"kind": "class", **b} for b in class_block(store, policy, ranges, now))
        if oldest is not None and newest is not None:
            for start, end, what in active:
                if oldest < end and newest >= start:
                    entry.kept_by.append({"kind": "hold", "hold": what})
        entries.append(entry)
    expiring = [e for e in entries if e.expires]
    return {
        "before": before.isoformat(),
        "policy": policy.as_dict(),
        "checkpoints": [e.as_dict() for e in entries],
        "would_expire": {"checkpoints": len(expiring), "events": sum(e.events for e in expiring)},
        "kept": {
            "checkpoints": len(entries) - len(expiring),
            "events": sum(e.events for e in entries if not e.expires),
        },
    }
