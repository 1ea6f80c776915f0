"""The view of the graded emergency plan, from the playbook context."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from trail.documents.formatting import Formatter, as_list, as_map, blank, display, parse_ts
from trail.documents.labels import (
    APPLIES_TO,
    COLOURS,
    FACT_LABELS,
    JURISDICTIONS,
    REPORT_KINDS,
    SECTORS,
    UNITS,
)
from trail.documents.views.common import org_view


def plan_view(plan_ctx: Mapping[str, Any], f: Formatter) -> dict[str, Any]:
    """The graded plan: grades with their criteria, steps and obligations; roles; drills."""
    pb = as_map(plan_ctx.get("playbook"))
    roles = {str(r.get("id")): r for r in map(as_map, as_list(pb.get("roles")))}

    def role_name(rid: Any) -> str:
        r = roles.get(str(rid))
        if not r:
            return str(rid) if not blank(rid) else "—"
        name = f.either(r.get("name_zh"), r.get("name_en"))
        return str(name or rid)

    def crit(c: Mapping[str, Any]) -> dict[str, Any]:
        value = c.get("value")
        unit = c.get("unit")
        if isinstance(value, bool):
            shown: Any = value
        else:
            shown = display(value, f.lang, "—")
            if not blank(unit):
                shown = f"{shown} {f.label(UNITS, unit)}"
        op = {">=": "≥", ">": ">", "==": "="}.get(str(c.get("op") or ">="), str(c.get("op")))
        return {
            "fact": f.label(FACT_LABELS, c.get("fact")),
            "op": op,
            "value": shown,
            "source": c.get("source") or "—",
            "effective": c.get("effective") or "—",
            "verify": c.get("status") != "verified",
            "note": c.get("note") or "—",
            "grade": f.grade(c.get("grade")) if c.get("grade") else None,
            "sectors": [f.label(SECTORS, s) for s in as_list(c.get("sectors"))] or None,
        }

    grades: list[dict[str, Any]] = []
    for g in map(as_map, as_list(pb.get("grades"))):
        level = g.get("level")
        steps = [
            {
                "title": f.either(s.get("title_zh"), s.get("title_en")),
                "role": role_name(s.get("role")),
                "due": f.hours(s.get("due_hours")),
            }
            for s in map(as_map, as_list(pb.get("steps")))
            if level in as_list(s.get("grades"))
        ]
        obligations = []
        for o in map(as_map, as_list(pb.get("obligations"))):
            if level not in as_list(o.get("grades")):
                continue
            clock = as_map(o.get("clock"))
            start = clock.get("from")
            hours = f.hours(clock.get("hours"))
            if start == "handling_end":
                clock_text = f.phrase("clock_after_handling", hours=hours)
            else:
                clock_text = f.phrase("clock_from_discovery", hours=hours)
            applies = [f.label(APPLIES_TO, a.strip()) for a in str(o.get("applies_to") or "all").split(",")]
            note = o.get("status_note") or ""
            obligations.append(
                {
                    "jurisdiction": f.label(JURISDICTIONS, o.get("jurisdiction")),
                    "kind": f.label(REPORT_KINDS, o.get("kind")),
                    "recipient": f.either(o.get("recipient_zh"), o.get("recipient_en")),
                    "applies_to": applies,
                    "when": f.label(FACT_LABELS, o.get("when_fact")) if o.get("when_fact") else None,
                    "clock": clock_text,
                    "basis": o.get("basis"),
                    "verify": "verify" in f"{o.get('basis')} {note}".lower(),
                    "note": note or "—",
                    "document": f.label(REPORT_KINDS, o.get("template")) or "—",
                }
            )
        obligations.sort(key=lambda o: str(o["jurisdiction"]))
        criteria = [crit(c) for c in map(as_map, as_list(g.get("criteria")))]
        grades.append(
            {
                "level": level,
                "display": f.grade(level, g.get("name_zh"), g.get("name_en")),
                "colour": f.label(COLOURS, g.get("colour")),
                "criteria": criteria,
                "steps": steps,
                "obligations": obligations,
            }
        )
    overlays = [crit(c) for c in map(as_map, as_list(pb.get("org_overrides")))]
    drills = as_map(pb.get("drills"))
    every = drills.get("every_months")
    next_due = drills.get("next_due")
    gen = parse_ts(plan_ctx.get("generated_at"))
    overdue = False
    if isinstance(next_due, str) and gen is not None:
        try:
            overdue = date.fromisoformat(next_due[:10]) < gen.astimezone(f.tz).date()
        except ValueError:
            overdue = False
    review_from = pb.get("review_required_from")
    n_verify = sum(1 for g in grades for c in g["criteria"] if c["verify"]) + sum(1 for c in overlays if c["verify"])
    return {
        "generated_at": f.ts(plan_ctx.get("generated_at")),
        "tz_note": f.offset_note(plan_ctx.get("generated_at")),
        "org": org_view(plan_ctx.get("org"), f),
        "plan": {
            "name": pb.get("name"),
            "version": pb.get("version"),
            "effective_from": pb.get("effective_from"),
            "source_file": pb.get("source_file"),
            "digest": pb.get("digest"),
        },
        "grades": grades,
        "overlays": overlays,
        "roles": [
            {
                "id": r.get("id"),
                "name": f.either(r.get("name_zh"), r.get("name_en")),
                "contact": r.get("contact"),
            }
            for r in roles.values()
        ],
        "drills": {
            "every_months": every,
            "last": drills.get("last") or f.phrase("no_drill"),
            "next_due": next_due,
            "overdue": overdue,
            "too_rare": isinstance(every, int | float) and not isinstance(every, bool) and every > 12,
        },
        "review_from": f.grade(review_from),
        "n_verify": n_verify,
    }
