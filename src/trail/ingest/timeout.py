"""A time limit on a step's writes (store inserts, checkpoints, incident saves).

A write that hangs must not hang its role: the loop would stop polling, the consumer group
would drop the member, and stop() would never be answered. The server side gets its own
bound where it has one (the store passes ``max_execution_time`` with each insert), but a
client can still wait on a lock, a dead socket or an in-process engine that cannot be
interrupted. So each write runs in a worker thread of its role and the caller waits at most
``timeout_s``; past that it gets :class:`~trail.ingest.errors.WriteTimeout`, which the steps
treat like a failed write (retry with backoff, nothing committed past it).

The write that timed out may still finish later: every store trail writes to de-duplicates
(events on ``event_id``, alerts on ``alert_id``, incidents on ids derived from their alerts),
so the retry writing the same rows again is harmless. Only one write is in flight per role:
the next call first waits (within its own limit) for the one that timed out.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from trail.ingest.errors import WriteTimeout

T = TypeVar("T")


class _Job(Generic[T]):
    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    def __call__(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # noqa: BLE001  # handed to the caller, which re-raises it
            self.error = exc
        finally:
            self.done.set()


class Pending(Generic[T]):
    """A write started by :meth:`TimeLimit.start`."""

    def __init__(self, limit: TimeLimit, job: _Job[T], deadline: float, timeout_s: float, what: str) -> None:
        self._limit, self._job, self._deadline, self._timeout_s, self._what = limit, job, deadline, timeout_s, what

    def done(self) -> bool:
        return self._job.done.is_set()

    def result(self) -> T:
        """The write's result; its exception; or WriteTimeout once its time is up (it may still
        finish later: the next write waits for it first)."""
        job = self._job
        if not job.done.wait(max(0.0, self._deadline - time.monotonic())):
            self._limit._late = job  # type: ignore[assignment]
            raise WriteTimeout(f"{self._what} did not finish within {self._timeout_s:g} s")
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]  # set by the job when it finished without error


class TimeLimit:
    """Runs one role's writes, one at a time, each within a time limit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job[object] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._late: _Job[object] | None = None

    def run(self, fn: Callable[[], T], timeout_s: float | None, what: str) -> T:
        """``fn()``'s result, or WriteTimeout when it takes longer than ``timeout_s`` (None or
        0: no limit, run inline). An exception of ``fn`` is raised here unchanged."""
        if not timeout_s or timeout_s <= 0:
            return fn()
        return self.start(fn, timeout_s, what).result()

    def start(self, fn: Callable[[], T], timeout_s: float, what: str) -> Pending[T]:
        """Start ``fn()`` in the worker and return at once; :meth:`Pending.result` waits for it
        within ``timeout_s`` of now. The caller may do other work meanwhile (the sink decodes
        its next batch while the store inserts this one, outside the GIL)."""
        deadline = time.monotonic() + timeout_s
        late = self._late
        if late is not None:
            if not late.done.wait(timeout_s):
                raise WriteTimeout(f"{what}: the previous write is still running after another {timeout_s:g} s")
            self._late = None
        job: _Job[T] = _Job(fn)
        self._start()
        self._jobs.put(job)  # type: ignore[arg-type]  # the queue holds jobs of any result type
        return Pending(self, job, deadline, timeout_s, what)

    def close(self) -> None:
        """Let the worker end once it is idle (a write still running finishes first)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=f"trail-{self.name}-writer", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()
