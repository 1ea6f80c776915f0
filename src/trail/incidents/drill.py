"""``trail drill``: run the playbook against a synthetic incident, end to end, and keep the record.

A drill opens an incident marked ``drill`` (never confused with a real one: the trigger does
not attach alerts to it, lists show it as a drill), gives it the scenario's facts, lets the
playbook grade it and start its clocks, works through every step, renders the documents the
obligations need (zh and en), meets each obligation as "drill", resolves, reviews and closes.
The drill incident's history is the drill record GB/T 35273 §10.1 (verify) and MIIT Order 24
Art. 16 ask for; the next drill is due ``drills.every_months`` after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trail.config import Settings
from trail.documents.rendering import write_documents
from trail.incidents.application import IncidentService, rfc3339
from trail.incidents.commands import LocalIncidents
from trail.incidents.filing import document_context, incident_dir
from trail.incidents.playbook import load_playbook


def run_drill(
    settings: Settings,
    *,
    by: str,
    playbook_path: Path | None = None,
    people: int = 1_200_000,
    sensitive: int = 0,
    org_type: str = "playbook",
    now: datetime,
) -> dict[str, Any]:
    playbook = load_playbook(playbook_path or settings.playbook)
    if org_type != "playbook":
        playbook = playbook.with_organisation(cii_operator=org_type == "cii", state_organ=org_type == "state_organ")
    service = IncidentService.from_settings(settings, playbook=playbook)
    try:
        inc = service.open(
            title=f"Drill: synthetic leak of personal information of {people:,} people",
            description="Synthetic scenario run by `trail drill`: no real data is involved.",
            by=by,
            drill=True,
            source="drill",
            facts={
                "people_affected": (people, "drill scenario"),
                "sensitive_people": (sensitive, "drill scenario"),
                "categories": (["name", "phone", "address"], "drill scenario"),
                "cause": ("drill: a staff account exported customer records to a personal device", "drill scenario"),
            },
        )
        ref = inc.ref
        grade = inc.grade["level"] if inc.grade else "IV"
        planned = [
            {
                "id": o["id"],
                "recipient_en": o["recipient_en"],
                "basis": o["basis"],
                "due": _relative(o.get("due_at"), inc.discovered_at, o.get("clock_from", "discovery"), o.get("hours")),
            }
            for o in service.view(inc)["obligations"]
            if o["status"] == "open"
        ]
        for step in list(inc.steps):
            service.step(ref, step, "complete", by=by, note="drill")
        service.measure(ref, "drill: account disabled, export blocked, device recovered", by=by)
        out = incident_dir(settings, ref) / "documents"
        ctx = document_context(service.view(ref), playbook, settings.timezone)
        kinds = sorted({o.template for o in playbook.obligations if o.template} | {"initial_report"})
        files = write_documents(ctx, out, kinds, langs=("zh", "en"), fmts=("md", "html"))
        for o in service.view(ref)["obligations"]:
            if o["status"] == "open" and o.get("clock_from") == "discovery":
                service.meet(ref, o["id"], by=by, how=f"drill: document rendered to {out}")
        service.contain(ref, by=by, note="drill: contained")
        service.resolve(ref, by=by, note="drill: handling ended")
        service.review(
            ref,
            by=by,
            cause="drill: bulk export by a staff account outside its duties",
            responsibility="drill: the account holder; the approver of the export job",
            countermeasures="drill: bulk exports need a ticket and a second approver",
            prevention="drill: alert on exports over 10,000 records within 5 minutes",
            lessons="drill: reporting clocks were met with the playbook's templates",
        )
        for o in service.view(ref)["obligations"]:
            if o["status"] == "open":
                service.meet(ref, o["id"], by=by, how=f"drill: document rendered to {out}")
        service.close(ref, by=by, reason="drill completed")
        view = LocalIncidents(service).show(ref)
    finally:
        service.shutdown()
    next_due = (now + timedelta(days=int(playbook.drills.every_months * 30.4))).date().isoformat()
    return {
        "ref": ref,
        "grade": grade,
        "org_type": playbook.organisation.org_type,
        "obligations": planned,
        "documents_dir": str(out),
        "documents": [str(f) for f in files],
        "events": view["version"],
        "status": view["status"],
        "next_drill_due": next_due,
        "drilled_at": rfc3339(now),
    }


def _relative(due_at: str | None, discovered: str, clock_from: str, hours: Any) -> str:
    if clock_from == "handling_end":
        return f"{float(hours):g} h after handling ends"
    if not due_at:
        return "-"
    d = datetime.fromisoformat(due_at.replace("Z", "+00:00")) - datetime.fromisoformat(
        discovered.replace("Z", "+00:00")
    )
    return f"{d.total_seconds() / 3600:g} h after discovery"
