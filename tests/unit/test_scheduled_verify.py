"""The scheduled verification's turns (TRAIL_VERIFY_EVERY), as pure logic over a stand-in backend;
tests/integration/test_metrics_api.py runs it over a real store."""

from __future__ import annotations

import json
from typing import Any

from trail.errors import Conflict, StoreError
from trail.service import PeriodicVerification
from trail.testing import capture_logs


def test_a_scheduled_run_survives_a_failing_store_and_skips_its_turn_when_one_runs() -> None:
    """Pure logic, a stand-in backend: a store error is logged and the next turn tries again;
    a verification already running (409) makes the turn a skip."""

    class Backend:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def verify(self, since: Any, strict: bool) -> dict[str, Any]:
            raise self.exc

    with capture_logs("info") as logs:
        PeriodicVerification(Backend(StoreError("store down")), 60).run_once()  # type: ignore[arg-type]
        PeriodicVerification(Backend(Conflict("running")), 60).run_once()  # type: ignore[arg-type]
    events = [json.loads(line)["event"] for line in logs.getvalue().splitlines() if line.startswith("{")]
    assert events == ["verify.scheduled_failed", "verify.scheduled_skipped"]
