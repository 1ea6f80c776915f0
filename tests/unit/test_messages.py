"""Generated sentences speak the document's language: alert summaries, incident titles and grade
reasons carry message codes with parameters (trail.messages), rendered in Chinese or English."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.test_detect_engine import _cases, wire
from tests.unit.test_documents import incident_ctx
from trail.detect.alerts import Alert, alert_from_row, alert_row
from trail.detect.engine import Engine
from trail.detect.rules import load_rules
from trail.documents.rendering import render
from trail.incidents.grading import compute_grade
from trail.incidents.playbook import load_playbook
from trail.messages import CATALOGUE, Message, localised
from trail.messages import render as render_message
from trail.storage.alerts import ALERT_COLUMNS

#: English words that must not appear in a Chinese sentence (identifiers passed as parameters aside).
ENGLISH = re.compile(r"\b(of|records|in one|operation|by|no criterion|grade|handled|within|after|to a|legal basis)\b")

SAMPLE = {"action": "export", "records": 12500, "operations": 3, "threshold": "40", "subjects": 600, "minutes": 10,
          "hour": "03", "basis": "contract", "region": "CN", "actors": 4, "rule": "bulk_export", "actor": "E2042",
          "fact": "people_affected", "value": "2,000", "criterion": "≥ 1,000 人"}  # fmt: skip


def _fields(template: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_message_has_both_languages_with_the_same_parameters(code: str) -> None:
    en, zh = CATALOGUE[code]
    assert _fields(en) == _fields(zh)
    text = render_message(code, SAMPLE, "zh")
    assert "{" not in text and not ENGLISH.search(text), text


@pytest.mark.parametrize(("events", "rule"), _cases())
def test_every_detector_alert_carries_its_summary_as_a_message(events: list[dict[str, Any]], rule: str) -> None:
    eng = Engine(load_rules(approved_jobs=("svc-retention", "svc-nightly-export")))
    alerts = [a for a in eng.feed_many(events) if a.rule == rule]
    assert alerts
    for a in alerts:
        m = Message(a.message["code"], a.message["params"])
        assert m.text("en") == a.summary  # the English text is what it always was
        zh = m.text("zh")
        assert zh != a.summary and not ENGLISH.search(zh), zh


def test_the_bulk_export_summary_in_chinese() -> None:
    eng = Engine(load_rules())
    ev = wire(datetime(2026, 11, 18, 19, 0, tzinfo=UTC), action="export", destination={"kind": "file"},
              subject_refs=[], record_count=12500)  # fmt: skip
    (a,) = [a for a in eng.feed_many([ev]) if a.rule == "bulk_export"]
    assert a.summary == "export of 12500 records in one operation"
    assert localised(a.message, "zh", a.summary) == "单次导出操作涉及 12500 条记录"


def test_the_message_survives_the_topic_and_the_alerts_table() -> None:
    eng = Engine(load_rules())
    ev = wire(datetime(2026, 11, 18, 19, 0, tzinfo=UTC), action="export", destination={"kind": "file"},
              subject_refs=[], record_count=12500)  # fmt: skip
    (a,) = [a for a in eng.feed_many([ev]) if a.rule == "bulk_export"]
    assert Alert.from_bytes(a.to_bytes()).message == a.message
    row = dict(zip(ALERT_COLUMNS, alert_row(a), strict=True))
    row["actor_id"], row["alert_key"] = row["actor_id"], row["alert_key"]
    assert alert_from_row(row).message == a.message
    # an alert written before messages had codes keeps its English summary
    assert localised({}, "zh", "export of 3 records in one operation") == "export of 3 records in one operation"


def test_grade_reasons_in_chinese_name_the_fact_in_chinese() -> None:
    playbook = load_playbook(None)
    result = compute_grade({"people_affected": 2_000_000}, playbook)
    assert any(r.startswith("people_affected 2,000,000:") for r in result.reasons)
    assert result.reasons_zh and all("people_affected" not in r for r in result.reasons_zh)
    assert any(r.startswith("受影响人数为 2,000,000：") for r in result.reasons_zh)
    default = compute_grade({}, playbook)
    assert default.reasons == ["no criterion of grades I-III holds: grade IV (general) by default"]
    assert not ENGLISH.search(default.reasons_zh[0])


def _bulk_export_ctx() -> dict[str, Any]:
    ctx = incident_ctx()
    inc = ctx["incident"]
    inc["title"] = "bulk_export by E2042"
    inc["title_message"] = Message("incident.title.from_alert", {"rule": "bulk_export", "actor": "E2042"}).as_dict()
    inc["description"] = "export of 12500 records in one operation"
    inc["description_message"] = Message("alert.bulk_export.single", {"action": "export", "records": 12500}).as_dict()
    inc["grade"]["reasons"] = ["no criterion of grades I-III holds: grade IV (general) by default"]
    inc["grade"]["reasons_zh"] = [Message("grade.default").text("zh")]
    for a in inc["alerts"]:
        a["summary"] = "export of 12500 records in one operation"
        a["message"] = Message("alert.bulk_export.single", {"action": "export", "records": 12500}).as_dict()
    return ctx


def test_the_chinese_initial_report_has_no_english_fragments() -> None:
    ctx = _bulk_export_ctx()
    zh = render("initial_report", ctx, lang="zh", fmt="md")
    for fragment in ("export of 12500 records", "in one operation", "no criterion of grades", "bulk_export by"):
        assert fragment not in zh, fragment
    assert "**事件简述：** 单次导出操作涉及 12500 条记录" in zh
    assert "未达到 III 级及以上任何标准" in zh
    assert "E2042：批量导出" in zh
    en = render("initial_report", ctx, lang="en", fmt="md")
    assert "export of 12500 records in one operation" in en and "export by E2042" in en
