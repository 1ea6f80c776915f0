"""Grading and clocks: pure functions of the facts, the playbook and the time.

Grading: a grade applies when any of its criteria holds (sector overlays add criteria to a
grade for the sectors they name); the most severe grade that applies wins; grade IV is the
default. ``>=`` thresholds include the number itself ("以上"). Unknown facts never raise a
grade: they are listed so the responder sees what would change the answer.

Clocks: an obligation's deadline is its clock start (discovery, or the end of handling) plus
its hours. Its state at a given time is ``met`` / ``met_late`` once met (so being on time is
provable from the record), else ``overdue``, ``due_soon`` (within the playbook's
``due_soon_hours``), ``ok``, or ``not_started`` when its clock has not started yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from trail.incidents.playbook import LEVELS, Criterion, Obligation, Playbook
from trail.messages import Message


@dataclass(frozen=True)
class GradeResult:
    level: str
    #: Criteria that hold, described with their source (English and Chinese).
    reasons: list[str]
    reasons_zh: list[str]
    #: Grading facts no criterion could test because they are unknown.
    unknown: list[str] = field(default_factory=list)


def criteria_by_level(playbook: Playbook) -> dict[str, list[Criterion]]:
    """Every criterion per grade, overlays for the organisation's sector included."""
    out: dict[str, list[Criterion]] = {lv: list(playbook.grade(lv).criteria) for lv in LEVELS}
    sector = playbook.organisation.sector
    for ov in playbook.overlays:
        if sector in ov.sectors:
            out[ov.grade].append(ov.criterion)
    return out


def compute_grade(facts: Mapping[str, Any], playbook: Playbook) -> GradeResult:
    unknown: set[str] = set()
    for level, criteria in criteria_by_level(playbook).items():
        held = []
        for c in criteria:
            result = c.holds(facts)
            if result is None:
                unknown.add(c.fact)
            elif result:
                held.append(c)
        if held:
            return GradeResult(
                level=level,
                reasons=[_reason(c, facts, "en") for c in held],
                reasons_zh=[_reason(c, facts, "zh") for c in held],
                unknown=sorted(unknown),
            )
    return GradeResult(
        level=LEVELS[-1],
        reasons=[Message("grade.default").text("en")],
        reasons_zh=[Message("grade.default").text("zh")],
        unknown=sorted(unknown),
    )


def _reason(c: Criterion, facts: Mapping[str, Any], lang: str) -> str:
    value = facts.get(c.fact)
    if isinstance(value, bool):
        shown = str(value).lower()
    elif isinstance(value, int | float):
        shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"
    else:
        shown = str(value)
    return Message("grade.criterion", {"fact": c.fact, "value": shown, "criterion": c.describe(lang)}).text(lang)


# --------------------------------------------------------------------------- clocks
def clock_start(ob: Obligation, *, discovered_at: datetime, handling_ended_at: datetime | None) -> datetime | None:
    if ob.clock_from == "discovery":
        return discovered_at
    return handling_ended_at


def deadline(ob: Obligation, *, discovered_at: datetime, handling_ended_at: datetime | None) -> datetime | None:
    start = clock_start(ob, discovered_at=discovered_at, handling_ended_at=handling_ended_at)
    return None if start is None else start + timedelta(hours=ob.hours)


def clock_state(
    *,
    due_at: datetime | None,
    status: str,
    met_at: datetime | None,
    now: datetime,
    due_soon_hours: float,
) -> tuple[str, float | None]:
    """``(state, seconds_left)``; seconds_left is negative when overdue, None without a deadline."""
    if status == "met":
        if due_at is None or met_at is None:
            return "met", None
        return ("met" if met_at <= due_at else "met_late"), (due_at - met_at).total_seconds()
    if status == "waived":
        return "waived", None
    if due_at is None:
        return "not_started", None
    left = (due_at - now).total_seconds()
    if left < 0:
        return "overdue", left
    if left <= due_soon_hours * 3600:
        return "due_soon", left
    return "ok", left


def human_left(seconds: float | None) -> str:
    """``3h 12m left`` / ``overdue by 25m`` / ``-``."""
    if seconds is None:
        return "-"
    s = abs(int(seconds))
    days, rem = divmod(s, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    text = f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"
    return f"{text} left" if seconds >= 0 else f"overdue by {text}"
