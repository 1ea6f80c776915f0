"""The metrics module: one registry, watched gauges read at scrape time, bounded labels."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from trail import metrics
from trail.ingest.sink import reason_label


def _scrape() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def test_every_metric_is_trail_prefixed_and_documented() -> None:
    names = [m.name for m in metrics.REGISTRY.collect()]
    assert names and all(n.startswith("trail_") for n in names)
    for family in metrics.REGISTRY.collect():
        assert family.documentation.strip(), family.name


def test_watched_gauge_is_read_at_scrape_time_and_removable() -> None:
    value = {"n": 2.0}
    remove = metrics.watch("trail_incidents_open", lambda: [(("II",), value["n"])])
    try:
        assert 'trail_incidents_open{grade="II"} 2.0' in _scrape()
        value["n"] = 5.0
        assert 'trail_incidents_open{grade="II"} 5.0' in _scrape()
    finally:
        remove()
    assert 'grade="II"' not in _scrape()


def test_a_failing_source_does_not_break_the_scrape() -> None:
    def broken() -> list[tuple[tuple[str, ...], float]]:
        raise RuntimeError("store down")

    remove = metrics.watch("trail_obligations_overdue", broken)
    try:
        text = _scrape()
        assert "trail_consumer_lag_records" in text and "trail_obligations_overdue" in text
    finally:
        remove()


def test_only_declared_gauges_can_be_watched() -> None:
    with pytest.raises(KeyError, match="trail_spool_bytes"):
        metrics.watch("trail_made_up", lambda: [])


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("occurred_at: must be an RFC 3339 timestamp", "occurred_at"),
        ("hash mismatch: the event was changed after it was hashed", "hash mismatch"),
        ("not JSON: Expecting value at line 1 column 1 (char 0) and a lot more text here", "not JSON"),
        ("the value of SUBJ-0001 is not what we expected at all in this record", "other"),
    ],
)
def test_dead_letter_reasons_become_bounded_labels(reason: str, label: str) -> None:
    assert reason_label(reason) == label


def test_every_finding_kind_verify_can_report_has_its_gauge_series() -> None:
    """The findings gauge sets each kind in FINDING_KINDS: a kind verify reports but the list
    lacks would never show in the metrics (read from verify's source, every ``report.add``)."""
    import inspect
    import re

    from trail.integrity import verify

    source = inspect.getsource(verify)
    emitted = set(re.findall(r'report\.add\(\s*"([a-z_]+)"', source))
    emitted |= set(re.findall(r'\bkind(?:, detail)? = "([a-z_]+)"', source))
    assert emitted >= {"modified", "deleted", "inserted", "reordered", "copy_missing", "copy_differs"}
    assert emitted == set(verify.FINDING_KINDS)
