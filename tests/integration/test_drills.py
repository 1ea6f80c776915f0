"""The crash drills of ``make drills`` (load_tests/drills.py) at a small size, against the real
broker, the sink as its own process and chDB: nothing lost, nothing duplicated, gaps and verify
clean — and a killed service's lost tail reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from load_tests import drills

from trail.local.broker import LocalBroker, ensure_topics
from trail.storage.store import Store

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


def check(result: dict[str, Any]) -> None:
    shown = {k: v for k, v in result.items() if k not in ("gaps", "tails")}
    if not result["passed"]:
        pytest.fail(f"drill failed: {json.dumps(shown, default=str)}")
    assert {"name", "events", "lost", "duplicates", "passed"} <= set(result)


def test_sink_sigkilled_repeatedly_mid_stream(tmp_path: Path) -> None:
    r = drills.sink_sigkill(tmp_path, events=20_000, kills=3)
    check(r)
    assert (r["lost"], r["duplicates"], r["kills"], r["gaps_clean"], r["verify_intact"]) == (0, 0, 3, True, True)


# kafka-python's KafkaProducer.__del__ may raise (a timeout closing a producer the SDK dropped when
# the network was cut): noise of the library at garbage collection, not a failure of the drill.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_broker_unreachable_while_three_services_record(tmp_path: Path) -> None:
    r = drills.broker_unreachable(tmp_path, events=6_000, outage_s=6.0)
    check(r)
    assert (r["spooled_during_outage"] > 0, r["out_of_order"], r["lost"]) == (True, 0, 0), r


def test_store_unavailable_commits_nothing_past_it(
    tmp_path: Path, broker: LocalBroker, namespace: str, store: Store
) -> None:
    topics = {"events": f"{namespace}trail.events", "deadletter": f"{namespace}trail.deadletter"}
    ensure_topics(broker.bootstrap, {topics["events"]: 2, topics["deadletter"]: 1, f"{namespace}trail.producers": 1})
    r = drills.store_unavailable(tmp_path, store, broker.bootstrap, topics, events=6_000, outage_s=4.0)
    check(r)
    assert r["inserts_refused"] > 0 and r["committed_past_stored"] == 0 and r["lost"] == 0


def test_a_killed_services_tail_is_reported_and_durable_mode_loses_nothing(tmp_path: Path) -> None:
    check(drills.service_sigkill(tmp_path / "plain", run_s=3.0))
    r = drills.service_sigkill(tmp_path / "durable", run_s=3.0, durable=True)
    check(r)
    assert r["lost"] == 0
