"""The sealer role: one process signs checkpoints for the whole trail, however many sinks store.

Run it twice (or more) for availability: the process holding the lease (:mod:`trail.integrity.lease`)
seals; the others wait and take over when it dies. The chain of checkpoints never forks:

* a new leader loads the last checkpoint from the store (and its own append-only file, whichever
  is further) and extends it; a checkpoint written to the file but not to the store before a
  crash is finished first (:class:`~trail.integrity.sealer.Sealer` does that at start);
* before every checkpoint the leader checks that it still holds the lease and that the store's
  newest checkpoint is the one it extends; if anyone else sealed meanwhile it reloads instead of
  signing a second successor of the same checkpoint.

What it seals comes from the events topic when the role has one (:mod:`trail.integrity.log_sealer`:
the log of record, each record validated, sealed once the sinks' group committed past it), else
from the store (``refresh_from_store``: events stored after the last checkpoint, contiguous and
correctly chained per producer — a store written directly, without a broker).

Sinks then run without sealing (``TRAIL_CHECKPOINT_SECONDS=0`` on them); ``trail up`` runs
this role in a thread beside its sink.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trail import metrics
from trail.errors import StoreError, TrailError
from trail.ingest.errors import OffsetOutOfRange
from trail.integrity.checkpoint import Checkpoint
from trail.integrity.lease import Lease
from trail.integrity.log_sealer import HOLD_LIMIT_S, STALL_WARN_S, LogSealStep, Offsets, SealRequest
from trail.integrity.sealer import Sealer
from trail.logging import get_logger
from trail.storage import integrity as sql
from trail.storage.store import Store

log = get_logger("trail.sealer_role")


@dataclass
class LogFeed:
    """Where a leader reads the log: its consumer (a factory, one per term) and the sinks' offsets."""

    consumer: Callable[[], Any]
    sinks: Callable[[], Offsets]
    #: How long an event waiting behind a gap may hold the committed offset back.
    hold_limit_s: float = HOLD_LIMIT_S
    #: How long records may wait for the sinks' commit before it is logged.
    stall_warn_s: float = STALL_WARN_S


class SealerRole:
    def __init__(
        self,
        make_sealer: Callable[[bool], Sealer],
        store: Store,
        lease: Lease,
        *,
        interval_s: float = 10.0,
        standby_poll_s: float = 2.0,
        feed: LogFeed | None = None,
        retry_s: float = 2.0,
    ) -> None:
        #: ``make_sealer(adopt_stored)``: a sealer over the chain as it stands now.
        self.make_sealer = make_sealer
        self.store = store
        self.lease = lease
        self.interval_s = interval_s
        self.standby_poll_s = standby_poll_s
        self.feed = feed
        self.retry_s = retry_s
        self.sealer: Sealer | None = None
        #: Times this process became the leader, and checkpoints it signed.
        self.terms = 0
        self.checkpoints = 0
        #: The last error that ended a term's log loop (None once a round succeeds again).
        self.error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._loop: Any = None
        self._step: LogSealStep | None = None
        #: Set once this process has tried to lead and found the lease taken.
        self._tried = False

    @property
    def leading(self) -> bool:
        return self.sealer is not None

    def stop(self) -> None:
        """Ask the role to stop (sets flags only: safe from a signal handler)."""
        self._stop.set()
        loop = self._loop
        if loop is not None:
            loop.stop()

    def run(self) -> None:
        """Lead or wait until stopped; a leader seals once more on a clean stop."""
        try:
            while not self._stop.is_set():
                if not self.leading and not self.try_lead():
                    self._tried = True
                    self._stop.wait(self.standby_poll_s)
                    continue
                if self.feed is not None:
                    self._run_log_term(self.feed)
                    continue
                try:
                    self.tick()
                except StoreError as exc:
                    log.error("sealer.store_failed", error=str(exc))
                self._stop.wait(self.interval_s)
            if self.leading and self.feed is None:
                self.tick()
        finally:
            self.lease.release()
            self.sealer = None
            metrics.SEALER_LEADING.set(0)

    def _run_log_term(self, feed: LogFeed) -> None:
        """Seal from the log until stopped or the lease is lost; an error ends the loop, and the
        role (still leading) starts a new one after a pause."""
        from trail.ingest.processor import Processor

        step = LogSealStep(self, feed.sinks(), self.interval_s, feed.hold_limit_s, feed.stall_warn_s)
        loop = Processor("sealer", feed.consumer, step, no_offset="earliest", poll_timeout_s=0.2)
        self._step, self._loop = step, loop
        if self._stop.is_set():
            loop.stop()
        try:
            loop.run()
        except OffsetOutOfRange:
            raise  # the log lost records before they were sealed: an operator decides, never a silent skip
        except (TrailError, OSError) as exc:
            self.error = str(exc)
            log.error("sealer.log_failed", error=str(exc), retry_in_s=self.retry_s)
            self._stop.wait(self.retry_s)
        finally:
            self._step = self._loop = None

    def try_lead(self) -> bool:
        if not self.lease.acquire():
            return False
        try:
            self.sealer = self.make_sealer(self.feed is None)
        except BaseException:
            self.lease.release()
            raise
        self.terms += 1
        metrics.SEALER_LEADING.set(1)
        last = self.sealer.last.seq if self.sealer.last else 0
        log.info("sealer.leading", lease=self.lease.name, last_checkpoint=last, unsealed=self.sealer.unsealed)
        return True

    def current_sealer(self) -> Sealer | None:
        """The sealer to extend the chain with, after checking the lease and the chain's head;
        None (and no longer leading) when the lease is lost."""
        sealer = self.sealer
        if sealer is None:
            return None
        if not self.lease.held():
            log.warning("sealer.lease_lost", lease=self.lease.name)
            self.sealer = None
            metrics.SEALER_LEADING.set(0)
            return None
        head = sql.last_checkpoint_seq(self.store)
        mine = sealer.last.seq if sealer.last else 0
        if head not in (mine, sealer.stored_seq):  # its own checkpoint still to be stored is not someone else's
            # Someone sealed since this process loaded the chain: extend theirs, never fork it.
            log.warning("sealer.head_moved", expected=mine, found=head)
            sealer = self.sealer = self.make_sealer(self.feed is None)
        return sealer

    def sealed(self, cp: Checkpoint | None) -> None:
        if cp is not None:
            self.checkpoints += 1
            metrics.CHECKPOINTS_SIGNED.inc()
        self.error = None

    def tick(self) -> Checkpoint | None:
        """One round as leader over the store: check the lease and the chain's head, then seal
        what is new (the role without a log feed)."""
        with self._lock:
            sealer = self.current_sealer()
            if sealer is None:
                return None
            sealer.refresh_from_store()
            cp = sealer.seal()
            self.sealed(cp)
            return cp

    def seal_now(self, timeout_s: float = 30.0) -> Checkpoint | None:
        """Seal now what the sinks have stored (from any thread). With a log feed the leader
        first reads the log up to the sinks' commits; returns the checkpoint, or None when
        nothing was new or this process does not lead."""
        if self.feed is None:
            return self.tick() if self.leading else None
        deadline = time.monotonic() + timeout_s
        while self._step is None and not self._stop.is_set() and time.monotonic() < deadline:
            if self._tried and not self.leading:
                return None  # a standby: the leader seals
            time.sleep(0.05)  # the role is starting, or a term is
        step = self._step
        if step is None:
            return None
        req = SealRequest(deadline=deadline)
        step.request(req)
        if not req.done.wait(max(0.0, deadline - time.monotonic()) + 5.0):
            raise TrailError(f"the sealer did not seal within {timeout_s:g} s")
        if req.error is not None:
            raise TrailError(f"sealing failed: {req.error}")
        return req.result
