"""Grading and clocks of the default playbook: thresholds ("以上" includes the number), sector
overlays, unknown facts, obligations per organisation type and jurisdiction, clock states at
their exact boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trail.incidents.grading import clock_state, compute_grade, criteria_by_level, deadline, human_left
from trail.incidents.playbook import JURISDICTIONS, Playbook, load_playbook

PB = load_playbook()
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
S = timedelta(seconds=1)


def grade(facts: dict[str, Any], pb: Playbook = PB) -> str:
    return compute_grade(facts, pb).level


# --------------------------------------------------------------------------- thresholds
# Every criterion of the default playbook for the telecom sector: (fact, value, grade, the grade
# just below the value). Checked against the playbook so a new criterion makes this test fail.
THRESHOLDS = [
    ("people_affected", 100_000_000, "I", "II"),
    ("direct_loss_cny", 100_000_000, "I", "IV"),
    ("people_affected", 10_000_000, "II", "III"),
    ("sensitive_people", 1_000_000, "II", "IV"),  # telecom overlay (MIIT 2024)
    ("systems_down_hours", 12, "II", "IV"),  # telecom overlay (MIIT 2024)
    ("people_affected", 1_000_000, "III", "IV"),
]


def test_threshold_table_covers_every_numeric_criterion() -> None:
    numeric = {
        (c.fact, c.value, level)
        for level, criteria in criteria_by_level(PB).items()
        for c in criteria
        if not isinstance(c.value, bool)
    }
    assert numeric == {(f, float(v), lv) for f, v, lv, _ in THRESHOLDS}


@pytest.mark.parametrize(("fact", "value", "level", "below"), THRESHOLDS, ids=lambda x: str(x))
def test_threshold_boundaries(fact: str, value: int, level: str, below: str) -> None:
    assert grade({fact: value - 1}) == below
    assert grade({fact: value}) == level  # "以上" includes the number itself
    assert grade({fact: value + 1}) == level
    assert grade({fact: float(value)}) == level
    assert grade({fact: value - 0.001}) == below


def test_reasons_name_the_criterion_and_its_source() -> None:
    r = compute_grade({"people_affected": 1_000_000}, PB)
    assert r.level == "III"
    assert len(r.reasons) == 1
    assert r.reasons[0].startswith("people_affected 1,000,000: people_affected >= 1,000,000 people — CAC Measures")
    assert r.reasons[0].endswith("(verify)")
    assert r.reasons_zh[0].endswith("(待核实)")
    verified = compute_grade({"direct_loss_cny": 100_000_000}, PB)
    assert verified.level == "I"
    assert "(verify)" not in verified.reasons[0]


def test_most_severe_grade_wins() -> None:
    facts = {"people_affected": 1_000_000, "sensitive_people": 1_000_000, "direct_loss_cny": 100_000_000}
    r = compute_grade(facts, PB)
    assert r.level == "I"
    assert len(r.reasons) == 1
    assert r.reasons[0].startswith("direct_loss_cny")
    assert grade({"people_affected": 5, "serious_threat": True, "systems_down_hours": 12}) == "II"


def test_nothing_known_is_grade_iv_and_lists_every_fact() -> None:
    r = compute_grade({}, PB)
    assert r.level == "IV"
    assert r.unknown == [
        "direct_loss_cny",
        "people_affected",
        "sensitive_people",
        "serious_threat",
        "systems_down_hours",
    ]
    assert "grade IV" in r.reasons[0]


# --------------------------------------------------------------------------- booleans
def test_serious_threat_boolean() -> None:
    assert grade({"serious_threat": True}) == "III"
    r = compute_grade({"serious_threat": False}, PB)
    assert r.level == "IV"
    assert "serious_threat" not in r.unknown
    assert grade({"serious_threat": None}) == "IV"
    assert "serious_threat" in compute_grade({"serious_threat": None}, PB).unknown
    # A boolean does not outrank a number: 10 M people is II whatever the threat.
    assert grade({"serious_threat": True, "people_affected": 10_000_000}) == "II"
    reason = compute_grade({"serious_threat": True}, PB).reasons[0]
    assert reason.startswith("serious_threat true: serious_threat = yes")


@pytest.mark.parametrize("text", ["false", "no", "0"])
def test_boolean_fact_given_as_text_false_does_not_raise_the_grade(text: str) -> None:
    assert grade({"serious_threat": text}) == "IV"


# --------------------------------------------------------------------------- unknown facts
@pytest.mark.parametrize("value", [None, "unknown", "lots", "1,000,000", [], {}])
def test_unknown_value_never_raises_the_grade(value: Any) -> None:
    r = compute_grade({"people_affected": value, "direct_loss_cny": value}, PB)
    assert r.level == "IV"
    assert "people_affected" in r.unknown
    assert "direct_loss_cny" in r.unknown


def test_unknown_facts_listed_alongside_a_grade() -> None:
    r = compute_grade({"serious_threat": True}, PB)
    assert r.level == "III"
    # What could still make it more severe is listed.
    assert r.unknown == ["direct_loss_cny", "people_affected", "sensitive_people", "systems_down_hours"]
    r = compute_grade({"people_affected": 10_000_000, "direct_loss_cny": 0}, PB)
    assert r.level == "II"
    # I's criteria are known; the other criteria of II are listed, nothing of III.
    assert r.unknown == ["sensitive_people", "systems_down_hours"]


def test_numeric_text_counts_and_facts_outside_criteria_are_ignored() -> None:
    assert grade({"people_affected": "1000000"}) == "III"
    assert grade({"cause": "misconfigured bucket", "categories": ["phone"], "location": "Shenzhen"}) == "IV"


# --------------------------------------------------------------------------- sector overlays
@pytest.mark.parametrize(
    ("sector", "sensitive", "down"),
    [
        ("telecom", "II", "II"),
        ("internet", "II", "IV"),
        ("industry", "II", "IV"),
        ("finance", "IV", "IV"),
        ("health", "IV", "IV"),
        ("other", "IV", "IV"),
    ],
)
def test_sector_overlays(sector: str, sensitive: str, down: str) -> None:
    pb = PB.with_organisation(sector=sector)
    assert grade({"sensitive_people": 999_999}, pb) == "IV"
    assert grade({"sensitive_people": 1_000_000}, pb) == sensitive
    assert grade({"sensitive_people": 1_000_001}, pb) == sensitive
    assert grade({"systems_down_hours": 11.99}, pb) == "IV"
    assert grade({"systems_down_hours": 12}, pb) == down
    # The common criteria apply whatever the sector.
    assert grade({"people_affected": 1_000_000}, pb) == "III"
    assert grade({"people_affected": 10_000_000}, pb) == "II"
    unknown = compute_grade({}, pb).unknown
    assert ("sensitive_people" in unknown) == (sensitive == "II")
    assert ("systems_down_hours" in unknown) == (down == "II")


def test_overlay_reason_names_miit() -> None:
    r = compute_grade({"systems_down_hours": 12}, PB)
    assert r.level == "II"
    assert "MIIT emergency plan" in r.reasons[0]
    assert "12 hours" in r.reasons[0]


def test_with_organisation_leaves_the_original_alone() -> None:
    finance = PB.with_organisation(sector="finance")
    assert finance.organisation.sector == "finance"
    assert PB.organisation.sector == "telecom"
    assert grade({"sensitive_people": 1_000_000}) == "II"


# --------------------------------------------------------------------------- obligations
CAC = {"cii": ("cac_report_cii", 1), "state_organ": ("cac_report_state_organ", 2), "other": ("cac_report_other", 4)}
ORGS = {
    "cii": {"cii_operator": True, "state_organ": False},
    "state_organ": {"cii_operator": False, "state_organ": True},
    "other": {"cii_operator": False, "state_organ": False},
}
JURS = {
    "national": ("national",),
    "miit": ("national", "miit_telecom"),
    "shenzhen": ("national", "shenzhen"),
    "dalian": ("national", "dalian"),
    "xiamen": ("national", "xiamen"),
    "all": tuple(JURISDICTIONS),
}


def expected(level: str, org: str, jurs: tuple[str, ...], crime: bool) -> dict[str, tuple[str, int]]:
    """What REGULATORY-DEFAULTS.md and the default plan say applies: id -> (clock start, hours)."""
    out: dict[str, tuple[str, int]] = {"individual_notice": ("discovery", 24)}
    if level in ("I", "II", "III"):  # CAC 2025 Art. 4: 较大 (III) or above only
        oid, hours = CAC[org]
        out[oid] = ("discovery", hours)
        out["closing_summary"] = ("handling_end", 720)
    if level in ("I", "II"):
        out["public_announcement"] = ("discovery", 72)
    if crime:
        out["police_report"] = ("discovery", 4)
    if "miit_telecom" in jurs:  # MIIT Order 24 Art. 14
        out["miit_telecom_report"] = ("discovery", 1)
    if "shenzhen" in jurs:  # Shenzhen Art. 86
        out["shenzhen_report"] = ("discovery", 4)
        out["shenzhen_stakeholders"] = ("discovery", 24)
    if "dalian" in jurs and level in ("I", "II", "III"):  # Dalian 6.7.5.5, 8.1
        out["dalian_publish_cause"] = ("handling_end", 168)
        out["post_incident_review"] = ("handling_end", 720)
    return out


@pytest.mark.parametrize("crime", [False, True], ids=["no-crime", "suspected-crime"])
@pytest.mark.parametrize("jurs", list(JURS), ids=list(JURS))
@pytest.mark.parametrize("org", list(ORGS))
@pytest.mark.parametrize("level", ["I", "II", "III", "IV"])
def test_obligations_and_deadlines(level: str, org: str, jurs: str, crime: bool) -> None:
    pb = PB.with_organisation(jurisdictions=JURS[jurs], **ORGS[org])
    assert pb.organisation.org_type == org
    facts = {"suspected_crime": crime}
    obs = {o.id: o for o in pb.obligations_for(level, facts)}
    want = expected(level, org, JURS[jurs], crime)
    assert set(obs) == set(want)
    ended = T0 + timedelta(days=3, hours=5, minutes=7)
    for oid, (start, hours) in want.items():
        ob = obs[oid]
        assert ob.clock_from == start
        if start == "discovery":
            assert deadline(ob, discovered_at=T0, handling_ended_at=None) == T0 + hours * H
            assert deadline(ob, discovered_at=T0, handling_ended_at=ended) == T0 + hours * H
        else:
            # No deadline until handling ends, then its hours after the end.
            assert deadline(ob, discovered_at=T0, handling_ended_at=None) is None
            assert deadline(ob, discovered_at=T0, handling_ended_at=ended) == ended + hours * H


def test_cac_clocks_by_organisation_type() -> None:
    """CAC 2025 Art. 4: CII 1 h, state organ 2 h, others 4 h — only from grade III up."""
    for org, (oid, hours) in CAC.items():
        pb = PB.with_organisation(**ORGS[org])
        for level in ("I", "II", "III"):
            cac = [o for o in pb.obligations_for(level, {}) if o.id.startswith("cac_report")]
            assert [o.id for o in cac] == [oid]
            assert deadline(cac[0], discovered_at=T0, handling_ended_at=None) == T0 + hours * H
        assert not [o for o in pb.obligations_for("IV", {}) if o.id.startswith("cac_report")]


def test_cii_state_organ_is_treated_as_cii() -> None:
    pb = PB.with_organisation(cii_operator=True, state_organ=True)
    assert pb.organisation.org_type == "cii"
    assert [o.id for o in pb.obligations_for("III", {}) if o.kind == "regulator_report" and "cac" in o.id] == [
        "cac_report_cii"
    ]


def test_police_only_when_crime_is_suspected() -> None:
    for facts in ({}, {"suspected_crime": False}, {"suspected_crime": None}):
        assert "police_report" not in {o.id for o in PB.obligations_for("IV", facts)}
    assert "police_report" in {o.id for o in PB.obligations_for("IV", {"suspected_crime": True})}


def test_police_not_due_when_crime_is_text_false() -> None:
    assert "police_report" not in {o.id for o in PB.obligations_for("IV", {"suspected_crime": "false"})}


def test_closing_summary_720_hours_after_handling_ends() -> None:
    ob = PB.obligation("closing_summary")
    assert ob is not None
    assert deadline(ob, discovered_at=T0, handling_ended_at=None) is None
    end = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)
    assert deadline(ob, discovered_at=T0, handling_ended_at=end) == end + timedelta(days=30)


# --------------------------------------------------------------------------- clock states
DUE = T0 + 4 * H


def state(now: datetime, *, status: str = "open", met_at: datetime | None = None) -> tuple[str, float | None]:
    return clock_state(due_at=DUE, status=status, met_at=met_at, now=now, due_soon_hours=PB.due_soon_hours)


def test_clock_state_boundaries() -> None:
    assert state(DUE - H - S) == ("ok", 3601.0)
    assert state(DUE - H) == ("due_soon", 3600.0)  # exactly due_soon_hours left
    assert state(DUE - S) == ("due_soon", 1.0)
    assert state(DUE) == ("due_soon", 0.0)  # at the deadline: not late yet
    assert state(DUE + S) == ("overdue", -1.0)  # one second after
    assert state(DUE + 2 * H) == ("overdue", -7200.0)


def test_met_and_met_late() -> None:
    later = DUE + 10 * H  # "now" does not matter once met
    assert state(later, status="met", met_at=DUE) == ("met", 0.0)
    assert state(later, status="met", met_at=DUE - H) == ("met", 3600.0)
    assert state(later, status="met", met_at=DUE + S) == ("met_late", -1.0)
    assert state(later, status="waived") == ("waived", None)


def test_clock_without_deadline() -> None:
    assert clock_state(due_at=None, status="open", met_at=None, now=T0, due_soon_hours=1) == ("not_started", None)
    assert clock_state(due_at=None, status="met", met_at=T0, now=T0, due_soon_hours=1) == ("met", None)


def test_due_soon_window_follows_the_playbook() -> None:
    assert clock_state(due_at=DUE, status="open", met_at=None, now=DUE - 2 * H, due_soon_hours=2)[0] == "due_soon"
    assert clock_state(due_at=DUE, status="open", met_at=None, now=DUE - 2 * H - S, due_soon_hours=2)[0] == "ok"
    assert clock_state(due_at=DUE, status="open", met_at=None, now=DUE - S, due_soon_hours=0)[0] == "ok"


def test_human_left() -> None:
    assert human_left(None) == "-"
    assert human_left(3 * 3600 + 12 * 60) == "3h 12m left"
    assert human_left(-25 * 60) == "overdue by 25m"
    assert human_left(0) == "0m left"
    assert human_left(2 * 86400 + 5 * 3600) == "2d 5h left"
