"""The view of notices to individuals and of the public announcement: nothing that identifies anyone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trail.documents.formatting import Formatter, as_list, as_map, blank, first
from trail.documents.labels import INCIDENT_TYPES
from trail.documents.views.common import fact, org_view


def notice_view(ctx: Mapping[str, Any], f: Formatter) -> dict[str, Any]:
    """Only what a notice to individuals or the public may say: no ids, refs or evidence."""
    inc = as_map(ctx.get("incident"))
    facts = as_map(inc.get("facts"))
    ev = as_map(inc.get("evidence"))
    notice = as_map(ctx.get("notice"))
    org = org_view(ctx.get("org"), f)

    def text(name: str) -> Any:
        value = as_map(notice.get(name)).get(f.lang)
        return None if blank(value) else value

    type_raw = fact(facts, "type")
    type_text = f.label(INCIDENT_TYPES, type_raw) if isinstance(type_raw, str) else None
    advice = as_map(notice.get("advice")).get(f.lang)
    recipient = as_map(ctx.get("recipient")).get("name")
    return {
        "org_name": org["name"],
        "recipient_name": None if blank(recipient) else recipient,
        "discovered": f.day(inc.get("discovered_at")),
        "type": type_text,
        "what_happened": text("what_happened"),
        "categories": f.categories(first(fact(facts, "categories"), ev.get("categories"))),
        "sensitive_categories": f.categories(
            first(fact(facts, "sensitive_categories"), ev.get("sensitive_categories"))
        ),
        "cause": fact(facts, "cause"),
        "possible_harm": first(text("possible_harm"), fact(facts, "possible_harm")),
        "measures": [m.get("text") for m in map(as_map, as_list(inc.get("measures"))) if not blank(m.get("text"))],
        "contained": not blank(inc.get("contained_at")),
        "advice": [a for a in as_list(advice) if not blank(a)],
        "remedies": text("remedies"),
        "pi_officer": org["pi_officer"],
        "public_contact": org["public_contact"],
        "xiamen": org["xiamen"],
        "scale": f.count_approx(first(fact(facts, "people_affected"), ev.get("people_affected"))),
        "drill": bool(inc.get("drill")),
        "date": f.day(ctx.get("generated_at")),
    }
