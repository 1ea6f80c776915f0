"""Incidents on both stores (SQLite and PostgreSQL) with a clock the test moves: the whole
lifecycle, refusals that record nothing, two responders at once, and incidents opened from
repeated alerts."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from trail.detect.alerts import Alert, alert_id_for, rfc3339
from trail.incidents.application import Conflict, IncidentService
from trail.incidents.domain import Incident, Refused
from trail.incidents.playbook import Playbook, load_playbook

PB = load_playbook()
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def ts(dt: datetime) -> str:
    """The application's own time format."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    """A clock the test sets: every service of a test reads it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_kwargs(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[dict[str, str]]:
    """Where this test's incidents live: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield {"sqlite_path": str(tmp_path / "incidents.db")}
        return
    schema = f"t_inc_{uuid.uuid4().hex[:10]}"
    yield {"store_url": f"{PG_DSN}?schema={schema}"}
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture()
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture()
def make_service(store_kwargs: dict[str, str], clock: Clock) -> Iterator[Callable[..., IncidentService]]:
    """Services on this test's store (a second one is a second responder or a restarted process)."""
    made: list[IncidentService] = []

    def make(playbook: Playbook = PB) -> IncidentService:
        svc = IncidentService(playbook, clock=clock, **store_kwargs)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.shutdown()


@pytest.fixture()
def service(make_service: Callable[..., IncidentService]) -> IncidentService:
    return make_service()


# --------------------------------------------------------------------------- helpers
def ob(view: dict[str, Any], oid: str) -> dict[str, Any]:
    found = [o for o in view["obligations"] if o["id"] == oid]
    assert found, f"no obligation {oid} in {[o['id'] for o in view['obligations']]}"
    return found[0]


def states(view: dict[str, Any]) -> dict[str, str]:
    return {o["id"]: o["state"] for o in view["obligations"]}


def refuse(svc: IncidentService, iid: uuid.UUID, call: Callable[[], Any], match: str) -> None:
    """``call`` is refused with ``match`` and records nothing."""
    before = svc.get(iid).version
    with pytest.raises(Refused, match=match):
        call()
    assert svc.get(iid).version == before


def facts_in_timeline(svc: IncidentService, iid: uuid.UUID) -> list[str]:
    return [e["summary"] for e in svc.timeline(iid) if e["event"] == "FactRecorded"]


# --------------------------------------------------------------------------- lifecycle
def test_full_lifecycle(service: IncidentService, make_service: Callable[..., IncidentService], clock: Clock) -> None:
    svc = service
    # -- open: nothing known yet, grade IV
    inc = svc.open(title="Customer list exported to a personal mailbox", by="alice", description="DLP hit")
    iid = inc.id
    v = svc.view(iid)
    assert v["status"] == "open"
    assert v["grade"]["level"] == "IV"
    assert v["discovered_at"] == ts(T0)
    assert {o["id"]: o["due_at"] for o in v["obligations"]} == {
        "miit_telecom_report": ts(T0 + H),
        "shenzhen_report": ts(T0 + 4 * H),
        "shenzhen_stakeholders": ts(T0 + 24 * H),
        "individual_notice": ts(T0 + 24 * H),
    }
    # exactly due_soon_hours (1 h) left on the MIIT clock
    assert ob(v, "miit_telecom_report")["state"] == "due_soon"
    assert v["flags"] == "DUE SOON 1"
    assert "brief_leadership" not in {s["id"] for s in v["steps"]}

    # -- a fact raises the grade to III: CAC report (other operator: 4 h) and the handling-end clocks
    clock.set(T0 + timedelta(minutes=10))
    svc.record_fact(iid, "people_affected", 1_000_000, source="CRM export row count", by="bob")
    v = svc.view(iid)
    assert v["grade"]["level"] == "III"
    assert v["grade"]["computed_level"] == "III"
    assert v["grade"]["overridden"] is False
    assert v["grade"]["reasons"][0].startswith("people_affected 1,000,000: people_affected >= 1,000,000 people")
    assert [(g["previous"], g["level"]) for g in v["grade_history"]] == [(None, "IV"), ("IV", "III")]
    assert ob(v, "cac_report_other")["due_at"] == ts(T0 + 4 * H)
    assert ob(v, "cac_report_other")["opened_at_grade"] == "III"
    for oid in ("closing_summary", "dalian_publish_cause", "post_incident_review"):
        assert ob(v, oid)["due_at"] is None
        assert ob(v, oid)["state"] == "not_started"
    assert {"brief_leadership", "review"} <= {s["id"] for s in v["steps"]}
    assert "cac_report_cii" not in states(v)
    assert "public_announcement" not in states(v)
    graded = [e for e in svc.timeline(iid) if e["event"] == "Graded"]
    assert graded[-1]["by"] == "bob"
    assert graded[-1]["summary"].startswith("graded III (was IV) — people_affected 1,000,000")
    assert "CAC Measures" in graded[-1]["summary"]

    # -- clocks move: overdue one second after the MIIT hour
    clock.set(T0 + H + timedelta(seconds=1))
    v = svc.view(iid)
    assert ob(v, "miit_telecom_report")["state"] == "overdue"
    assert ob(v, "miit_telecom_report")["seconds_left"] == -1
    assert v["flags"] == "OVERDUE 1"
    (summary,) = svc.summaries()
    assert summary["ref"] == inc.ref
    assert summary["grade"] == "III"
    assert (summary["overdue"], summary["due_soon"], summary["open_obligations"]) == (1, 0, 5)
    assert summary["next_obligation"] == "miit_telecom_report"
    assert summary["flags"] == "OVERDUE 1"

    clock.set(T0 + 3 * H - timedelta(seconds=1))
    assert states(svc.view(iid))["cac_report_other"] == "ok"
    clock.set(T0 + 3 * H)
    v = svc.view(iid)
    assert states(v)["cac_report_other"] == "due_soon"
    assert states(v)["shenzhen_report"] == "due_soon"
    assert v["flags"] == "OVERDUE 1, DUE SOON 2"
    (summary,) = svc.summaries()
    assert (summary["overdue"], summary["due_soon"]) == (1, 2)
    assert svc.summaries(status="closed") == []
    # view(now=...) does not depend on the service's clock
    assert states(svc.view(iid, now=T0))["miit_telecom_report"] == "due_soon"

    # -- meet: late is provable from the record; a stated earlier time is on time
    svc.meet(iid, "miit_telecom_report", by="carol", how="MIIT Guangdong portal", reference="GD-2026-1")
    svc.meet(iid, "cac_report_other", by="carol", how="phoned the provincial CAC duty office", at=T0 + 2 * H)
    v = svc.view(iid)
    miit = ob(v, "miit_telecom_report")
    assert (miit["status"], miit["state"], miit["met_at"]) == ("met", "met_late", ts(T0 + 3 * H))
    assert miit["met_by"] == "carol"
    assert (miit["how"], miit["reference"]) == ("MIIT Guangdong portal", "GD-2026-1")
    assert miit["seconds_left"] == -2 * 3600
    cac = ob(v, "cac_report_other")
    assert (cac["state"], cac["met_at"], cac["how"]) == ("met", ts(T0 + 2 * H), "phoned the provincial CAC duty office")
    refuse(svc, iid, lambda: svc.meet(iid, "cac_report_other", by="carol", how="again"), "already met")
    refuse(svc, iid, lambda: svc.meet(iid, "shenzhen_report", by="carol", how="  "), "say how")
    refuse(svc, iid, lambda: svc.meet(iid, "no_such_duty", by="carol", how="x"), "has no obligation 'no_such_duty'")
    with pytest.raises(Refused, match="in the future"):
        svc.meet(iid, "shenzhen_report", by="carol", how="x", at=clock.now + H)

    # -- override with a reason; refused (and nothing recorded) without one
    refuse(svc, iid, lambda: svc.set_grade(iid, "II", by="dave", reason="  "), "needs a reason")
    refuse(svc, iid, lambda: svc.set_grade(iid, "V", by="dave", reason="x"), "use one of I, II, III, IV")
    svc.set_grade(iid, "II", by="dave", reason="national press coverage")
    v = svc.view(iid)
    assert (v["grade"]["level"], v["grade"]["computed_level"], v["grade"]["overridden"]) == ("II", "III", True)
    assert v["grade"]["override_reason"] == "national press coverage"
    assert ob(v, "public_announcement")["due_at"] == ts(T0 + 72 * H)
    last_graded = [e for e in svc.timeline(iid) if e["event"] == "Graded"][-1]
    assert last_graded["by"] == "dave"
    assert "override of computed III: national press coverage" in last_graded["summary"]
    # the override stands while the computed grade is not more severe
    svc.record_fact(iid, "people_affected", 2_000_000, source="recount", by="bob")
    assert svc.view(iid)["grade"]["level"] == "II"
    # back to the computed grade
    svc.set_grade(iid, None, by="dave", reason="press interest faded")
    v = svc.view(iid)
    assert (v["grade"]["level"], v["grade"]["overridden"], v["grade"]["override_reason"]) == ("III", False, None)
    assert ob(v, "public_announcement")["status"] == "waived"
    assert "no longer applies at grade III" in ob(v, "public_announcement")["waived_reason"]
    # the recount re-recorded the (still overridden) grade with its new reasons
    assert [(g["level"], g["overridden"], g["by"]) for g in v["grade_history"]] == [
        ("IV", False, "alice"),
        ("III", False, "bob"),
        ("II", True, "dave"),
        ("II", True, "bob"),
        ("III", False, "dave"),
    ]

    # -- plan steps
    svc.step(iid, "activate", "start", by="alice")
    svc.step(iid, "activate", "complete", by="alice", note="plan activated")
    refuse(svc, iid, lambda: svc.step(iid, "activate", "complete", by="alice"), "already completed")
    refuse(svc, iid, lambda: svc.step(iid, "activate", "start", by="alice"), "only a pending step can be started")
    refuse(svc, iid, lambda: svc.step(iid, "dance", "start", by="alice"), "has no plan step 'dance'")
    refuse(svc, iid, lambda: svc.step(iid, "assess", "finish", by="alice"), "unknown step action")
    refuse(svc, iid, lambda: svc.step(iid, "assess", "skip", by="alice"), "needs a reason")
    refuse(svc, iid, lambda: svc.step(iid, "assess", "start", by=" "), "names the responder")
    svc.step(iid, "contain", "complete", by="erin")
    steps = {s["id"]: s for s in svc.view(iid)["steps"]}
    assert steps["activate"]["status"] == "completed"
    assert steps["activate"]["started_at"] == ts(T0 + 3 * H)
    assert steps["contain"]["started_at"] == steps["contain"]["completed_at"] == ts(T0 + 3 * H)
    assert steps["contain"]["by"] == "erin"
    assert steps["activate"]["due_at"] == ts(T0 + timedelta(minutes=30))

    # -- waive with a reason
    refuse(svc, iid, lambda: svc.waive(iid, "shenzhen_stakeholders", by="frank", reason=""), "needs a reason")
    svc.waive(iid, "shenzhen_stakeholders", by="frank", reason="no partners or entrusted parties involved")
    st = ob(svc.view(iid), "shenzhen_stakeholders")
    assert (st["status"], st["state"], st["waived_reason"]) == (
        "waived",
        "waived",
        "no partners or entrusted parties involved",
    )

    # -- contain; closing is refused before handling ends
    clock.set(T0 + 5 * H)
    svc.measure(iid, "revoked export permission of role sales-ops", by="erin")
    svc.contain(iid, by="erin", note="account u-17 disabled")
    v = svc.view(iid)
    assert (v["status"], v["contained_at"]) == ("contained", ts(T0 + 5 * H))
    assert [m["text"] for m in v["measures"]] == [
        "revoked export permission of role sales-ops",
        "account u-17 disabled",
    ]
    refuse(svc, iid, lambda: svc.contain(iid, by="erin"), "only an open incident")
    refuse(svc, iid, lambda: svc.close(iid, by="alice"), "end the handling first")
    svc.update(iid, "mailbox owner interviewed", by="alice")

    # -- resolve: the closing summary's 30 days start now
    ended = T0 + 2 * 24 * H
    clock.set(ended)
    svc.resolve(iid, by="alice", note="handling ended")
    v = svc.view(iid)
    assert (v["status"], v["handling_ended_at"]) == ("resolved", ts(ended))
    assert ob(v, "closing_summary")["due_at"] == ts(ended + 720 * H)
    assert ob(v, "post_incident_review")["due_at"] == ts(ended + 720 * H)
    assert ob(v, "dalian_publish_cause")["due_at"] == ts(ended + 168 * H)
    assert states(v)["closing_summary"] == "ok"
    assert any(e["event"] == "DeadlinesSet" and "closing_summary" in e["summary"] for e in svc.timeline(iid))
    refuse(svc, iid, lambda: svc.resolve(iid, by="alice"), "handling has already ended")

    # -- closing: review required at grade III (Dalian 6.7.5.5, 8.1), then open obligations
    refuse(svc, iid, lambda: svc.close(iid, by="alice"), r"grade III: a post-incident review .* required")
    refuse(
        svc,
        iid,
        lambda: svc.review(iid, by="alice", cause="c", responsibility="r", countermeasures="m", prevention=" "),
        "missing: prevention",
    )
    svc.review(
        iid,
        by="alice",
        cause="export permission too broad",
        responsibility="sales-ops lead",
        countermeasures="permission revoked, DLP rule tightened",
        prevention="quarterly access review",
        lessons="alert earlier",
    )
    v = svc.view(iid)
    assert v["review"]["by"] == "alice"
    assert v["facts"]["cause"]["value"] == "export permission too broad"
    # Recording the review meets the Dalian review obligation, with the review as proof.
    assert ob(v, "post_incident_review")["status"] == "met"
    assert ob(v, "post_incident_review")["how"] == "post-incident review recorded on the incident"
    with pytest.raises(Refused, match="has open obligations") as info:
        svc.close(iid, by="alice")
    still_open = {o["id"] for o in svc.view(iid)["obligations"] if o["status"] == "open"}
    assert still_open == {
        "closing_summary",
        "dalian_publish_cause",
        "individual_notice",
        "shenzhen_report",
    }
    assert ", ".join(sorted(still_open)) in str(info.value)

    svc.meet(iid, "individual_notice", by="gina", how="SMS to 1,000,000 subjects", at=T0 + 20 * H)
    svc.meet(iid, "shenzhen_report", by="carol", how="Shenzhen CAC mailbox")
    clock.set(ended + 24 * H)
    svc.meet(iid, "dalian_publish_cause", by="comms", how="notice on the website")
    svc.meet(iid, "closing_summary", by="carol", how="summary sent to the provincial CAC")
    v = svc.view(iid)
    assert states(v)["individual_notice"] == "met"
    assert states(v)["shenzhen_report"] == "met_late"
    assert states(v)["closing_summary"] == "met"
    assert v["flags"] == ""
    before_close = v["version"]
    svc.close(iid, by="alice", reason="all obligations met", expected_version=before_close)
    v = svc.view(iid)
    assert (v["status"], v["closed_by"], v["closed_at"]) == ("closed", "alice", ts(ended + 24 * H))

    # -- after closing every command is refused and records nothing
    for call in (
        lambda: svc.record_fact(iid, "people_affected", 5, source="x", by="bob"),
        lambda: svc.set_grade(iid, "I", by="dave", reason="x"),
        lambda: svc.step(iid, "assess", "start", by="alice"),
        lambda: svc.meet(iid, "closing_summary", by="carol", how="x"),
        lambda: svc.waive(iid, "closing_summary", by="carol", reason="x"),
        lambda: svc.measure(iid, "x", by="erin"),
        lambda: svc.update(iid, "x", by="erin"),
        lambda: svc.contain(iid, by="erin"),
        lambda: svc.resolve(iid, by="alice"),
        lambda: svc.review(iid, by="a", cause="c", responsibility="r", countermeasures="m", prevention="p"),
        lambda: svc.close(iid, by="alice"),
    ):
        refuse(svc, iid, call, f"^{inc.ref} is (already )?closed")

    # -- the timeline: every event in order, each with its responder
    tl = svc.timeline(iid)
    assert [e["version"] for e in tl] == list(range(1, len(tl) + 1))
    assert tl[-1]["version"] == v["version"]
    assert all(e["by"] for e in tl)
    assert [e["recorded_at"] for e in tl] == sorted(e["recorded_at"] for e in tl)
    assert tl[0]["event"] == "Opened"
    assert tl[0]["by"] == "alice"
    assert tl[-1]["event"] == "Closed"
    assert tl[-1]["summary"] == "closed: all obligations met"
    kinds = [e["event"] for e in tl]
    for kind in (
        "Graded",
        "StepsPlanned",
        "ObligationsOpened",
        "FactRecorded",
        "ObligationMet",
        "ObligationWaived",
        "StepChanged",
        "MeasureRecorded",
        "UpdateRecorded",
        "Contained",
        "Resolved",
        "DeadlinesSet",
        "Reviewed",
    ):
        assert kind in kinds, kind
    # the commands in the order they were given, with who gave them
    commands = [
        (e["event"], e["by"])
        for e in tl
        if e["event"] in ("FactRecorded", "StepChanged", "ObligationMet", "Contained", "Resolved", "Reviewed", "Closed")
    ]
    assert commands == [
        ("FactRecorded", "bob"),
        ("ObligationMet", "carol"),
        ("ObligationMet", "carol"),
        ("FactRecorded", "bob"),
        ("StepChanged", "alice"),
        ("StepChanged", "alice"),
        ("StepChanged", "erin"),
        ("Contained", "erin"),
        ("Resolved", "alice"),
        ("Reviewed", "alice"),
        ("FactRecorded", "alice"),  # the review's cause
        ("ObligationMet", "alice"),  # the review meets post_incident_review
        ("ObligationMet", "gina"),
        ("ObligationMet", "carol"),
        ("ObligationMet", "comms"),
        ("ObligationMet", "carol"),
        ("Closed", "alice"),
    ]
    met_late = next(e for e in tl if e["event"] == "ObligationMet")
    assert met_late["summary"] == (
        f"obligation miit_telecom_report met at {ts(T0 + 3 * H)} — MIIT Guangdong portal (ref GD-2026-1)"
    )

    # -- persistence: a new service on the same store sees exactly the same incident
    at = ended + 100 * H
    again = make_service()
    assert again.view(iid, now=at) == svc.view(iid, now=at)
    assert again.timeline(iid) == tl
    assert again.resolve_id(inc.ref) == iid
    assert again.summaries(now=at) == svc.summaries(now=at)


def test_refusals_on_open(service: IncidentService) -> None:
    with pytest.raises(Refused, match="names the responder"):
        service.open(title="x", by=" ")
    with pytest.raises(Refused, match="needs a title"):
        service.open(title=" ", by="alice")
    with pytest.raises(Refused, match="in the future"):
        service.open(title="x", by="alice", discovered_at=T0 + H)
    assert service.ids() == []
    inc = service.open(title="x", by="alice", discovered_at=T0 - 3 * H)
    assert service.view(inc.id)["discovered_at"] == ts(T0 - 3 * H)
    # clocks run from discovery, not from opening
    assert ob(service.view(inc.id), "miit_telecom_report")["state"] == "overdue"
    refuse(service, inc.id, lambda: service.record_fact(inc.id, "x", 1, source=" ", by="bob"), "needs its source")
    # the same value from the same source again records nothing
    service.record_fact(inc.id, "people_affected", 10, source="count", by="bob")
    refuse(
        service,
        inc.id,
        lambda: service.waive(inc.id, "individual_notice", by="bob", reason=" "),
        "needs a reason",
    )
    version = service.get(inc.id).version
    service.record_fact(inc.id, "people_affected", 10, source="count", by="bob")
    assert service.get(inc.id).version == version


def test_override_yields_to_more_severe_facts(service: IncidentService) -> None:
    inc = service.open(title="x", by="alice", facts={"people_affected": (1_000_000, "count")})
    service.set_grade(inc.id, "II", by="dave", reason="regulator asked for it")
    service.record_fact(inc.id, "direct_loss_cny", 1_000, source="finance", by="bob")
    v = service.view(inc.id)
    assert (v["grade"]["level"], v["grade"]["overridden"]) == ("II", True)
    assert v["grade"]["override_reason"] == "regulator asked for it"
    service.record_fact(inc.id, "people_affected", 100_000_000, source="recount", by="bob")  # computed I
    v = service.view(inc.id)
    assert (v["grade"]["level"], v["grade"]["computed_level"], v["grade"]["overridden"]) == ("I", "I", False)
    assert v["grade"]["override_reason"] is None
    # set_grade(None) when not overridden records nothing
    version = v["version"]
    service.set_grade(inc.id, None, by="dave", reason="")
    assert service.get(inc.id).version == version


def test_override_down_stands_until_the_facts_are_more_severe(service: IncidentService) -> None:
    inc = service.open(title="x", by="alice", facts={"people_affected": (1_000_000, "count")})
    assert service.view(inc.id)["grade"]["level"] == "III"
    service.set_grade(inc.id, "IV", by="dave", reason="records were test data")
    v = service.view(inc.id)
    assert (v["grade"]["level"], v["grade"]["overridden"]) == ("IV", True)
    assert ob(v, "cac_report_other")["status"] == "waived"
    service.record_fact(inc.id, "cause", "test data in production", source="analyst", by="bob")  # unrelated
    v = service.view(inc.id)
    assert (v["grade"]["level"], v["grade"]["overridden"]) == ("IV", True)


def test_obligations_follow_the_organisation(make_service: Callable[..., IncidentService]) -> None:
    """A CII operator in Shenzhen only: CAC 1 h, Shenzhen's report, no MIIT; police once crime is suspected."""
    pb = PB.with_organisation(cii_operator=True, jurisdictions=("national", "shenzhen"), sector="finance")
    svc = make_service(pb)
    inc = svc.open(title="x", by="alice", facts={"people_affected": (1_000_000, "count")})
    v = svc.view(inc.id)
    assert {o["id"]: o["due_at"] for o in v["obligations"]} == {
        "cac_report_cii": ts(T0 + H),
        "shenzhen_report": ts(T0 + 4 * H),
        "shenzhen_stakeholders": ts(T0 + 24 * H),
        "individual_notice": ts(T0 + 24 * H),
        "closing_summary": None,
    }
    svc.record_fact(inc.id, "suspected_crime", True, source="legal", by="bob")
    assert ob(svc.view(inc.id), "police_report")["due_at"] == ts(T0 + 4 * H)
    # no review required below III: a grade IV incident closes without one
    small = svc.open(title="y", by="alice")
    for o in svc.view(small.id)["obligations"]:
        svc.waive(small.id, o["id"], by="bob", reason="drill")
    svc.resolve(small.id, by="bob")
    svc.close(small.id, by="bob")
    assert svc.view(small.id)["status"] == "closed"


def test_obligations_reopen_when_the_grade_goes_back_up(service: IncidentService) -> None:
    inc = service.open(title="x", by="alice")
    service.record_fact(inc.id, "people_affected", 1_000_000, source="first count", by="bob")
    assert ob(service.view(inc.id), "cac_report_other")["status"] == "open"
    service.record_fact(inc.id, "people_affected", 10, source="recount: duplicates", by="bob")
    v = service.view(inc.id)
    assert v["grade"]["level"] == "IV"
    assert ob(v, "cac_report_other")["status"] == "waived"
    service.record_fact(inc.id, "people_affected", 2_000_000, source="second recount: backups", by="bob")
    v = service.view(inc.id)
    assert v["grade"]["level"] == "III"
    assert ob(v, "cac_report_other")["status"] == "open"


# --------------------------------------------------------------------------- two responders
def test_concurrent_change_conflicts(make_service: Callable[..., IncidentService], clock: Clock) -> None:
    a, b = make_service(), make_service()
    inc = a.open(title="x", by="alice")
    iid = inc.id
    n = b.get(iid).version
    a_version: list[int] = []

    def b_change(agg: Incident) -> None:
        assert agg.version == n  # B has read version N ...
        a.record_fact(iid, "people_affected", 1_000_000, source="A's count", by="alice")  # ... A saves first
        a_version.append(a.get(iid).version)
        agg.record_fact("suspected_crime", True, source="B's lawyer", by="bob", at=ts(clock.now))

    with pytest.raises(Conflict) as info:
        b.apply(iid, b_change)
    msg = str(info.value)
    assert msg.startswith(f"{inc.ref} was changed by alice (")
    assert f"now version {a_version[0]}" in msg
    assert "nothing of yours was saved" in msg
    assert "retry" in msg
    assert b.get(iid).version == a_version[0]
    facts = facts_in_timeline(b, iid)
    assert facts == ["fact people_affected = 1000000 (source: A's count)"]
    # B retries on top of A's change: both are there
    b.record_fact(iid, "suspected_crime", True, source="B's lawyer", by="bob")
    assert facts_in_timeline(a, iid) == [
        "fact people_affected = 1000000 (source: A's count)",
        "fact suspected_crime = True (source: B's lawyer)",
    ]
    v = a.view(iid)
    assert v["grade"]["level"] == "III"
    assert "police_report" in states(v)


def test_stale_expected_version_is_a_conflict(make_service: Callable[..., IncidentService]) -> None:
    a, b = make_service(), make_service()
    inc = a.open(title="x", by="alice")
    read = b.view(inc.id)["version"]
    a.update(inc.id, "A's note", by="alice", expected_version=read)
    now = a.get(inc.id).version
    assert now == read + 1
    for call in (
        lambda: b.update(inc.id, "B's note", by="bob", expected_version=read),
        lambda: b.record_fact(inc.id, "people_affected", 5, source="s", by="bob", expected_version=read),
        lambda: b.set_grade(inc.id, "II", by="bob", reason="r", expected_version=read),
        lambda: b.close(inc.id, by="bob", expected_version=read),
    ):
        with pytest.raises(Conflict, match=rf"is at version {now}, not {read}: it changed since you read it"):
            call()
    assert b.get(inc.id).version == now
    assert [u["text"] for u in b.view(inc.id)["updates"]] == ["A's note"]
    b.update(inc.id, "B's note", by="bob", expected_version=now)
    assert [u["text"] for u in a.view(inc.id)["updates"]] == ["A's note", "B's note"]


def test_two_threads_hammering_one_incident(make_service: Callable[..., IncidentService]) -> None:
    """Every successful call is in the timeline exactly once; every failure is a Conflict."""
    a, b = make_service(), make_service()
    inc = a.open(title="x", by="alice")
    ok: dict[str, list[str]] = {"A": [], "B": []}
    conflicts: dict[str, list[str]] = {"A": [], "B": []}
    other: list[BaseException] = []
    start = threading.Barrier(2)

    def run(svc: IncidentService, name: str) -> None:
        start.wait()
        for i in range(25):
            value = f"{name}{i}"
            try:
                svc.record_fact(inc.id, "note", value, source="hammer", by=name)
            except Conflict:
                conflicts[name].append(value)
            except BaseException as exc:  # noqa: BLE001  # reported below: nothing may fail otherwise
                other.append(exc)
            else:
                ok[name].append(value)

    threads = [threading.Thread(target=run, args=(svc, name)) for svc, name in ((a, "A"), (b, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert other == []
    assert sum(len(v) for v in ok.values()) + sum(len(v) for v in conflicts.values()) == 50
    recorded = [e for e in a.timeline(inc.id) if e["event"] == "FactRecorded"]
    values = [e["summary"].split(" = ")[1].split(" ")[0].strip("'") for e in recorded]
    assert sorted(values) == sorted(ok["A"] + ok["B"])
    assert len(values) == len(set(values))
    assert {e["by"] for e in recorded} <= {"A", "B"}
    # each thread's own successes are in its own order
    for name in ("A", "B"):
        assert [x for x in values if x.startswith(name)] == ok[name]
    assert a.view(inc.id)["facts"]["note"]["value"] == values[-1]


# --------------------------------------------------------------------------- incidents from alerts
def alert(rule: str, actor: str, start: datetime, records: int = 5000) -> dict[str, Any]:
    """An alert as the detector publishes it (``Alert.to_dict()``); the same arguments give the same alert."""
    ws = start.timestamp()
    evidence = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule}|{actor}|{ws}|{i}")) for i in range(3)]
    return Alert(
        alert_id=alert_id_for(rule, actor, ws),
        rule=rule,
        severity="high",
        actor=actor,
        actor_kind="staff",
        key=actor,
        window_start=rfc3339(ws),
        window_end=rfc3339(ws + 600),
        count=3,
        records=records,
        evidence=evidence,
        articles=["PIPL Art. 51"],
        summary=f"{actor}: {rule}, {records} records",
        trigger_event_id=evidence[-1],
        detected_at=rfc3339(ws + 660),
    ).to_dict()


def close_quietly(svc: IncidentService, iid: uuid.UUID) -> None:
    for o in svc.view(iid)["obligations"]:
        if o["status"] == "open":
            svc.waive(iid, o["id"], by="bob", reason="false positive: approved migration")
    svc.resolve(iid, by="bob")
    svc.close(iid, by="bob", reason="false positive")


def test_incidents_from_repeated_alerts(make_service: Callable[..., IncidentService], clock: Clock) -> None:
    svc = make_service()
    a1 = alert("bulk_export", "u-17", T0)
    inc1, attached, created = svc.open_from_alerts([a1])
    assert (attached, created) == ([a1["alert_id"]], True)
    v = svc.view(inc1.id)
    assert v["source"] == "alerts"
    assert v["title"] == "bulk_export by u-17"
    assert v["discovered_at"] == ts(T0 + timedelta(seconds=660))  # detected_at
    assert v["opened_by"] == "trail-trigger"
    assert v["grade"]["level"] == "IV"
    assert [x["evidence"] for x in v["alerts"]] == [a1["evidence"]]
    version = v["version"]

    # the same alert again: the same incident, nothing recorded
    again, attached, created = svc.open_from_alerts([dict(a1)])
    assert (again.id, attached, created) == (inc1.id, [], False)
    assert svc.get(inc1.id).version == version

    # another alert of the same actor within 24 h: attached to the same incident
    a2 = alert("off_hours", "u-17", T0 + 5 * H)
    same, attached, created = svc.open_from_alerts([a2])
    assert (same.id, attached, created) == (inc1.id, [a2["alert_id"]], False)
    assert [x["alert_id"] for x in svc.view(inc1.id)["alerts"]] == [a1["alert_id"], a2["alert_id"]]
    version = svc.get(inc1.id).version

    # both again in one batch: nothing new
    same, attached, created = svc.open_from_alerts([a2, a1])
    assert (same.id, attached, created) == (inc1.id, [], False)
    assert svc.get(inc1.id).version == version

    # another actor: another incident
    b1 = alert("bulk_export", "u-99", T0 + H)
    inc2, attached, created = svc.open_from_alerts([b1])
    assert inc2.id != inc1.id
    assert (attached, created) == ([b1["alert_id"]], True)

    # the same actor three days later: a new incident
    a3 = alert("bulk_export", "u-17", T0 + 72 * H)
    inc3, _, created = svc.open_from_alerts([a3])
    assert created
    assert inc3.id not in (inc1.id, inc2.id)

    # a restarted trigger (a fresh service on the same store) finds them all
    restarted = make_service()
    for a, iid in ((a1, inc1.id), (a2, inc1.id), (b1, inc2.id), (a3, inc3.id)):
        found, attached, created = restarted.open_from_alerts([a])
        assert (found.id, attached, created) == (iid, [], False)
    a4 = alert("enumeration", "u-17", T0 + 74 * H)
    found, attached, created = restarted.open_from_alerts([a4])
    assert (found.id, attached, created) == (inc3.id, [a4["alert_id"]], False)
    assert svc.get(inc1.id).version == version
    assert len(svc.ids()) == 3

    # after the incident is closed a new alert of the actor opens a new one
    close_quietly(svc, inc1.id)
    a5 = alert("denied_burst", "u-17", T0 + 6 * H)
    inc5, attached, created = svc.open_from_alerts([a5])
    assert created
    assert inc5.id not in (inc1.id, inc2.id, inc3.id)
    assert attached == [a5["alert_id"]]
    assert svc.view(inc1.id)["status"] == "closed"
    assert [s["ref"] for s in svc.summaries(status="open")] == [svc.get(i).ref for i in (inc2.id, inc3.id, inc5.id)]


def test_alert_redelivered_after_close_is_a_no_op(make_service: Callable[..., IncidentService]) -> None:
    svc = make_service()
    a1 = alert("bulk_export", "u-17", T0)
    inc, _, _ = svc.open_from_alerts([a1])
    close_quietly(svc, inc.id)
    version = svc.get(inc.id).version
    found, attached, created = svc.open_from_alerts([a1])
    assert (found.id, attached, created) == (inc.id, [], False)
    assert svc.get(inc.id).version == version


def test_two_triggers_open_one_incident(make_service: Callable[..., IncidentService]) -> None:
    """Two trigger processes handling the same alert at once open one incident between them."""
    a, b = make_service(), make_service()
    for k in range(3):
        al = alert("bulk_export", f"u-{k}", T0 + k * H)
        results, errors = race_open(a, b, al)
        assert errors == []
        assert len({r[0] for r in results}) == 1
        assert sum(r[2] for r in results) == 1
        assert sorted(len(r[1]) for r in results) == [0, 1]
    assert len(a.ids()) == 3


def race_open(
    a: IncidentService, b: IncidentService, al: dict[str, Any]
) -> tuple[list[tuple[uuid.UUID, list[str], bool]], list[BaseException]]:
    """Both services open the incident of ``al`` at the same moment, each in its own thread."""
    results: list[tuple[uuid.UUID, list[str], bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(svc: IncidentService) -> None:
        start.wait()
        try:
            inc, attached, created = svc.open_from_alerts([al])
            results.append((inc.id, attached, created))
        except BaseException as exc:  # noqa: BLE001  # reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(svc,)) for svc in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return results, errors
