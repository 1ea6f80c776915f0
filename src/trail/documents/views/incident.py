"""The view of the reports on an incident (to regulators and for the file), from the incident context."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

from trail.documents.formatting import Formatter, as_list, as_map, blank, first, parse_ts
from trail.documents.labels import (
    FACT_LABELS,
    INCIDENT_STATUS,
    INCIDENT_TYPES,
    REPORT_KINDS,
    SOURCES,
    STEP_STATUS,
)
from trail.documents.views.common import by_time, fact, grade_view, obligation_view, org_view
from trail.messages import localised

#: Items the initial report checks; any left unknown is listed under "to be supplemented".
INITIAL_REPORT_ITEMS: Final = (
    "discovered_at",
    "location",
    "type",
    "affected_systems",
    "people_affected",
    "sensitive_people",
    "categories",
    "window",
    "evidence",
    "measures",
    "measures_effect",
    "trend",
    "possible_harm",
    "cause",
    "leads",
    "scene_preservation",
    "direct_loss_cny",
)
_DONE_STEPS: Final = frozenset({"done", "completed", "skipped", "cancelled"})
_INITIAL_REPORT_KINDS: Final = frozenset({"initial", "initial_report", "regulator_report"})


def incident_view(ctx: Mapping[str, Any], f: Formatter) -> dict[str, Any]:
    """Everything the reports on an incident say: facts, evidence, measures, obligations, timeline."""
    inc = as_map(ctx.get("incident"))
    facts = as_map(inc.get("facts"))
    ev_raw = inc.get("evidence")
    ev = as_map(ev_raw)
    has_ev = isinstance(ev_raw, Mapping) and bool(ev_raw)

    def fv(name: str) -> Any:
        return fact(facts, name)

    # Resolved items: a recorded fact first, then what the frozen evidence says.
    window = None
    if has_ev and not (blank(ev.get("window_start")) and blank(ev.get("window_end"))):
        unknown = f.phrase("unknown")
        window = f"{f.ts(ev.get('window_start')) or unknown} – {f.ts(ev.get('window_end')) or unknown}"
    measures = [
        {"at": f.ts(m.get("at")), "by": m.get("by"), "text": m.get("text"), "_sort": parse_ts(m.get("at"))}
        for m in map(as_map, as_list(inc.get("measures")))
    ]
    resolved: dict[str, Any] = {
        "discovered_at": f.ts(inc.get("discovered_at")),
        "location": fv("location"),
        "type": f.label(INCIDENT_TYPES, fv("type")) if isinstance(fv("type"), str) else fv("type"),
        "affected_systems": first(fv("affected_systems"), ev.get("systems")),
        "people_affected": first(fv("people_affected"), ev.get("people_affected")),
        "sensitive_people": first(fv("sensitive_people"), ev.get("sensitive_subjects")),
        "categories": f.categories(first(fv("categories"), ev.get("categories"))),
        "sensitive_categories": f.categories(first(fv("sensitive_categories"), ev.get("sensitive_categories"))),
        "window": window,
        "evidence": True if has_ev else None,
        "measures": True if measures else None,
        "measures_effect": fv("measures_effect"),
        "trend": fv("trend"),
        "possible_harm": fv("possible_harm"),
        "cause": fv("cause"),
        "leads": first(fv("leads"), True if (as_list(inc.get("alerts")) or has_ev) else None),
        "scene_preservation": fv("scene_preservation"),
        "direct_loss_cny": fv("direct_loss_cny"),
    }

    unknown_keys: list[str] = []
    recorded = [str(u) for u in as_list(inc.get("unknowns"))]
    for key in recorded + [k for k in INITIAL_REPORT_ITEMS if resolved[k] is None]:
        if key not in unknown_keys:
            unknown_keys.append(key)
    unknowns = [f.label(FACT_LABELS, k) for k in unknown_keys]

    fact_rows = []
    for name, entry_raw in facts.items():
        entry = as_map(entry_raw)
        value = entry.get("value")
        if name in ("categories", "sensitive_categories"):
            value = f.categories(value)
        fact_rows.append(
            {
                "name": name,
                "label": f.label(FACT_LABELS, name),
                "value": value,
                "source": entry.get("source") or "—",
                "by": entry.get("by") or "—",
                "at": f.ts(entry.get("at")) or "—",
                "_sort": parse_ts(entry.get("at")),
            }
        )

    evidence = None
    if has_ev:
        destinations = []
        for d in map(as_map, as_list(ev.get("destinations"))):
            text = " ".join(str(x) for x in (d.get("kind"), d.get("name")) if not blank(x))
            if not blank(d.get("region")):
                text += f" ({d.get('region')})"
            destinations.append(text)
        evidence = {
            "computed_at": f.ts(ev.get("computed_at")),
            "query": ev.get("query"),
            "people_affected": ev.get("people_affected"),
            "distinct_subjects": ev.get("distinct_subjects"),
            "sensitive_subjects": ev.get("sensitive_subjects"),
            "records": ev.get("records"),
            "events": ev.get("events"),
            "window": window,
            "actors": as_list(ev.get("actors")),
            "systems": as_list(ev.get("systems")),
            "destinations": destinations,
            "alert_ids": as_list(ev.get("alert_ids")),
            "digest": ev.get("digest"),
        }

    alerts = [
        {
            "alert_id": a.get("alert_id"),
            "rule": a.get("rule"),
            "severity": a.get("severity"),
            "summary": localised(a.get("message"), f.lang, str(a.get("summary") or "")),
            "articles": as_list(a.get("articles")),
        }
        for a in map(as_map, as_list(inc.get("alerts")))
    ]
    steps = []
    for s in map(as_map, as_list(inc.get("steps"))):
        title = f.either(s.get("title_zh"), s.get("title_en"))
        status = s.get("status")
        done = str(status) in _DONE_STEPS or not blank(s.get("completed_at"))
        steps.append(
            {
                "id": s.get("id"),
                "title": title,
                "role": s.get("role") or "—",
                "due": f.ts(s.get("due_at")) or "—",
                "status": f.label(STEP_STATUS, status) or "—",
                "done": done,
                "completed_at": f.ts(s.get("completed_at")),
                "by": s.get("by") or "—",
                "note": s.get("note") or "—",
                "_sort": parse_ts(s.get("completed_at")),
            }
        )
    obligations = by_time([obligation_view(o, f) for o in as_list(inc.get("obligations"))])
    reports = [
        {
            "kind": f.label(REPORT_KINDS, r.get("kind")),
            "raw_kind": r.get("kind"),
            "at": f.ts(r.get("at")),
            "by": r.get("by") or "—",
            "reference": r.get("reference") or "—",
            "_sort": parse_ts(r.get("at")),
        }
        for r in map(as_map, as_list(inc.get("reports")))
    ]
    initial = next((r for r in reports if r["raw_kind"] in _INITIAL_REPORT_KINDS), None)
    since = initial["_sort"] if initial else None
    updates = [
        {"at": f.ts(u.get("at")), "by": u.get("by") or "—", "text": u.get("text"), "_sort": parse_ts(u.get("at"))}
        for u in map(as_map, as_list(inc.get("updates")))
    ]

    def after(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if since is None:
            return rows
        return [r for r in rows if r["_sort"] is None or r["_sort"] > since]

    review_raw = inc.get("review")
    review = as_map(review_raw)
    notices = as_map(inc.get("notices"))
    handling_end = parse_ts(inc.get("handling_ended_at"))
    closing_due = f.ts((handling_end + timedelta(days=30)).isoformat()) if handling_end else None

    # Timeline: every dated thing the record holds, oldest first.
    tl: list[dict[str, Any]] = []

    def add(at: Any, what: str, by: Any = None) -> None:
        if not blank(at):
            tl.append({"at": f.ts(at), "what": what, "by": by or "—", "_sort": parse_ts(at)})

    add(inc.get("discovered_at"), f.phrase("timeline_discovered"))
    add(inc.get("opened_at"), f.phrase("timeline_opened"), inc.get("opened_by"))
    for m in map(as_map, as_list(inc.get("measures"))):
        add(m.get("at"), f.phrase("timeline_measure") + str(m.get("text") or ""), m.get("by"))
    for u in map(as_map, as_list(inc.get("updates"))):
        add(u.get("at"), f.phrase("timeline_update") + str(u.get("text") or ""), u.get("by"))
    for s_raw, s in zip(map(as_map, as_list(inc.get("steps"))), steps, strict=True):
        add(s_raw.get("completed_at"), f.phrase("timeline_step_done") + str(s["title"] or s["id"]), s["by"])
    for r_raw, r in zip(map(as_map, as_list(inc.get("reports"))), reports, strict=True):
        add(r_raw.get("at"), f.phrase("timeline_filed") + str(r["kind"] or ""), r["by"])
    for o_raw in map(as_map, as_list(inc.get("obligations"))):
        if not blank(o_raw.get("met_at")):
            ov = obligation_view(o_raw, f)
            add(
                o_raw.get("met_at"),
                f.phrase("timeline_obligation_met") + str(ov["recipient"] or ov["id"]),
                o_raw.get("met_by"),
            )
    for h in map(as_map, as_list(inc.get("grade_history")) or as_list(as_map(inc.get("grade")).get("history"))):
        add(h.get("at"), f.phrase("timeline_graded") + str(f.grade(h.get("level")) or ""), h.get("by"))
    add(inc.get("contained_at"), f.phrase("timeline_contained"))
    add(inc.get("handling_ended_at"), f.phrase("timeline_handling_ended"))
    if not blank(review.get("at")):
        add(review.get("at"), f.phrase("timeline_review_completed"), review.get("by"))
    add(inc.get("closed_at"), f.phrase("timeline_closed"))

    return {
        "generated_at": f.ts(ctx.get("generated_at")),
        "tz_note": f.offset_note(ctx.get("generated_at")),
        "org": org_view(ctx.get("org"), f),
        "inc": {
            "id": inc.get("id"),
            "ref": inc.get("ref"),
            "title": localised(inc.get("title_message"), f.lang, str(inc.get("title") or "")),
            "description": localised(inc.get("description_message"), f.lang, str(inc.get("description") or "")),
            "status": f.label(INCIDENT_STATUS, inc.get("status")),
            "drill": bool(inc.get("drill")),
            "source": f.label(SOURCES, inc.get("source")),
            "discovered_at": f.ts(inc.get("discovered_at")),
            "opened_at": f.ts(inc.get("opened_at")),
            "opened_by": inc.get("opened_by"),
            "contained_at": f.ts(inc.get("contained_at")),
            "handling_ended_at": f.ts(inc.get("handling_ended_at")),
            "closed_at": f.ts(inc.get("closed_at")),
        },
        "grade": grade_view(inc, f),
        "item": resolved,
        "facts": {name: (row["value"]) for name, row in zip(facts, fact_rows, strict=True)},
        "fact_rows": fact_rows,
        "changed_facts": after(fact_rows),
        "cii_involved": fv("cii_involved"),
        "systems_down_hours": fv("systems_down_hours"),
        "suspected_crime": fv("suspected_crime"),
        "support_requested": fv("support_requested"),
        "ransom": fv("ransom"),
        "leads": fv("leads"),
        "evidence": evidence,
        "alerts": alerts,
        "measures": measures,
        "measures_since": after(measures),
        "steps": steps,
        "next_steps": [s for s in steps if not s["done"]],
        "obligations": obligations,
        "regulator_obligations": [o for o in obligations if o["regulator"]],
        "notices": {k: notices.get(k) for k in ("sent", "failed", "pending", "in_doubt")},
        "reports": reports,
        "initial_report": initial,
        "updates": updates,
        "updates_since": after(updates),
        "review": {
            k: review.get(k) for k in ("cause", "responsibility", "countermeasures", "prevention", "lessons", "by")
        }
        | {"at": f.ts(review.get("at")), "present": bool(review)},
        "unknowns": unknowns,
        "closing_due": closing_due,
        "timeline": by_time(tl),
    }
