"""The rules file: defaults, overrides, errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from trail.detect.rules import ARTICLES, RULE_NAMES, load_rules
from trail.errors import ConfigError


def test_defaults_are_the_issue_thresholds() -> None:
    """Without a file the defaults of the detection issue apply."""
    rs = load_rules()
    assert rs.timezone == "Asia/Shanghai"
    assert rs.human_kinds == ("staff", "agent")
    assert (rs.bulk_export.single_records, rs.bulk_export.total_records) == (1000, 5000)
    assert rs.bulk_destruction.records == 1000
    assert rs.enumeration.distinct_subjects == 500
    assert (rs.off_hours.start_hour, rs.off_hours.end_hour, rs.off_hours.records) == (8, 20, 100)
    assert (rs.denied_burst.count, rs.denied_burst.window_s) == (20, 600)


def test_every_rule_names_its_articles() -> None:
    """Every rule serves named articles, and show lists them."""
    rows = load_rules().describe()
    assert [r["rule"] for r in rows] == list(RULE_NAMES)
    assert all(r["articles"] for r in rows)
    assert ARTICLES["cross_border"] == ("Shenzhen Art. 82",)
    assert ARTICLES["denied_burst"][0] == "MIIT Order 24 Art. 13(5)"


def test_file_overrides(tmp_path: Path) -> None:
    """A rules file overrides globals and per-rule parameters; settings win for time zone and jobs."""
    f = tmp_path / "rules.toml"
    f.write_text(
        'timezone = "Europe/Berlin"\napproved_jobs = ["svc-a"]\n'
        '[rules.bulk_export]\nsingle_records = 2000\nseverity = "critical"\n[rules.off_hours]\nenabled = false\n'
    )
    rs = load_rules(f)
    assert rs.bulk_export.single_records == 2000
    assert rs.bulk_export.severity == "critical"
    assert rs.off_hours.enabled is False
    assert rs.approved_jobs == ("svc-a",)
    assert rs.source == str(f)
    assert load_rules(f, timezone="Asia/Shanghai", approved_jobs=("svc-b",)).approved_jobs == ("svc-b",)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param("[rules.bulk_export]\nsingle_records = 0\n", "rules.bulk_export.single_records", id="zero"),
        pytest.param("[rules.bulk_export]\nsingle_records = 'x'\n", "rules.bulk_export.single_records", id="type"),
        pytest.param("[rules.nope]\nx = 1\n", "rules.nope", id="unknown-rule"),
        pytest.param("[rules.enumeration]\nsubjects = 5\n", "rules.enumeration.subjects", id="unknown-param"),
        pytest.param("[rules.cross_border]\nseverity = 'urgent'\n", "rules.cross_border.severity", id="severity"),
        pytest.param('timezone = "Mars/Olympus"\n', "timezone", id="timezone"),
        pytest.param("colour = 1\n", "colour", id="unknown-key"),
        pytest.param("[rules\n", "not valid TOML", id="syntax"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, names: str) -> None:
    """A bad rules file is refused with the file and the key in the message."""
    f = tmp_path / "rules.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_rules(f)
    assert str(f) in str(err.value)
    assert names in str(err.value)
