"""When the sealer says the sinks are not committing: only when their commit stops moving, not
whenever records wait (under steady traffic some always wait behind the sinks' last commit)."""

from __future__ import annotations

from collections import deque
from typing import Any

from trail.integrity.log_sealer import LogSealStep
from trail.testing import capture_logs


class _Sinks:
    group_id = "trail-sink"

    def read(self) -> dict[int, int]:
        return {}

    def close(self) -> None:
        pass


def _step() -> Any:
    step = LogSealStep(leader=None, sinks=_Sinks(), interval_s=1.0, stall_warn_s=0.0)  # type: ignore[arg-type]
    return step


def test_steady_traffic_with_the_sinks_committing_is_not_a_stall() -> None:
    step = _step()
    with capture_logs("warning") as logs:
        for commit in range(10, 200, 10):  # each round: the sinks moved on, newer records wait
            step._waiting[0] = deque([(commit, None), (commit + 5, None)])
            step._watch_stalls({0: commit})
    assert "sealer.sinks_not_committing" not in logs.getvalue()


def test_a_commit_that_stops_moving_is_logged_once_and_again_after_it_moved() -> None:
    step = _step()
    step._waiting[0] = deque([(10, None)])
    with capture_logs("warning") as logs:
        for _ in range(4):
            step._watch_stalls({0: 10})
        step._watch_stalls({})  # the group lost its commit (another namespace): a new stall
        step._watch_stalls({})
    assert logs.getvalue().count("sealer.sinks_not_committing") == 2
