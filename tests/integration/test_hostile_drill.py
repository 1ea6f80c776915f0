"""The hostile-input drill at a small size (``load_tests/hostile.py``; ``make drills`` runs
100,000): careless and hostile inputs interleaved with good events through the SDK, ``trail
emit`` and the API of a running stack — no crash, every good event stored once, every bad one
refused naming its field (or its line), nothing bad stored, and the labelled bulk export after
the flood still raises its alert."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from load_tests import hostile

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


def test_a_hostile_flood_loses_nothing_and_blinds_no_detector(tmp_path: Path, chdb_path: Path) -> None:
    store = {"TRAIL_CLICKHOUSE_DSN": f"chdb://{chdb_path}", "TRAIL_CLICKHOUSE_DATABASE": f"h_{uuid.uuid4().hex[:10]}"}
    result = hostile.run(tmp_path, inputs=1500, store=store)
    assert result["crashes"] == 0, result["crash_samples"]
    assert result["refusals_without_field"] == 0, result["refusal_samples_without_field"]
    assert result["bad_accepted"] == {} and result["bad_stored"] == 0
    assert result["events"] == 150 and result["lost"] == 0 and result["duplicates"] == 0
    assert "bulk_export" in result["scenario_alerts"]
    assert set(result["hostile_by_kind"]) >= {"surrogate_text", "too_many_subjects", "clock_future", "pi_phone"}
    assert result["passed"]
