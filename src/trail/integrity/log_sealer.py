"""Sealing from the events topic, the log of record.

The sealer role's leader reads ``trail.events`` itself (a consumer group of its own, every
partition assigned to it) and seals what the log carries once the sinks have stored it:

* each record is decoded by the sink's own decoder (:func:`trail.ingest.decode.decode_position`): the same
  validation and the same hash check, so a record a sink dead-letters is never sealed;
* a record is handed to the sealer only when the sinks' consumer group has committed past its
  offset: a sink commits only after the insert, so the event is in the store by then;
* nothing is taken from the store — except once, at a first start with no committed offset of
  the sealer's own, when the store may hold events the log no longer carries (after an upgrade
  from sinks that sealed, or in ``trail up``, whose broker keeps its log in memory);
* after each checkpoint it commits, per partition, the offset of the oldest record it still
  holds unsealed (waiting for the sinks, or behind a gap in its producer's chain, for up to an
  hour). A restart reads those again; what the chain already holds is skipped, so nothing is
  sealed twice.

So the chain of checkpoints follows the log, confirmed by the sinks' commits, and
``trail verify`` proves the store against it: a row that the log never carried (written into
the store some other way) stays unsealed and is reported, and an event that the log carried and
the store lost is a missing event inside a sealed range.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from trail import metrics
from trail.errors import StoreError, WriteFailed
from trail.events.wire import Rejected
from trail.ingest.decode import decode_position
from trail.ingest.step import Partition, Polled, Step
from trail.integrity.checkpoint import Checkpoint
from trail.logging import get_logger

if TYPE_CHECKING:
    from trail.ingest.processor import Processor
    from trail.integrity.sealer import Sealer

log = get_logger("trail.sealer")

#: (producer id, seq, hash, prev) of one event read from the log.
Position = tuple[str, int, str, str]
#: How long an event waiting behind a gap in its producer's chain may hold the sealer's
#: committed offset back (see ``LogSealStep._commit``).
HOLD_LIMIT_S = 3600.0
#: How long records may wait for the sinks' group to commit past them before it is logged: the
#: sinks are down or stuck, or they run in another namespace (another group) than the sealer.
STALL_WARN_S = 300.0


class Offsets(Protocol):
    """The sinks' committed offsets (:class:`trail.ingest.kafka.GroupOffsets`)."""

    def read(self) -> dict[int, int]: ...
    def close(self) -> None: ...


class Leader(Protocol):
    """What the step needs of the sealer role."""

    def current_sealer(self) -> Sealer | None:
        """The sealer to extend the chain with, or None when the lease is lost."""

    def sealed(self, cp: Checkpoint | None) -> None:
        """Told after each round that may have signed ``cp``."""


@dataclass
class SealRequest:
    """A seal asked for now (``trail up``'s API, its stop): caught up with the sinks first."""

    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Checkpoint | None = None
    error: BaseException | None = None


class LogSealStep(Step):
    """The leader's work over the events topic (run by :class:`~trail.ingest.processor.Processor`)."""

    def __init__(
        self,
        leader: Leader,
        sinks: Offsets,
        interval_s: float,
        hold_limit_s: float = HOLD_LIMIT_S,
        stall_warn_s: float = STALL_WARN_S,
    ) -> None:
        self.leader = leader
        self.sinks = sinks
        self.interval_s = interval_s
        self.hold_limit_s = hold_limit_s
        self.stall_warn_s = stall_warn_s
        #: Per partition with records waiting: since when, and the sinks' commit then (a stall is
        #: that commit not moving, not records waiting: under steady traffic some always wait).
        self._stalled_since: dict[int, tuple[float, int | None]] = {}
        #: Partitions whose current stall was logged.
        self._stall_logged: set[int] = set()
        #: Read from the log, not yet below the sinks' commit: (offset, position or None if invalid).
        self._waiting: dict[int, deque[tuple[int, Position | None]]] = {}
        #: Handed to the sealer, not yet sealed: (offset, position, when), in offset order.
        self._held: dict[int, list[tuple[int, Position, float]]] = {}
        #: The next offset to read, per partition (known once a record came from there).
        self._next: dict[int, int] = {}
        self._fed: Sealer | None = None
        #: Partitions whose offset has moved past events still waiting (logged once each).
        self._released_past: set[int] = set()
        self._next_round = 0.0
        self._request: SealRequest | None = None
        self._topic = ""
        self.records = 0
        self.rejected = 0

    # -- the loop ---------------------------------------------------------------------
    def start(self, loop: Processor) -> None:
        super().start(loop)
        owned = loop.assignment()
        self._topic = next(iter(owned)).topic if owned else ""
        if owned and all(loop.committed(p) is None for p in owned):
            sealer = self.leader.current_sealer()
            if sealer is not None:
                # First start on this log: the store may hold what the log no longer carries.
                sealer.refresh_from_store()
                log.info("sealer.first_start_adopted_store", unsealed=sealer.unsealed)
        self._next_round = time.monotonic() + self.interval_s

    def submit(self, polled: Polled) -> None:
        for p, records in polled.items():
            waiting = self._waiting.setdefault(p.partition, deque())
            for r in records:
                pos = decode_position(r.value)
                if isinstance(pos, Rejected):
                    self.rejected += 1
                    waiting.append((r.offset, None))
                else:
                    waiting.append((r.offset, pos))
            if records:
                self.records += len(records)
                self._next[p.partition] = records[-1].offset + 1

    def request(self, req: SealRequest) -> None:
        """Ask for a round now (any thread); the loop answers it within a poll."""
        self._request = req

    def poll(self) -> None:
        req = self._request
        if req is None and time.monotonic() < self._next_round:
            return
        committed = self.sinks.read()
        if req is not None and not self._caught_up(committed) and time.monotonic() < req.deadline:
            return  # read on: the sinks stored more than this consumer has seen yet
        try:
            cp = self._round(committed)
        except WriteFailed as exc:
            if req is not None and time.monotonic() >= req.deadline:
                self._answer(req, None, exc)
            raise
        if req is not None:
            self._answer(req, cp, None)
        self._next_round = time.monotonic() + self.interval_s

    def flush(self) -> None:
        """Nothing to do on a rebalance (the partitions it keeps go on as they are)."""

    def finish(self) -> None:
        """A clean stop: seal what the sinks have stored of what was read."""
        if self.loop.consumer.assignment():
            self._round(self.sinks.read())
        req = self._request
        if req is not None:
            self._answer(req, None, None)

    def revoke(self, partitions: Collection[Partition]) -> None:
        for p in partitions:
            self._waiting.pop(p.partition, None)
            self._held.pop(p.partition, None)
            self._next.pop(p.partition, None)
            self._stalled_since.pop(p.partition, None)
            self._stall_logged.discard(p.partition)

    def close(self) -> None:
        self.sinks.close()

    # -- a round ----------------------------------------------------------------------
    def _caught_up(self, committed: dict[int, int]) -> bool:
        owned = {p.partition for p in self.loop.assignment()}
        for part, off in committed.items():
            if part not in owned:
                continue
            nxt = self._next.get(part)
            if nxt is None:
                nxt = self.loop.committed(Partition(self._topic, part)) or 0
            if nxt < off:
                return False
        return True

    def _round(self, committed: dict[int, int]) -> Checkpoint | None:
        """Hand the sealer what the sinks have stored, seal, then commit what is sealed."""
        try:
            sealer = self.leader.current_sealer()
            if sealer is None:
                self.loop.stop()  # the lease is gone: the next leader reads on from the last commit
                return None
            if sealer is not self._fed:  # a new term or a reloaded chain: give it all that is held
                sealer.add_positions(self._held_positions())
                self._fed = sealer
            sealer.add_positions(self._release(committed))
            self._watch_stalls(committed)
            cp = sealer.seal()
        except StoreError as exc:  # retried with backoff; nothing is committed past what is sealed
            raise WriteFailed("seal_failed", str(exc)) from exc
        self.leader.sealed(cp)
        self._forget_sealed(sealer)
        self._commit()
        metrics.SEALER_UNSEALED.set(sealer.unsealed + sum(len(w) for w in self._waiting.values()))
        return cp

    def _release(self, committed: dict[int, int]) -> Iterator[Position]:
        for part, waiting in self._waiting.items():
            limit = committed.get(part, 0)
            held = self._held.setdefault(part, [])
            now = time.monotonic()
            while waiting and waiting[0][0] < limit:
                offset, pos = waiting.popleft()
                if pos is not None:
                    held.append((offset, pos, now))
                    yield pos

    def _watch_stalls(self, committed: dict[int, int]) -> None:
        """Log a partition whose records have waited ``stall_warn_s`` for the sinks' group to
        commit past them, once per stall: without it, sinks in another namespace than the
        sealer's (so another group) leave every event unsealed and nothing says why."""
        now = time.monotonic()
        for part, waiting in self._waiting.items():
            sinks_at = committed.get(part)
            watch = self._stalled_since.get(part)
            if not waiting or watch is None or watch[1] != sinks_at:
                # nothing waits, or the sinks' commit moved since the last round: watch anew from here
                if waiting:
                    self._stalled_since[part] = (now, sinks_at)
                else:
                    self._stalled_since.pop(part, None)
                self._stall_logged.discard(part)
                continue
            since = watch[0]
            if now - since >= self.stall_warn_s and part not in self._stall_logged:
                self._stall_logged.add(part)
                log.warning(
                    "sealer.sinks_not_committing",
                    partition=part,
                    waiting=len(waiting),
                    sinks_committed=committed.get(part),
                    group=getattr(self.sinks, "group_id", None),
                    waited_s=round(now - since),
                    hint="the sinks' group has not stored these records: check that the sinks run and that they "
                    "and the sealer have the same TRAIL_NAMESPACE (nothing is sealed until they are stored)",
                )

    def _held_positions(self) -> Iterator[Position]:
        for held in self._held.values():
            for _off, pos, _when in held:
                yield pos

    def _forget_sealed(self, sealer: Sealer) -> None:
        for part, held in self._held.items():
            self._held[part] = [h for h in held if not sealer.is_sealed(h[1][0], h[1][1])]

    def _commit(self) -> None:
        """Per partition: the oldest record still held or waiting, else the next to read. An
        event that has waited behind a gap for longer than ``hold_limit_s`` no longer holds the
        offset back (a gap that is never filled would pin it until retention deletes the record
        and the sealer stops): it stays in this process's hands, sealed if the gap fills while it
        runs, and after a restart it is reported unsealed by ``verify`` and ``trail gaps``."""
        offsets: dict[Partition, int] = {}
        oldest_kept = time.monotonic() - self.hold_limit_s
        for part, nxt in self._next.items():
            marks = [nxt]
            waiting, held = self._waiting.get(part), self._held.get(part)
            if waiting:
                marks.append(waiting[0][0])
            if held:
                kept = [h[0] for h in held if h[2] >= oldest_kept]
                if len(kept) < len(held) and part not in self._released_past:
                    self._released_past.add(part)
                    stuck = min((h for h in held if h[2] < oldest_kept), key=lambda h: h[0])
                    log.warning(
                        "sealer.gap_not_filled",
                        partition=part,
                        producer=stuck[1][0],
                        waiting_from_seq=stuck[1][1],
                        waited_s=round(time.monotonic() - stuck[2]),
                    )
                if kept:
                    marks.append(min(kept))
            offsets[Partition(self._topic, part)] = min(marks)
        if offsets:
            self.loop.commit(offsets)

    def _answer(self, req: SealRequest, cp: Checkpoint | None, error: BaseException | None) -> None:
        if self._request is req:
            self._request = None
        req.result, req.error = cp, error
        req.done.set()


def log_consumer(bootstrap: str, topic: str, group_id: str, options: dict[str, Any]) -> Callable[[], Any]:
    """The leader's consumer: every partition of the events topic, offsets under its own group."""
    from trail.ingest.kafka import KafkaConsumerAdapter

    def make() -> KafkaConsumerAdapter:
        return KafkaConsumerAdapter(
            bootstrap,
            topic,
            group_id,
            assign_all=True,
            tuned={
                "max_poll_records": 20_000,
                "fetch_max_bytes": 64 * 1024 * 1024,
                "max_partition_fetch_bytes": 16 * 1024 * 1024,
                "fetch_max_wait_ms": 100,
            },
            options=options,
        )

    return make
