"""Parts of the views that several documents share: organisation, obligations, grade."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from trail.documents.formatting import Formatter, as_list, as_map, blank, parse_ts
from trail.documents.labels import (
    COLOURS,
    JURISDICTIONS,
    OBLIGATION_STATE,
    OBLIGATION_STATUS,
    OPERATOR_CLASS,
    REPORT_KINDS,
    SECTORS,
)

#: Obligation kinds addressed to an authority (the rest reach individuals, the public or the file).
REGULATOR_OBLIGATION_KINDS: Final = frozenset(
    {"regulator_report", "followup_report", "closing_summary", "police_report"}
)
_LEVEL_RANK: Final = {"I": 0, "II": 1, "III": 2, "IV": 3}


def org_view(org_raw: Any, f: Formatter) -> dict[str, Any]:
    """The organisation: names, class, reporting line and contacts."""
    org = as_map(org_raw)
    juris = [str(j) for j in as_list(org.get("jurisdictions"))]
    if org.get("cii_operator") is True:
        op = "cii"
    elif org.get("state_organ") is True:
        op = "state_organ"
    else:
        op = "other"
    op_label, recipient, hours = OPERATOR_CLASS[op]
    name_zh = org.get("name")
    name_en = org.get("name_en")
    officer = as_map(org.get("pi_officer"))
    public = as_map(org.get("public_contact"))
    return {
        "name": f.either(name_zh, name_en),
        "name_zh": name_zh,
        "name_en": name_en,
        "sector": f.label(SECTORS, org.get("sector")),
        "address": org.get("address"),
        "licence": org.get("licence") or f.phrase("none"),
        "operator_class": f.pick(op_label),
        "report_recipient": f.pick(recipient),
        "report_clock": f.hours(hours),
        "jurisdictions": [f.label(JURISDICTIONS, j) for j in juris] or None,
        "miit": "miit_telecom" in juris,
        "shenzhen": "shenzhen" in juris,
        "xiamen": "xiamen" in juris,
        "dalian": "dalian" in juris,
        "pi_officer": {"name": officer.get("name"), "phone": officer.get("phone"), "email": officer.get("email")},
        "public_contact": {"phone": public.get("phone"), "email": public.get("email"), "web": public.get("web")},
    }


def fact(facts: Mapping[str, Any], name: str) -> Any:
    """The value of a recorded fact, if recorded."""
    entry = facts.get(name)
    if isinstance(entry, Mapping):
        return entry.get("value")
    return None


def obligation_view(ob_raw: Any, f: Formatter) -> dict[str, Any]:
    """One obligation: recipient, basis, deadline and how it was met."""
    ob = as_map(ob_raw)
    state = ob.get("state")
    due = ob.get("due_at")
    if blank(due):
        due_text = f.phrase("clock_not_started") if state == "not_started" else f.phrase("immediately")
    else:
        due_text = f.ts(due) or "—"
    rec_zh, rec_en = ob.get("recipient_zh"), ob.get("recipient_en")
    status = ob.get("status")
    met = ob.get("met_at")
    return {
        "id": ob.get("id"),
        "kind": f.label(REPORT_KINDS, ob.get("kind")),
        "regulator": ob.get("kind") in REGULATOR_OBLIGATION_KINDS,
        "jurisdiction": f.label(JURISDICTIONS, ob.get("jurisdiction")),
        "recipient": f.either(rec_zh, rec_en),
        "basis": ob.get("basis"),
        "due": due_text,
        "status": f.label(OBLIGATION_STATUS, status),
        "state": f.label(OBLIGATION_STATE, state) or f.label(OBLIGATION_STATUS, status),
        "met_at": f.ts(met) if not blank(met) else ("—" if status != "waived" else f.phrase("waived")),
        "met_by": ob.get("met_by") or "—",
        "how": ob.get("how") or "—",
        "reference": ob.get("reference") or "—",
        "_sort": parse_ts(due) or parse_ts(met),
    }


def by_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows oldest first by their ``_sort`` time; undated rows last."""
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: r.get("_sort") or far)


def grade_view(inc: Mapping[str, Any], f: Formatter) -> dict[str, Any]:
    """The grade, how it was reached and how it changed."""
    g = as_map(inc.get("grade"))
    level = g.get("level")
    computed = g.get("computed_level")
    history_raw = as_list(inc.get("grade_history")) or as_list(g.get("history"))
    history = []
    for h_raw in history_raw:
        h = as_map(h_raw)
        history.append(
            {
                "at": f.ts(h.get("at")),
                "level": f.grade(h.get("level")),
                "previous": f.grade(h.get("previous")) or "—",
                "by": h.get("by") or "—",
                "overridden": bool(h.get("overridden")),
                "reason": h.get("reason") or h.get("override_reason") or "—",
            }
        )
    rank = _LEVEL_RANK.get(str(level)) if level is not None else None
    return {
        "level": level,
        "display": f.grade(level, g.get("name_zh"), g.get("name_en")),
        "colour": f.label(COLOURS, g.get("colour")),
        "computed": f.grade(computed),
        "overridden": bool(g.get("overridden")),
        "override_reason": g.get("override_reason"),
        "reasons": [str(r) for r in as_list(f.either(g.get("reasons_zh") or g.get("reasons"), g.get("reasons")))],
        "reportable": rank is not None and rank <= _LEVEL_RANK["III"],
        "history": history,
    }
