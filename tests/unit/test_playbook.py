"""Playbooks: the shipped default loads; a mistake anywhere is reported as ``file:line: key.path: reason``.

Every error case edits the text of ``playbooks/default.yaml`` and computes the expected line
from the edited text itself, so the tests follow the default file when it changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from trail.errors import TrailError
from trail.incidents.playbook import (
    JURISDICTIONS,
    LEVELS,
    PlaybookError,
    default_playbook_path,
    load_playbook,
    parse_playbook,
)

DEFAULT_PATH = default_playbook_path()
DEFAULT = DEFAULT_PATH.read_text(encoding="utf-8")

GRADE_II_BLOCK = """  - level: II
    criteria:
      - fact: people_affected
        value: 10000000
        unit: people
        source: CAC Measures for Reporting Cybersecurity Incidents (2025), annex
        effective: 2025-11-01
        status: verify
        source_zh: 《网络安全事件报告管理办法》（2025）附件
"""


def edit(old: str, new: str) -> str:
    """The default text with the first ``old`` replaced by ``new`` (``old`` must be there)."""
    assert old in DEFAULT, f"the default playbook no longer contains {old!r}: update this test"
    return DEFAULT.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    """1-based number of the line where ``needle`` first occurs (it must occur exactly once)."""
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times in the edited text"
    return text[: text.index(needle)].count("\n") + 1


def load_text(tmp_path: Path, text: str) -> PlaybookError:
    """Write ``text`` as a playbook file and return the error loading it raises."""
    path = tmp_path / "acme.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PlaybookError) as info:
        load_playbook(path)
    return info.value


def assert_plain(err: Exception) -> None:
    """One line for a human: no traceback, no YAML snippet, no chained cause."""
    msg = str(err)
    assert "\n" not in msg, msg
    assert "Traceback" not in msg
    assert "<unicode string>" not in msg
    assert err.__cause__ is None


# --------------------------------------------------------------------------- the default
def test_default_playbook_loads() -> None:
    pb = load_playbook()
    again = load_playbook(DEFAULT_PATH)
    assert pb == again
    assert pb.source_file == str(DEFAULT_PATH)
    assert pb.digest == hashlib.sha256(DEFAULT.encode("utf-8")).hexdigest()
    assert pb.version == "2026.11"
    assert pb.effective_from == "2026-11-22"
    assert [g.level for g in pb.grades] == list(LEVELS)
    assert pb.grade("IV").criteria == ()
    assert pb.organisation.sector == "telecom"
    assert pb.organisation.org_type == "other"
    assert pb.organisation.jurisdictions == tuple(JURISDICTIONS)
    assert pb.review_required_from == "III"
    assert pb.due_soon_hours == 1.0
    assert pb.drills.every_months == 12
    assert pb.drills.last is None
    assert [s.id for s in pb.steps] == [
        "activate",
        "brief_leadership",
        "contain",
        "preserve",
        "assess",
        "report",
        "notify",
        "remediate",
        "review",
    ]
    assert {r.id for r in pb.roles} >= {s.role for s in pb.steps}
    assert [o.id for o in pb.obligations] == [
        "cac_report_cii",
        "cac_report_state_organ",
        "cac_report_other",
        "police_report",
        "miit_telecom_report",
        "shenzhen_report",
        "shenzhen_stakeholders",
        "individual_notice",
        "public_announcement",
        "dalian_publish_cause",
        "closing_summary",
        "post_incident_review",
    ]
    police = pb.obligation("police_report")
    assert police is not None
    assert police.when_fact == "suspected_crime"
    assert police.applies_to == ("all",)
    closing = pb.obligation("closing_summary")
    assert closing is not None
    assert (closing.clock_from, closing.hours) == ("handling_end", 720.0)
    # "以上" includes the number: every numeric criterion is >=.
    numeric = [c for g in pb.grades for c in g.criteria if not isinstance(c.value, bool)]
    numeric += [o.criterion for o in pb.overlays]
    assert numeric
    assert all(c.op == ">=" for c in numeric)


def test_parse_names_its_source() -> None:
    pb = parse_playbook(DEFAULT, source="inline.yaml")
    assert pb.source_file == "inline.yaml"
    with pytest.raises(PlaybookError, match=r"^inline\.yaml:\d+: drills\.every_months: "):
        parse_playbook(edit("every_months: 12", "every_months: 18"), source="inline.yaml")


# --------------------------------------------------------------------------- errors at their line
# (id, old text, new text, a needle in the edited text on the line the error must name,
#  the key path, a fragment of the reason)
CASES = [
    pytest.param(
        "value: 100000000",
        "value: ten",
        "value: ten",
        "grades[0].criteria[0].value",
        "must be a number, got 'ten'",
        id="string-for-number",
    ),
    pytest.param(
        "        value: 1000000\n",
        "        value: a million\n",
        "value: a million",
        "grades[2].criteria[0].value",
        "must be a number",
        id="string-for-number-grade-III",
    ),
    pytest.param(
        "value: true",
        "value: 1",
        "value: 1\n",
        "grades[2].criteria[1].value",
        "must be true or false, got 1",
        id="number-for-boolean",
    ),
    pytest.param(
        "  sector: telecom",
        "  sectr: telecom",
        "sectr: telecom",
        "organisation.sectr",
        "unknown key; expected one of: name, name_en, sector",
        id="unknown-key",
    ),
    pytest.param(
        "    note: plan date to verify\n    effective",
        "    noot: plan date to verify\n    effective",
        "noot: plan date",
        "overlays[1].noot",
        "unknown key",
        id="unknown-key-in-overlay",
    ),
    pytest.param(
        "    value: 12\n",
        "    value: twelve\n",
        "value: twelve",
        "overlays[1].value",
        "must be a number, got 'twelve'",
        id="string-for-number-in-overlay",
    ),
    pytest.param(
        "    basis: MIIT Order No. 24 (2013) Art. 14\n",
        "",
        "  - id: miit_telecom_report",
        "obligations[4]",
        "missing required key 'basis'",
        id="missing-required-key",
    ),
    pytest.param(
        "        source: CAC Measures for Reporting Cybersecurity Incidents (2025), annex (网络安全事件分级指南)\n",
        "",
        "      - fact: people_affected\n        value: 100000000",
        "grades[0].criteria[0]",
        "missing required key 'source'",
        id="criterion-without-source",
    ),
    pytest.param(
        "  - {id: preserve,",
        "  - {id: contain,",
        "{id: contain, title_zh: 保护现场",
        "steps[3].id",
        "step id 'contain' is used twice",
        id="duplicate-step-id",
    ),
    pytest.param(
        "  - id: shenzhen_report\n",
        "  - id: miit_telecom_report\n",
        "  - id: miit_telecom_report\n    kind: regulator_report\n    jurisdiction: shenzhen",
        "obligations[5].id",
        "obligation id 'miit_telecom_report' is used twice",
        id="duplicate-obligation-id",
    ),
    pytest.param(
        "role: it_ops",
        "role: janitor",
        "role: janitor",
        "steps[7].role",
        "unknown role 'janitor'; roles: comms, incident_lead, it_ops, legal, pi_officer, security",
        id="unknown-role",
    ),
    pytest.param(
        "jurisdictions: [national, miit_telecom, shenzhen,",
        "jurisdictions: [national, miit_telecom, guangzhou,",
        "jurisdictions: [national, miit_telecom, guangzhou,",
        "organisation.jurisdictions[2]",
        "'guangzhou' is not one of: national, miit_telecom, shenzhen, xiamen, dalian",
        id="bad-organisation-jurisdiction",
    ),
    pytest.param(
        "    jurisdiction: shenzhen\n",
        "    jurisdiction: beijing\n",
        "jurisdiction: beijing",
        "obligations[5].jurisdiction",
        "'beijing' is not one of",
        id="bad-obligation-jurisdiction",
    ),
    pytest.param(
        "    applies_to: [state_organ]\n",
        "    applies_to: [ministry]\n",
        "applies_to: [ministry]",
        "obligations[1].applies_to[0]",
        "'ministry' is not one of: cii, state_organ, other, all",
        id="bad-organisation-type",
    ),
    pytest.param(
        "    when: {fact: suspected_crime}\n",
        "    when: {fact: people_affected}\n",
        "when: {fact: people_affected}",
        "obligations[3].when.fact",
        "'people_affected' is not one of",
        id="when-needs-a-boolean-fact",
    ),
    pytest.param(
        "    clock: {from: discovery, hours: 1}\n",
        "    clock: {from: discovery, hours: -1}\n",
        "hours: -1}",
        "obligations[0].clock.hours",
        "must be at least 0, got -1",
        id="negative-clock",
    ),
    pytest.param(
        "    clock: {from: discovery, hours: 2}\n",
        "    clock: {from: detection, hours: 2}\n",
        "from: detection",
        "obligations[1].clock.from",
        "'detection' is not one of: discovery, handling_end",
        id="bad-clock-start",
    ),
    pytest.param(
        "every_months: 12",
        "every_months: 18",
        "every_months: 18",
        "drills.every_months",
        "use 12 or fewer months",
        id="drills-every-18-months",
    ),
    pytest.param(
        "every_months: 12",
        "every_months: 0",
        "every_months: 0",
        "drills.every_months",
        "must be at least 1, got 0",
        id="drills-every-0-months",
    ),
    pytest.param(
        "  last: null",
        "  last: soon",
        "last: soon",
        "drills.last",
        "must be a date YYYY-MM-DD, got 'soon'",
        id="drills-last-not-a-date",
    ),
    pytest.param(
        "review_required_from: III ",
        "review_required_from: V ",
        "review_required_from: V",
        "review_required_from",
        "'V' is not one of: I, II, III, IV",
        id="bad-review-grade",
    ),
    pytest.param(
        "  - level: IV\n",
        "  - level: III\n",
        "  - level: III\n    criteria: []",
        "grades[3].level",
        "grade III is defined twice",
        id="grade-defined-twice",
    ),
    pytest.param(
        "  sector: telecom",
        "  sector: telecom\n  sector: finance",
        "sector: finance",
        "organisation.sector",
        "key appears twice",
        id="duplicate-key",
    ),
]


@pytest.mark.parametrize(("old", "new", "needle", "path", "reason"), CASES)
def test_error_points_at_its_line(tmp_path: Path, old: str, new: str, needle: str, path: str, reason: str) -> None:
    text = edit(old, new)
    line = line_of(text, needle)
    err = load_text(tmp_path, text)
    msg = str(err)
    prefix = f"{tmp_path / 'acme.yaml'}:{line}: {path}: "
    assert msg.startswith(prefix), f"expected {prefix!r}..., got {msg!r}"
    assert reason in msg
    assert isinstance(err, TrailError)
    assert_plain(err)


def test_yaml_syntax_error_points_at_its_line(tmp_path: Path) -> None:
    text = edit("  sector: telecom ", "  sector: tele: com ")
    line = line_of(text, "sector: tele: com")
    err = load_text(tmp_path, text)
    assert str(err).startswith(f"{tmp_path / 'acme.yaml'}:{line}: not valid YAML: ")
    assert "mapping values are not allowed here" in str(err)
    assert_plain(err)


def test_undefined_alias_is_a_yaml_error(tmp_path: Path) -> None:
    text = edit("  name: 示例电信有限公司", "  name: *nope")
    line = line_of(text, "*nope")
    err = load_text(tmp_path, text)
    assert str(err).startswith(f"{tmp_path / 'acme.yaml'}:{line}: not valid YAML: ")
    assert_plain(err)


def test_missing_grade_names_the_grades_list(tmp_path: Path) -> None:
    text = edit(GRADE_II_BLOCK, "")
    line = line_of(text, "  - level: I\n")  # the grades list starts here
    err = load_text(tmp_path, text)
    assert str(err).startswith(f"{tmp_path / 'acme.yaml'}:{line}: grades: ")
    assert "every grade I-IV needs an entry (missing II)" in str(err)
    assert_plain(err)


def test_grade_iv_with_criteria_is_refused(tmp_path: Path) -> None:
    text = edit(
        "    criteria: []                  # everything below grade III",
        "    criteria:\n      - {fact: people_affected, value: 1, source: test, effective: 2025-01-01, status: verify}",
    )
    err = load_text(tmp_path, text)
    assert str(err).startswith(f"{tmp_path / 'acme.yaml'}:")
    assert "grade IV is the default" in str(err)
    assert "criteria: []" in str(err)
    assert_plain(err)


def test_grade_iv_with_criteria_points_at_grade_iv(tmp_path: Path) -> None:
    text = edit(
        "    criteria: []                  # everything below grade III",
        "    criteria:\n      - {fact: people_affected, value: 1, source: test, effective: 2025-01-01, status: verify}",
    )
    entry = line_of(text, "  - level: IV\n")
    item = line_of(text, "      - {fact: people_affected, value: 1,")
    err = load_text(tmp_path, text)
    # At grade IV's entry or at its criteria list (the offending part), never at grade I.
    allowed = tuple(f"{tmp_path / 'acme.yaml'}:{n}: grades[3]" for n in range(entry, item + 1))
    assert str(err).startswith(allowed), str(err)


@pytest.mark.parametrize(
    ("old", "new", "needle", "path"),
    [
        pytest.param(
            "effective: 2025-11-01",
            "effective: 2025-13-01",
            "2025-13-01",
            "grades[0].criteria[0].effective",
            id="month-13",
        ),
        pytest.param(
            "effective: 2025-11-01",
            "effective: 2025-02-30",
            "2025-02-30",
            "grades[0].criteria[0].effective",
            id="february-30",
        ),
        pytest.param("  last: null", "  last: 2026-02-30", "2026-02-30", "drills.last", id="drills-last-february-30"),
        pytest.param("value: 100000000", "value: !!float ten", "!!float ten", "grades[0].criteria[0].value", id="tag"),
        pytest.param(
            "value: 100000000",
            "value: !!python/name:os.system",
            "!!python/name",
            "grades[0].criteria[0].value",
            id="python-tag",
        ),
    ],
)
def test_bad_scalar_is_a_playbook_error(tmp_path: Path, old: str, new: str, needle: str, path: str) -> None:
    text = edit(old, new)
    line = line_of(text, needle)
    path_file = tmp_path / "acme.yaml"
    path_file.write_text(text, encoding="utf-8")
    try:
        load_playbook(path_file)
    except PlaybookError as err:
        assert str(err).startswith(f"{path_file}:{line}: {path}: ")
        assert_plain(err)
    else:
        pytest.fail("the playbook loaded")


# --------------------------------------------------------------------------- files
def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PlaybookError) as info:
        load_playbook(path)
    assert str(info.value) == f"{path}: no such playbook file (set TRAIL_PLAYBOOK or pass --playbook)"
    assert_plain(info.value)


def test_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError) as info:
        load_playbook(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: cannot read the playbook: ")
    assert_plain(info.value)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    err = load_text(tmp_path, text)
    assert str(err) == f"{tmp_path / 'acme.yaml'}:1: the playbook is empty"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    err = load_text(tmp_path, "- just\n- a list\n")
    assert str(err) == f"{tmp_path / 'acme.yaml'}:1: must be a mapping of keys, got a list"


def test_missing_top_level_section(tmp_path: Path) -> None:
    start = DEFAULT.index("steps:\n")
    end = DEFAULT.index("# Obligations:")
    text = DEFAULT[:start] + DEFAULT[end:]
    err = load_text(tmp_path, text)
    # The root mapping starts at the first key of the file.
    assert str(err) == f"{tmp_path / 'acme.yaml'}:{line_of(text, 'playbook:')}: missing required key 'steps'"
