"""Verifications as jobs and the scheduled verification's turns (TRAIL_VERIFY_EVERY), as pure
logic over a stand-in backend; tests/integration/test_metrics_api.py and test_access_api.py run
them over a real store."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from trail.errors import Conflict, StoreError, ValidationError
from trail.service import PeriodicVerification, Verifications
from trail.testing import capture_logs

INTACT = {"summary": {"intact": True, "events_checked": 3, "copy_rows_checked": 6, "findings": 0}, "findings": []}


class Backend:
    """Stands in for StoreBackend.begin_verify: claims one verification at a time like it does."""

    def __init__(self, outcome: Callable[[], dict[str, Any]] | Exception = lambda: INTACT) -> None:
        self.outcome = outcome
        self.claimed = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()

    def begin_verify(self, since: Any, strict: bool, public_key: Any = None, **_: Any) -> Callable[[], Any]:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        if not self.claimed.acquire(blocking=False):
            raise Conflict("a verification has been running since then")
        outcome = self.outcome

        def run() -> dict[str, Any]:
            try:
                assert self.gate.wait(10)
                return outcome()
            finally:
                self.claimed.release()

        return run


def _events(logs: Any) -> list[str]:
    return [json.loads(line)["event"] for line in logs.getvalue().splitlines() if line.startswith("{")]


def test_a_job_answers_at_once_runs_in_the_background_and_keeps_its_result() -> None:
    backend = Backend()
    backend.gate.clear()
    jobs = Verifications(backend)  # type: ignore[arg-type]
    job = jobs.start(None, False, by="aud")
    assert job.status == "running" and jobs.get(job.id) is job and jobs.latest() is job
    with pytest.raises(Conflict, match=f"verification {job.id} has been running since"):
        jobs.start(None, False, by="someone else")
    backend.gate.set()
    assert job.done.wait(10)
    shown = jobs.get(job.id)
    assert shown is not None and shown.status == "done" and shown.finished_at
    assert shown.as_dict()["summary"]["intact"] and shown.as_dict()["by"] == "aud"
    second = jobs.start(5, True, by="aud")  # once it ended, the next one starts
    assert second.done.wait(10) and jobs.recent()[0] is second
    assert jobs.get("not-a-job") is None


@pytest.mark.allow_internal_errors
def test_a_job_that_fails_says_so_and_frees_the_next_one() -> None:
    def broken() -> dict[str, Any]:
        raise StoreError("store query failed: connection refused")

    def bug() -> dict[str, Any]:
        raise KeyError("summary")

    for outcome, said in ((broken, "StoreError: store query failed: connection refused"), (bug, "internal error")):
        jobs = Verifications(Backend(outcome))  # type: ignore[arg-type]
        with capture_logs("info") as logs:
            job = jobs.start(None, False, by="aud")
            assert job.done.wait(10)
        assert job.status == "failed" and job.error is not None and said in job.error and job.result is None
        assert "verify.failed" in _events(logs)
        assert jobs.start(None, False, by="aud").done.wait(10)


def test_a_bad_request_starts_no_job() -> None:
    jobs = Verifications(Backend(ValidationError("public_key", "the public key's 64 hex characters")))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        jobs.start(None, False, "../etc/passwd", by="aud")
    assert jobs.recent() == []


def test_only_the_last_finished_jobs_are_kept() -> None:
    jobs = Verifications(Backend(), keep=3)  # type: ignore[arg-type]
    ids = []
    for _ in range(6):
        job = jobs.start(None, False, by="aud")
        assert job.done.wait(10)
        ids.append(job.id)
    kept = [j.id for j in jobs.recent()]
    assert len(kept) <= 4 and ids[-1] in kept and ids[0] not in kept


def test_a_scheduled_run_survives_a_failing_store_and_skips_its_turn_when_one_runs() -> None:
    """A store error is logged and the next turn tries again; a verification already running
    makes the turn a skip; a scheduled run is a job like the others, by "schedule"."""

    def broken() -> dict[str, Any]:
        raise StoreError("store down")

    with capture_logs("info") as logs:
        failed = PeriodicVerification(Verifications(Backend(broken)), 60).run_once()  # type: ignore[arg-type]
        held = Backend()
        held.gate.clear()
        jobs = Verifications(held)  # type: ignore[arg-type]
        asked = jobs.start(None, False, by="aud")
        skipped = PeriodicVerification(jobs, 60).run_once()
        held.gate.set()
        assert asked.done.wait(10)
        ran = PeriodicVerification(jobs, 60).run_once()
    assert failed is not None and failed.status == "failed" and skipped is None
    assert ran is not None and ran.status == "done" and ran.by == "schedule" and jobs.latest() is ran
    events = _events(logs)
    assert (
        events.index("verify.scheduled_failed")
        < events.index("verify.scheduled_skipped")
        < events.index("verify.intact")
    )


def test_one_process_of_several_runs_the_schedule_and_another_takes_it_over(tmp_path: Any) -> None:
    """Replicas of the API each with TRAIL_VERIFY_EVERY: the one holding the schedule's lease
    verifies; the other skips its turns until the holder stops, then takes the schedule over."""
    from trail.integrity.lease import FileLease

    lock = tmp_path / "verify-schedule.lock"
    first_jobs, second_jobs = Verifications(Backend()), Verifications(Backend())  # type: ignore[arg-type]
    first = PeriodicVerification(first_jobs, 60, FileLease(lock))
    second = PeriodicVerification(second_jobs, 60, FileLease(lock))
    with capture_logs("info") as logs:
        assert first.run_once() is not None
        assert second.run_once() is None and second_jobs.recent() == []
        assert first.run_once() is not None  # the holder keeps it from turn to turn
        first.stop()  # the holder ends (a killed process's flock ends with it too)
        taken = second.run_once()
    assert taken is not None and taken.status == "done" and len(first_jobs.recent()) == 2
    assert "another process holds the schedule" in logs.getvalue()
    second.stop()
