"""Breach-response documents: every kind, language and format, rendered from the engine's context."""

from __future__ import annotations

import copy
import html
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from trail import documents
from trail.documents import (
    ALL_KINDS,
    DOCUMENT_KINDS,
    FORMATS,
    LANGS,
    PLAN_KIND,
    DocumentError,
    MissingElementError,
    markdown_to_html,
    md_escape,
    render,
    render_plan,
    required_elements,
    write_documents,
)
from trail.events.model import DATA_CATEGORIES

SUBJECT_REF = "3f" * 32  # a pseudonymised subject reference (HMAC-SHA256 hex)
OTHER_REF = "a1b2c3d4" * 8
INCIDENT_ID = "0b7c6a52-3c1e-4f0e-9d55-5a1d2f3e4b6c"


def _fact(value: Any, source: str = "evidence", at: str = "2026-11-22T03:10:00Z") -> dict[str, Any]:
    return {"value": value, "source": source, "by": "E1001", "at": at}


def _org() -> dict[str, Any]:
    return {
        "name": "示例银行股份有限公司",
        "name_en": "Example Bank Co., Ltd.",
        "sector": "finance",
        "cii_operator": False,
        "state_organ": False,
        "jurisdictions": ["cac", "miit_telecom", "shenzhen", "xiamen", "dalian"],
        "address": "深圳市福田区示例大道 1 号 / 1 Example Avenue, Futian, Shenzhen",
        "licence": "B2-20200000",
        "pi_officer": {"name": "王敏 / Wang Min", "phone": "+86 755 0000 0000", "email": "privacy@bank.example"},
        "public_contact": {"phone": "95500", "email": "help@bank.example", "web": "https://bank.example/notice"},
    }


def incident_ctx() -> dict[str, Any]:
    """A realistic context of a contained, graded III leak, with evidence and obligations."""
    return {
        "generated_at": "2026-11-22T13:00:00Z",
        "timezone": "Asia/Shanghai",
        "org": _org(),
        "incident": {
            "id": INCIDENT_ID,
            "ref": "INC-1A2B3C4D",
            "title": "Bulk export of customer records by a service account",
            "description": "A reporting service account exported customer records to an external host.",
            "status": "contained",
            "drill": False,
            "source": "alerts",
            "discovered_at": "2026-11-22T02:40:00Z",
            "opened_at": "2026-11-22T02:45:00Z",
            "opened_by": "E1001",
            "contained_at": "2026-11-22T05:00:00Z",
            "handling_ended_at": "2026-11-25T10:00:00Z",
            "closed_at": None,
            "grade": {
                "level": "III",
                "name_zh": "较大",
                "name_en": "Relatively serious",
                "colour": "yellow",
                "computed_level": "III",
                "overridden": False,
                "override_reason": None,
                "reasons": ["people_affected 1,200,000 ≥ 1,000,000 (CAC 2025 annex, verify)"],
            },
            "grade_history": [
                {"level": "IV", "previous": None, "by": "system", "at": "2026-11-22T02:45:00Z", "overridden": False},
                {"level": "III", "previous": "IV", "by": "E1001", "at": "2026-11-22T03:10:00Z", "overridden": False},
            ],
            "facts": {
                "people_affected": _fact(1_200_000),
                "sensitive_people": _fact(300_000),
                "categories": _fact(["name", "phone", "id_number"]),
                "sensitive_categories": _fact(["id_number"]),
                "cause": _fact("Over-broad export permission on a reporting service account", "manual"),
                "possible_harm": _fact("Fraud calls and identity misuse", "manual"),
                "direct_loss_cny": _fact(0, "manual"),
                "cii_involved": _fact(False, "manual"),
                "systems_down_hours": _fact(0, "manual"),
                "suspected_crime": _fact(True, "manual"),
                "location": _fact("Shenzhen data centre", "manual"),
                "type": _fact("leak", "manual"),
                "trend": _fact("No further exports since containment", "manual", "2026-11-22T08:00:00Z"),
                "scene_preservation": _fact("Host images and firewall logs preserved", "manual"),
            },
            "evidence": {
                "computed_at": "2026-11-22T03:05:00Z",
                "query": {"rule": "bulk_export", "actor": "svc-report", "subject_refs": [SUBJECT_REF]},
                "people_affected": 1_200_000,
                "distinct_subjects": 1_200_000,
                "sensitive_subjects": 300_000,
                "records": 1_450_000,
                "events": 37,
                "categories": ["name", "phone", "id_number"],
                "sensitive_categories": ["id_number"],
                "window_start": "2026-11-21T16:00:00Z",
                "window_end": "2026-11-22T02:30:00Z",
                "actors": ["svc-report"],
                "systems": ["crm", "reporting"],
                "destinations": [{"kind": "third_party", "name": "203.0.113.7", "region": "abroad"}],
                "alert_ids": ["al-91"],
                "subject_refs": [SUBJECT_REF, OTHER_REF],
                "digest": "9e" * 32,
            },
            "alerts": [
                {
                    "alert_id": "al-91",
                    "rule": "bulk_export",
                    "severity": "critical",
                    "summary": "1.45M records exported in 10 h",
                    "articles": ["Shenzhen Art. 83"],
                }
            ],
            "measures": [
                {"at": "2026-11-22T03:00:00Z", "by": "E1002", "text": "Disabled the service account"},
                {"at": "2026-11-22T04:30:00Z", "by": "E1002", "text": "Blocked outbound transfers to the host"},
                {"at": "2026-11-22T09:00:00Z", "by": "E1003", "text": "Reset export permissions for reporting"},
            ],
            "steps": [
                {
                    "id": "contain",
                    "title_zh": "控制事态",
                    "title_en": "Contain",
                    "role": "security",
                    "due_at": "2026-11-22T04:40:00Z",
                    "status": "done",
                    "started_at": "2026-11-22T02:50:00Z",
                    "completed_at": "2026-11-22T05:00:00Z",
                    "by": "E1002",
                    "note": "",
                },
                {
                    "id": "notify",
                    "title_zh": "通知受影响的个人",
                    "title_en": "Notify the individuals affected",
                    "role": "comms",
                    "due_at": "2026-11-23T02:40:00Z",
                    "status": "pending",
                    "started_at": None,
                    "completed_at": None,
                    "by": None,
                    "note": None,
                },
            ],
            "obligations": [
                {
                    "id": "cac_report_other",
                    "kind": "regulator_report",
                    "jurisdiction": "national",
                    "recipient_zh": "省级网信部门",
                    "recipient_en": "the provincial cyberspace administration",
                    "basis": "CAC Measures for Reporting Cybersecurity Incidents (2025) Art. 4",
                    "due_at": "2026-11-22T06:40:00Z",
                    "status": "met",
                    "met_at": "2026-11-22T05:30:00Z",
                    "met_by": "E1001",
                    "how": "online portal",
                    "reference": "GD-2026-0042",
                    "state": "met",
                },
                {
                    "id": "miit_telecom_report",
                    "kind": "regulator_report",
                    "jurisdiction": "miit_telecom",
                    "recipient_zh": "颁发许可证或备案的电信管理机构",
                    "recipient_en": "the telecom regulatory authority that issued the licence",
                    "basis": "MIIT Order No. 24 (2013) Art. 14",
                    "due_at": "2026-11-22T03:40:00Z",
                    "status": "met",
                    "met_at": "2026-11-22T04:00:00Z",
                    "met_by": "E1001",
                    "how": "phone then letter",
                    "reference": None,
                    "state": "met_late",
                },
                {
                    "id": "closing_summary",
                    "kind": "closing_summary",
                    "jurisdiction": "national",
                    "recipient_zh": "接收初次报告的部门",
                    "recipient_en": "the authorities that received the initial report",
                    "basis": "CAC Measures (2025) — closing summary within 30 days (verify article number)",
                    "due_at": "2026-12-25T10:00:00Z",
                    "status": "open",
                    "met_at": None,
                    "met_by": None,
                    "how": None,
                    "reference": None,
                    "state": "ok",
                },
                {
                    "id": "individual_notice",
                    "kind": "individual_notice",
                    "jurisdiction": "national",
                    "recipient_zh": "受影响的个人信息主体",
                    "recipient_en": "the individuals affected",
                    "basis": "PIPL Art. 57",
                    "due_at": "2026-11-23T02:40:00Z",
                    "status": "open",
                    "met_at": None,
                    "met_by": None,
                    "how": None,
                    "reference": None,
                    "state": "due_soon",
                },
            ],
            "notices": {"sent": 1_150_000, "failed": 1200, "pending": 48_800, "in_doubt": 0},
            "reports": [{"kind": "initial", "at": "2026-11-22T05:30:00Z", "by": "E1001", "reference": "GD-2026-0042"}],
            "updates": [
                {
                    "at": "2026-11-22T08:00:00Z",
                    "by": "E1001",
                    "text": "The external host was taken down by its provider",
                }
            ],
            "review": {
                "cause": "Export permission granted to a service account beyond its purpose",
                "responsibility": "Reporting platform team; access review missed the grant",
                "countermeasures": "Least-privilege export roles; approvals for bulk exports",
                "prevention": "Quarterly access review; bulk-export detector thresholds lowered",
                "lessons": "Service accounts need the same review as staff",
                "by": "E1001",
                "at": "2026-11-26T09:00:00Z",
            },
            "unknowns": [],
        },
        "notice": {
            "possible_harm": {
                "zh": "您的个人信息可能被用于电信网络诈骗或冒用身份。",
                "en": "Your information may be used for fraud calls or identity misuse.",
            },
            "advice": {
                "zh": ["警惕自称本行工作人员的来电。", "不要向任何人透露验证码。"],
                "en": ["Be wary of calls claiming to be from the bank.", "Never share verification codes."],
            },
            "remedies": {
                "zh": "您可以联系我们了解处理情况，并依法要求赔偿。",
                "en": "You may contact us about the handling and claim compensation under the law.",
            },
        },
        "recipient": {"name": "张三"},
    }


def young_ctx() -> dict[str, Any]:
    """An incident just opened: no cause, no evidence, no measures, nothing filed."""
    ctx = incident_ctx()
    inc = ctx["incident"]
    inc.update(
        status="open",
        contained_at=None,
        handling_ended_at=None,
        closed_at=None,
        evidence=None,
        alerts=[],
        measures=[],
        steps=[],
        obligations=[],
        reports=[],
        updates=[],
        review=None,
        notices={"sent": 0, "failed": 0, "pending": 0, "in_doubt": 0},
        unknowns=["cause", "direct_loss_cny", "people_affected"],
        facts={"type": _fact("leak", "manual")},
    )
    inc.pop("grade_history")
    inc["grade"] = {
        "level": "IV",
        "name_zh": "一般",
        "name_en": "General",
        "colour": "blue",
        "computed_level": "IV",
        "overridden": False,
        "override_reason": None,
        "reasons": [],
    }
    ctx["recipient"] = None
    return ctx


def plan_ctx() -> dict[str, Any]:
    """The playbook context as the engine's ``Playbook.to_plan_dict`` gives it."""

    def crit(fact: str, value: Any, status: str, unit: str = "people", **extra: Any) -> dict[str, Any]:
        return {
            "fact": fact,
            "op": ">=",
            "value": value,
            "unit": unit,
            "source": "CAC Measures for Reporting Cybersecurity Incidents (2025), annex",
            "effective": "2025-11-01",
            "status": status,
            "note": "",
            **extra,
        }

    def ob(oid: str, kind: str, jur: str, grades: list[str], hours: int, start: str = "discovery") -> dict[str, Any]:
        return {
            "id": oid,
            "kind": kind,
            "jurisdiction": jur,
            "recipient_zh": f"接收方 {oid}",
            "recipient_en": f"recipient {oid}",
            "basis": "CAC Measures for Reporting Cybersecurity Incidents (2025) Art. 4",
            "grades": grades,
            "applies_to": "other",
            "clock": {"from": start, "hours": hours},
            "template": "initial_report",
            "status_note": "",
        }

    return {
        "generated_at": "2026-11-22T13:00:00Z",
        "timezone": "Asia/Shanghai",
        "org": _org(),
        "playbook": {
            "name": "个人信息安全事件分级应急预案 / Graded emergency plan",
            "version": "2026.11",
            "effective_from": "2026-11-22",
            "source_file": "playbooks/default.yaml",
            "grades": [
                {
                    "level": "I",
                    "name_zh": "特别重大",
                    "name_en": "Extraordinarily serious",
                    "colour": "red",
                    "criteria": [
                        crit("people_affected", 100_000_000, "verified"),
                        crit("direct_loss_cny", 100_000_000, "verified", unit="CNY"),
                    ],
                },
                {
                    "level": "II",
                    "name_zh": "重大",
                    "name_en": "Serious",
                    "colour": "orange",
                    "criteria": [crit("people_affected", 10_000_000, "verify")],
                },
                {
                    "level": "III",
                    "name_zh": "较大",
                    "name_en": "Relatively serious",
                    "colour": "yellow",
                    "criteria": [
                        crit("people_affected", 1_000_000, "verify"),
                        {**crit("serious_threat", True, "verify", unit=""), "op": "=="},
                    ],
                },
                {"level": "IV", "name_zh": "一般", "name_en": "General", "colour": "blue", "criteria": []},
            ],
            "org_overrides": [crit("sensitive_people", 1_000_000, "verify", grade="II", sectors=["telecom"])],
            "steps": [
                {
                    "id": "activate",
                    "title_zh": "立即启动应急预案",
                    "title_en": "Activate the plan",
                    "role": "incident_lead",
                    "grades": ["I", "II", "III", "IV"],
                    "due_hours": 0.5,
                },
                {
                    "id": "review",
                    "title_zh": "事后复盘",
                    "title_en": "Post-incident review",
                    "role": "pi_officer",
                    "grades": ["I", "II", "III"],
                    "due_hours": 720,
                },
            ],
            "obligations": [
                ob("cac_report_other", "regulator_report", "national", ["I", "II", "III"], 4),
                ob("miit_telecom_report", "regulator_report", "miit_telecom", ["I", "II", "III", "IV"], 1),
                ob("closing_summary", "closing_summary", "national", ["I", "II", "III"], 720, "handling_end"),
            ],
            "roles": [
                {
                    "id": "incident_lead",
                    "name_zh": "应急处置负责人",
                    "name_en": "Incident lead",
                    "contact": "+86 755 1",
                },
                {
                    "id": "pi_officer",
                    "name_zh": "个人信息保护负责人",
                    "name_en": "PI protection officer",
                    "contact": "privacy@bank.example",
                },
            ],
            "drills": {"every_months": 12, "last": "2026-03-01", "next_due": "2027-03-01"},
            "review_required_from": "III",
        },
    }


def _ctx_for(kind: str) -> dict[str, Any]:
    return plan_ctx() if kind == PLAN_KIND else incident_ctx()


def _section(md: str, heading: str) -> str:
    """The text of the ``##`` section whose heading contains ``heading``."""
    match = re.search(rf"^## [^\n]*{re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", md, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def _cells(line: str) -> list[str]:
    """The cells of one pipe-table row; an escaped pipe stays inside its cell."""
    cells = re.findall(r"((?:\\.|[^\\|])*)\|", line.strip().removeprefix("|") + "|")
    if len(cells) > 1 and cells[-1] == "":
        cells.pop()
    return [c.strip() for c in cells]


def _tables(md: str) -> list[list[list[str]]]:
    """Every pipe table of a Markdown text, as rows of cells (header and separator included)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in md.split("\n"):
        if line.startswith("|"):
            current.append(_cells(line))
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


# --------------------------------------------------------------------------- every document
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_document_has_its_required_elements(kind: str, lang: str, fmt: str) -> None:
    """Each kind renders in each language and format with every required element in it."""
    out = render(kind, _ctx_for(kind), lang=lang, fmt=fmt)
    text = html.unescape(out) if fmt == "html" else out
    for element in required_elements(kind, lang):
        assert element in text, element
    if fmt == "html":
        assert out.startswith("<!doctype html>")
        assert '<meta charset="utf-8">' in out
        assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in out
        assert "<style>" in out and "@page" in out
        assert out.count("<h1>") == 1


@pytest.mark.parametrize("lang", LANGS)
def test_html_and_markdown_come_from_the_same_record(lang: str) -> None:
    """The HTML is the Markdown converted: same facts, same unknowns, both from one context."""
    ctx = incident_ctx()
    md = render("initial_report", ctx, lang=lang, fmt="md")
    page = render("initial_report", ctx, lang=lang, fmt="html")
    assert documents.markdown_to_html(md) in page
    assert "1,200,000" in md and "1,200,000" in page


def test_grade_is_shown_with_level_and_both_names() -> None:
    """The grade reads "III级 较大 / Level III – Relatively serious" in both languages."""
    for lang in LANGS:
        assert "III级 较大 / Level III – Relatively serious" in render(
            "initial_report", incident_ctx(), lang=lang, fmt="md"
        )


def test_times_are_local_with_the_zone_name() -> None:
    """Times are shown in the context's zone, named: 02:40Z is 10:40 in Asia/Shanghai."""
    md = render("initial_report", incident_ctx(), lang="en", fmt="md")
    assert "**Time of discovery:** 2026-11-22 10:40 Asia/Shanghai" in md
    assert "UTC+08:00" in md


def test_initial_report_lists_regulator_obligations_with_deadlines() -> None:
    """The recipients section lists the regulator obligations (not notices) with due and met times."""
    section = _section(render("initial_report", incident_ctx(), lang="en", fmt="md"), "Recipients and legal basis")
    assert "the provincial cyberspace administration" in section
    assert "2026-11-22 14:40 Asia/Shanghai" in section  # due 06:40Z
    assert "met late" in section
    assert "the individuals affected" not in section
    assert "MIIT Order No. 24 (2013) Art. 14" in section


def test_closing_summary_shows_due_against_met() -> None:
    """The closing summary proves timeliness: deadline and time met for each obligation, 30-day due date."""
    md = render("closing_summary", incident_ctx(), lang="en", fmt="md")
    rows = {r[0]: r for r in _tables(_section(md, "Timeline of obligations met"))[0][2:]}
    row = rows["the provincial cyberspace administration (report to the regulator)"]
    assert row[2:5] == ["2026-11-22 14:40 Asia/Shanghai", "2026-11-22 13:30 Asia/Shanghai", "met on time"]
    assert "2026-12-25 18:00 Asia/Shanghai" in _section(md, "Deadline of this summary")


def test_review_has_timeline_and_grade_history() -> None:
    """The post-incident review orders the record's events and shows how the grade changed."""
    md = render("post_incident_review", incident_ctx(), lang="en", fmt="md")
    timeline = _section(md, "Timeline")
    assert (
        timeline.index("incident discovered") < timeline.index("measure: Disabled") < timeline.index("handling ended")
    )
    history = _tables(_section(md, "Grade history"))[0]
    assert [r[1] for r in history[2:]] == [
        "IV级 一般 / Level IV – General",
        "III级 较大 / Level III – Relatively serious",
    ]


def test_followup_reports_only_what_changed_since_the_initial_report() -> None:
    """The follow-up names the initial report and lists facts and measures recorded after it."""
    md = render("followup_report", incident_ctx(), lang="en", fmt="md")
    assert "GD-2026-0042" in _section(md, "Reference to the initial report")
    assert "trend" in _section(md, "Changed facts and grade")
    assert "people affected" not in _section(md, "Changed facts and grade")
    measures = _section(md, "Measures since the initial report")
    assert "Reset export permissions" in measures and "Disabled the service account" not in measures


@pytest.mark.parametrize("lang", LANGS)
def test_plan_marks_verify_items_visibly(lang: str) -> None:
    """Criteria whose status is "verify" are marked in bold in the plan; verified ones are not."""
    md = render_plan(plan_ctx(), lang=lang, fmt="md")
    mark = "**(verify)**" if lang == "en" else "**（待核实）**"
    grades = _section(md, "Grades and criteria" if lang == "en" else "事件分级及标准")
    assert grades.count(mark) == 3  # II people, III people, III serious threat
    assert md.count(mark) >= 4  # plus the MIIT overlay
    assert ("verified" if lang == "en" else "已核实") in grades
    assert "GB/T 35273-2020" in md


def test_plan_flags_an_overdue_drill() -> None:
    """A next drill date in the past is shown as overdue; a drill cycle over 12 months is flagged."""
    ctx = plan_ctx()
    ctx["playbook"]["drills"] = {"every_months": 18, "last": None, "next_due": "2026-01-01"}
    md = render_plan(ctx, lang="en", fmt="md")
    assert "**OVERDUE**" in md
    assert "less often than the yearly minimum" in md
    assert "no drill recorded" in md


# --------------------------------------------------------------------------- young incidents
@pytest.mark.parametrize("lang", LANGS)
def test_initial_report_of_a_young_incident_lists_every_unknown(lang: str) -> None:
    """With no cause, evidence or measures, each unknown item is listed under "to be supplemented"."""
    md = render("initial_report", young_ctx(), lang=lang, fmt="md")
    section = _section(md, "Items to be supplemented" if lang == "en" else "待补充事项")
    items = [line[2:] for line in section.splitlines() if line.startswith("- ")]
    i = LANGS.index(lang)
    for key in ("cause", "direct_loss_cny", "people_affected", "evidence", "measures", "categories", "location"):
        assert documents.FACT_LABELS[key][i] in items, key
    assert len(items) == len(set(items))
    unknown = "unknown (to be supplemented)" if lang == "en" else "待补充"
    assert ("**Place:** " if lang == "en" else "**发生地点：** ") + unknown in md
    assert unknown in _section(md, "Preliminary cause" if lang == "en" else "初步原因")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", DOCUMENT_KINDS)
def test_young_incident_renders_every_kind(kind: str, lang: str, fmt: str) -> None:
    """Every document renders from an incident that knows almost nothing yet."""
    assert render(kind, young_ctx(), lang=lang, fmt=fmt)


def test_missing_keys_anywhere_do_not_crash() -> None:
    """A context with only an empty incident still renders, showing unknowns."""
    ctx: dict[str, Any] = {"generated_at": "2026-11-22T13:00:00Z", "timezone": "Asia/Shanghai", "incident": {}}
    for kind in DOCUMENT_KINDS:
        for lang in LANGS:
            assert render(kind, ctx, lang=lang, fmt="html")


# --------------------------------------------------------------------------- hostile values
def _hostile_ctx() -> dict[str, Any]:
    ctx = incident_ctx()
    inc = ctx["incident"]
    inc["title"] = "<script>alert(1)</script> | **bold** \n# Heading"
    inc["facts"]["location"] = _fact("- list?\n| cell | cell |\n<img src=x onerror=alert(1)>", "manual")
    inc["facts"]["cause"] = _fact("a|b\r\nc\u2028d\n\n1. ordered? &amp; [link](javascript:alert(1))", "manual")
    inc["measures"][0]["text"] = "blocked | host\n---\n=== <b>x</b>"
    ctx["notice"]["advice"]["en"] = ["<script>x</script>", "pipe | here\nnext line"]
    return ctx


@pytest.mark.parametrize("kind", DOCUMENT_KINDS)
def test_html_escapes_hostile_values(kind: str) -> None:
    """Markup in titles, facts and measures reaches the HTML as text, never as tags."""
    page = render(kind, _hostile_ctx(), lang="en", fmt="html")
    body = page.split("<main>", 1)[1]
    assert "<script" not in body.lower()
    assert "<img" not in body.lower()
    assert "<b>" not in body
    assert "<a " not in body
    if kind == "initial_report":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "&lt;img src=x onerror=alert(1)&gt;" in body


@pytest.mark.parametrize("kind", DOCUMENT_KINDS)
def test_markdown_stays_well_formed_with_pipes_and_newlines(kind: str) -> None:
    """Pipes and line breaks in values stay inside their cell or line: tables keep their columns."""
    md = render(kind, _hostile_ctx(), lang="en", fmt="md")
    for table in _tables(md):
        widths = {len(row) for row in table}
        assert len(widths) == 1, table
    assert not re.search(r"^#+ Heading", md, re.M)
    assert not re.search(r"^- list\?", md, re.M)
    assert not re.search(r"^(---|===)", md, re.M)
    page = markdown_to_html(md)
    assert "<h1>Heading" not in page
    for table in re.findall(r"<table>.*?</table>", page, re.S):
        head = table.split("</thead>")[0].count("<th>")
        for row in re.findall(r"<tr><td>.*?</tr>", table):
            assert row.count("<td>") == head


def test_hostile_title_in_initial_report_markdown_is_escaped() -> None:
    """The title's pipes, stars, hashes and newlines are escaped in the Markdown line."""
    md = render("initial_report", _hostile_ctx(), lang="en", fmt="md")
    assert r"\<script\>alert(1)\</script\> \| \*\*bold\*\*<br>\# Heading" in md


# --------------------------------------------------------------------------- notices carry no identifiers
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", ["individual_notice", "public_announcement"])
def test_notices_carry_no_subject_refs_or_incident_ids(kind: str, lang: str, fmt: str) -> None:
    """The evidence holds subject refs, the digest and ids: none of them reach a notice."""
    ctx = incident_ctx()
    out = render(kind, ctx, lang=lang, fmt=fmt)
    for secret in (SUBJECT_REF, OTHER_REF, INCIDENT_ID, "INC-1A2B3C4D", "9e" * 32, "svc-report", "al-91", "E1002"):
        assert secret not in out, secret
    assert not re.search(r"[0-9a-f]{64}", out)


@pytest.mark.parametrize("leak", [SUBJECT_REF, OTHER_REF.upper(), INCIDENT_ID])
def test_a_notice_that_would_leak_an_identifier_is_refused(leak: str) -> None:
    """A subject ref or the incident id slipped into a measure makes the notice fail loudly."""
    ctx = incident_ctx()
    ctx["incident"]["measures"][0]["text"] = f"Blocked subject {leak}"
    with pytest.raises(DocumentError, match="identifier") as exc:
        render("individual_notice", ctx, lang="en", fmt="md")
    assert leak not in str(exc.value)


def test_individual_notice_has_a_salutation_and_the_handlers_contact() -> None:
    """The notice greets the recipient by name when given and names the PI protection officer."""
    md = render("individual_notice", incident_ctx(), lang="zh", fmt="md")
    assert "尊敬的张三：" in md
    assert "privacy@bank.example" in _section(md, "联系我们")
    assert "第五十七条" in md
    md_en = render("individual_notice", young_ctx(), lang="en", fmt="md")
    assert "Dear customer," in md_en
    assert "still being investigated" in _section(md_en, "Cause")


def test_public_announcement_gives_an_approximate_scale() -> None:
    """The announcement states the scale in rounded numbers."""
    assert "about 1.2 million people" in render("public_announcement", incident_ctx(), lang="en", fmt="md")
    assert "约 120 万人" in render("public_announcement", incident_ctx(), lang="zh", fmt="md")


def test_drill_documents_are_marked() -> None:
    """Documents of a drill say so at the top, so they are never filed or sent by mistake."""
    ctx = incident_ctx()
    ctx["incident"]["drill"] = True
    assert "DRILL" in render("initial_report", ctx, lang="en", fmt="md").split("##")[0]
    assert "演练" in render("individual_notice", ctx, lang="zh", fmt="md").split("##")[0]


# --------------------------------------------------------------------------- template regressions and bad input
@pytest.fixture()
def templates_copy(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(documents.default_templates_dir(), target)
    return target


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_template_missing_a_required_element_fails_loudly(templates_copy: Path, fmt: str) -> None:
    """Dropping a required heading from a template makes render raise, naming the element."""
    path = templates_copy / "initial_report.en.md.j2"
    path.write_text(path.read_text(encoding="utf-8").replace("## 8. Preliminary cause\n", ""), encoding="utf-8")
    with pytest.raises(MissingElementError, match="Preliminary cause") as exc:
        render("initial_report", incident_ctx(), lang="en", fmt=fmt, templates_dir=templates_copy)
    assert exc.value.missing == ["Preliminary cause"]
    assert "initial_report.en.md.j2" in str(exc.value)


def test_a_required_label_inside_a_value_does_not_satisfy_the_check(templates_copy: Path) -> None:
    """A value that happens to contain a required label cannot stand in for the template's heading."""
    path = templates_copy / "initial_report.en.md.j2"
    path.write_text(path.read_text(encoding="utf-8").replace("## 13. Contact person\n", ""), encoding="utf-8")
    ctx = incident_ctx()
    ctx["incident"]["title"] = "**Contact person** ## Contact person"
    with pytest.raises(MissingElementError, match="Contact person"):
        render("initial_report", ctx, lang="en", fmt="md", templates_dir=templates_copy)


def test_a_broken_or_missing_template_names_the_file(templates_copy: Path) -> None:
    """A syntax error or a missing file is a DocumentError naming the template."""
    (templates_copy / "closing_summary.zh.md.j2").write_text("# x\n{% for %}\n", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"closing_summary\.zh\.md\.j2"):
        render("closing_summary", incident_ctx(), lang="zh", fmt="md", templates_dir=templates_copy)
    (templates_copy / "closing_summary.en.md.j2").unlink()
    with pytest.raises(DocumentError, match=r"closing_summary\.en\.md\.j2 not found"):
        render("closing_summary", incident_ctx(), lang="en", fmt="md", templates_dir=templates_copy)
    (templates_copy / "followup_report.en.md.j2").write_text("# follow-up report {{ v.nope }}\n", encoding="utf-8")
    with pytest.raises(DocumentError, match="does not provide"):
        render("followup_report", incident_ctx(), lang="en", fmt="md", templates_dir=templates_copy)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            {"kind": "press_release"}, "unknown document kind 'press_release'; choose one of: initial_report", id="kind"
        ),
        pytest.param({"lang": "fr"}, "unknown language 'fr'; choose one of: zh, en", id="lang"),
        pytest.param({"fmt": "docx"}, "unknown format 'docx'; choose one of: md, html", id="fmt"),
    ],
)
def test_unknown_choices_name_the_allowed_values(args: dict[str, str], message: str) -> None:
    """An unknown kind, language or format is refused with the allowed values."""
    call = {"kind": "initial_report", "lang": "en", "fmt": "md"} | args
    with pytest.raises(DocumentError, match=re.escape(message)):
        render(call["kind"], incident_ctx(), lang=call["lang"], fmt=call["fmt"])
    with pytest.raises(DocumentError, match="choose one of"):
        write_documents(incident_ctx(), Path("/nonexistent"), [call["kind"]], [call["lang"]], [call["fmt"]])


def test_required_elements_refuses_unknown_kinds() -> None:
    """required_elements validates its arguments like render does."""
    with pytest.raises(DocumentError, match="choose one of"):
        required_elements("memo", "en")
    assert "待补充事项" in required_elements("initial_report", "zh")


def test_bad_context_is_refused_clearly() -> None:
    """A non-mapping context, a missing incident or playbook, or an unknown zone is a DocumentError."""
    with pytest.raises(DocumentError, match="must be a mapping"):
        render("initial_report", [], lang="en", fmt="md")  # type: ignore[arg-type]
    with pytest.raises(DocumentError, match=r"ctx\['incident'\] is missing"):
        render("initial_report", plan_ctx(), lang="en", fmt="md")
    with pytest.raises(DocumentError, match=r"ctx\['playbook'\] is missing"):
        render_plan(incident_ctx(), lang="en", fmt="md")
    ctx = incident_ctx()
    ctx["timezone"] = "Mars/Olympus"
    with pytest.raises(DocumentError, match="timezone"):
        render("initial_report", ctx, lang="en", fmt="md")


# --------------------------------------------------------------------------- writing
def test_write_documents_writes_every_file_atomically(tmp_path: Path) -> None:
    """Every kind × language × format lands as <kind>.<lang>.<fmt>, equal to render, no temp files left."""
    out = tmp_path / "docs"
    ctx = incident_ctx()
    paths = write_documents(ctx, out, ["initial_report", "individual_notice"])
    expected = [f"{k}.{lg}.{ft}" for k in ("initial_report", "individual_notice") for lg in LANGS for ft in FORMATS]
    assert [p.name for p in paths] == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    assert (out / "initial_report.zh.md").read_text(encoding="utf-8") == render(
        "initial_report", ctx, lang="zh", fmt="md"
    )


def test_write_documents_writes_nothing_when_one_document_fails(tmp_path: Path, templates_copy: Path) -> None:
    """Documents are all rendered before any is written: a failure leaves the directory untouched."""
    (templates_copy / "closing_summary.en.md.j2").write_text("# nothing\n", encoding="utf-8")
    out = tmp_path / "docs"
    with pytest.raises(MissingElementError):
        write_documents(incident_ctx(), out, ["initial_report", "closing_summary"], templates_dir=templates_copy)
    assert not out.exists()


def test_write_documents_renders_the_plan(tmp_path: Path) -> None:
    """The emergency plan can be written from the playbook context."""
    paths = write_documents(plan_ctx(), tmp_path, [PLAN_KIND], ["zh"], ["html"])
    assert [p.name for p in paths] == ["emergency_plan.zh.html"]


# --------------------------------------------------------------------------- escaping and conversion
def test_md_escape_neutralises_markdown() -> None:
    """Values cannot open headings, lists, tables, tags or emphasis, and stay on one line."""
    assert md_escape("# a") == r"\# a"
    assert md_escape("- a") == r"\- a"
    assert md_escape("1. a") == r"1\. a"
    assert md_escape("1.5 m") == "1.5 m"
    assert md_escape("a|b") == r"a\|b"
    assert md_escape("a\nb\r\nc\u2028d") == "a<br>b<br>c<br>d"
    assert md_escape("<br>") == r"\<br\>"
    assert md_escape("**x** _y_ `z` [l](u) ~~s~~ &amp;") == r"\*\*x\*\* \_y\_ \`z\` \[l\](u) \~\~s\~\~ \&amp;"
    assert md_escape("a\x00\x1bb") == "ab"


def test_markdown_to_html_supports_the_subset_and_escapes_the_rest() -> None:
    """Headings, lists, tables, bold and <br> convert; raw HTML and stray markers stay text."""
    md = "\n".join(
        [
            "# T & co",
            "",
            "para **bold** <br> x<br>y",
            "",
            "- a",
            "  - b",
            "- c",
            "",
            "| h1 | h2 |",
            "| --- | --- |",
            "| a\\|b | <i> |",
            "",
            "> **note**",
            "",
            "---",
            "**odd",
        ]
    )
    page = markdown_to_html(md)
    assert "<h1>T &amp; co</h1>" in page
    assert "<strong>bold</strong>" in page
    assert "x<br>y" in page
    assert "<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>" in page
    assert "<td>a|b</td><td>&lt;i&gt;</td>" in page
    assert "<blockquote>" in page and "<hr>" in page
    assert "<p>**odd</p>" in page


def test_every_audit_category_has_labels() -> None:
    """Each data category of the audit event model reads as words in both languages."""
    assert set(DATA_CATEGORIES) <= set(documents.CATEGORY_LABELS)


def test_context_is_not_modified() -> None:
    """Rendering does not change the context it is given."""
    ctx = incident_ctx()
    before = copy.deepcopy(ctx)
    for kind in DOCUMENT_KINDS:
        render(kind, ctx, lang="zh", fmt="html")
    assert ctx == before
