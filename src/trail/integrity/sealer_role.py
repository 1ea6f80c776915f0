"""The sealer role: one process signs checkpoints for the whole trail, however many sinks store.

Run it twice (or more) for availability: the process holding the lease (:mod:`trail.integrity.lease`)
seals; the others wait and take over when it dies. The chain of checkpoints never forks:

* a new leader loads the last checkpoint from the store (and its own append-only file, whichever
  is further) and extends it; a checkpoint written to the file but not to the store before a
  crash is finished first (:class:`~trail.integrity.sealer.Sealer` does that at start);
* before every checkpoint the leader checks that it still holds the lease and that the store's
  newest checkpoint is the one it extends; if anyone else sealed meanwhile it reloads instead of
  signing a second successor of the same checkpoint;
* what it seals it finds in the store (``refresh_from_store``): events stored by any sink after
  the last checkpoint, contiguous and correctly chained per producer.

Sinks then run without sealing (``TRAIL_CHECKPOINT_SECONDS=0`` on them); ``trail up`` keeps
sealing in its one sink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from trail.errors import StoreError
from trail.integrity.checkpoint import Checkpoint
from trail.integrity.lease import Lease
from trail.integrity.sealer import Sealer
from trail.logging import get_logger
from trail.storage import integrity as sql
from trail.storage.store import Store

log = get_logger("trail.sealer_role")


class SealerRole:
    def __init__(
        self,
        make_sealer: Callable[[], Sealer],
        store: Store,
        lease: Lease,
        *,
        interval_s: float = 10.0,
        standby_poll_s: float = 2.0,
    ) -> None:
        self.make_sealer = make_sealer
        self.store = store
        self.lease = lease
        self.interval_s = interval_s
        self.standby_poll_s = standby_poll_s
        self.sealer: Sealer | None = None
        #: Times this process became the leader, and checkpoints it signed.
        self.terms = 0
        self.checkpoints = 0
        self._stop = threading.Event()

    @property
    def leading(self) -> bool:
        return self.sealer is not None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Lead or wait until stopped; a leader seals once more on a clean stop."""
        try:
            while not self._stop.is_set():
                if not self.leading and not self.try_lead():
                    self._stop.wait(self.standby_poll_s)
                    continue
                try:
                    self.tick()
                except StoreError as exc:
                    log.error("sealer.store_failed", error=str(exc))
                self._stop.wait(self.interval_s)
            if self.leading:
                self.tick()
        finally:
            self.lease.release()
            self.sealer = None

    def try_lead(self) -> bool:
        if not self.lease.acquire():
            return False
        try:
            self.sealer = self.make_sealer()
        except BaseException:
            self.lease.release()
            raise
        self.terms += 1
        last = self.sealer.last.seq if self.sealer.last else 0
        log.info("sealer.leading", lease=self.lease.name, last_checkpoint=last, unsealed=self.sealer.unsealed)
        return True

    def tick(self) -> Checkpoint | None:
        """One round as leader: check the lease and the chain's head, then seal what is new."""
        sealer = self.sealer
        if sealer is None:
            return None
        if not self.lease.held():
            log.warning("sealer.lease_lost", lease=self.lease.name)
            self.sealer = None
            return None
        head = sql.last_checkpoint_seq(self.store)
        mine = sealer.last.seq if sealer.last else 0
        if head != mine:
            # Someone sealed since this process loaded the chain: extend theirs, never fork it.
            log.warning("sealer.head_moved", expected=mine, found=head)
            sealer = self.sealer = self.make_sealer()
        sealer.refresh_from_store()
        cp = sealer.seal()
        if cp is not None:
            self.checkpoints += 1
        return cp
