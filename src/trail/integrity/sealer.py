"""The sealer: turns what the sink stored into signed checkpoints.

The sink tells the sealer what each batch inserted (after the store acknowledged it). At a
regular interval, and on clean shutdown, the sealer extends every producer's sealed range
through the contiguous, correctly chained events it has seen, builds the Merkle tree over
their hashes, signs the checkpoint and writes it: first to the append-only file, then to the
store, then to the ``trail.checkpoints`` topic.

State survives restarts without trusting memory: tips come from the store's
``checkpoint_ranges`` (and the file, whichever is further), and events stored after the last
checkpoint but before a crash are found again in the store at start-up. Events beyond a gap
wait (unsealed) until the gap is filled.

One sealer per store: the sealer role (:mod:`trail.integrity.sealer_role`) runs it once for every
sink, fed from the events topic (:mod:`trail.integrity.log_sealer`); a single sink may run one of
its own instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from trail.events.model import format_timestamp
from trail.integrity.checkpoint import AppendOnlyLog, Checkpoint, Range
from trail.integrity.keys import SigningKey, checkpoint_signing_key
from trail.integrity.merkle import root
from trail.logging import get_logger
from trail.storage import integrity as sql
from trail.storage.store import Store

log = get_logger("trail.sealer")


class Sealer:
    def __init__(
        self,
        store: Store,
        key: SigningKey,
        log_file: AppendOnlyLog,
        publish: Callable[[bytes], None] | None = None,
        *,
        adopt_stored: bool = True,
    ) -> None:
        self.store = store
        self.key = key
        self.file = log_file
        self.publish = publish
        self._lock = threading.Lock()
        self.tips: dict[str, tuple[int, str]] = {}
        self.pending: dict[str, dict[int, tuple[str, str]]] = {}
        self.last: Checkpoint | None = None
        self.sealed_events = 0
        #: Events seen with the producer and seq of a different event not yet sealed.
        self.conflicts = 0
        #: A checkpoint in the file whose store copy failed: stored before anything new is signed.
        self._unstored: Checkpoint | None = None
        self._load(adopt_stored)

    # -- state ------------------------------------------------------------------------
    def _load(self, adopt_stored: bool) -> None:
        last_store = sql.last_checkpoint_record(self.store)
        file_records = [r for r in self.file.read() if r.get("type") == "trail.checkpoint/v1"]
        candidates = [Checkpoint.from_record(_json(last_store))] if last_store else []
        if file_records:
            candidates.append(Checkpoint.from_record(file_records[-1]))
        self.last = max(candidates, key=lambda c: c.seq) if candidates else None
        self.tips.update(sql.sealed_tips(self.store))
        for rec in file_records:  # the file may be ahead of the store after a crash between the two
            for r in rec["ranges"]:
                if r["last"] > self.tips.get(r["producer"], (0, ""))[0]:
                    self.tips[r["producer"]] = (int(r["last"]), r["tip"])
        if self.last is not None and sql.checkpoint_record(self.store, self.last.seq) is None:
            self._store_checkpoint(self.last)  # finish what a crash interrupted
        if adopt_stored:
            self.refresh_from_store()

    def refresh_from_store(self) -> None:
        """Events stored after the last checkpoint (e.g. before a crash) are sealed too."""
        rows = sql.unsealed_positions(self.store)
        for pid, seq, digest, prev in rows:
            self.pending.setdefault(pid, {})[seq] = (digest, prev)
        if rows:
            log.info("sealer.unsealed_found", events=len(rows))

    def add(self, events: Iterable[dict[str, Any]]) -> None:
        """Note events the store acknowledged (called by the sink after each insert)."""
        positions = []
        for ev in events:
            producer = ev["producer"]
            positions.append((producer["id"], producer["seq"], ev["hash"], producer["prev"]))
        self.add_positions(positions)

    def add_positions(self, positions: Iterable[tuple[str, int, str, str]]) -> None:
        """Note stored events by ``(producer, seq, hash, prev)``; already sealed ones are skipped."""
        with self._lock:
            for pid, seq, digest, prev in positions:
                if seq <= self.tips.get(pid, (0, ""))[0]:
                    continue  # already sealed (a redelivery)
                waiting = self.pending.setdefault(pid, {})
                known = waiting.get(seq)
                if known is not None and known[0] != digest:
                    # Two different events claim one place in a producer's chain: a forgery or a
                    # broken producer. The first one seen keeps the place; verify reports the other.
                    self.conflicts += 1
                    log.warning(
                        "sealer.conflicting_event", producer=pid, seq=seq, kept=known[0][:16], other=digest[:16]
                    )
                    continue
                waiting[seq] = (digest, prev)

    def is_sealed(self, producer_id: str, seq: int) -> bool:
        return seq <= self.tips.get(producer_id, (0, ""))[0]

    # -- sealing ----------------------------------------------------------------------
    def seal(self) -> Checkpoint | None:
        """Seal everything contiguous; returns the checkpoint, or None when nothing is new."""
        with self._lock:
            if self._unstored is not None:  # finish the last one before signing its successor
                self._store_checkpoint(self._unstored)
                self._unstored = None
            ranges: list[Range] = []
            leaves: list[str] = []
            advanced: dict[str, tuple[int, str]] = {}
            for pid in sorted(self.pending):
                events = self.pending[pid]
                seq, tip = self.tips.get(pid, (0, ""))
                first = seq + 1
                hashes = []
                while seq + 1 in events and events[seq + 1][1] == tip:
                    seq += 1
                    tip = events[seq][0]
                    hashes.append(tip)
                if hashes:
                    ranges.append(Range(pid, first, seq, tip))
                    leaves.extend(hashes)
                    advanced[pid] = (seq, tip)
            if not ranges:
                return None
            cp = Checkpoint(
                seq=(self.last.seq if self.last else 0) + 1,
                prev=self.last.hash if self.last else "",
                created_at=format_timestamp(datetime.now(UTC)),
                count=len(leaves),
                root=root(leaves),
                ranges=tuple(ranges),
                key_id=self.key.public.key_id,
            ).signed(self.key)
            self.file.append(cp.record())
            # The file holds it: from here it is the head of the chain, whatever happens to the
            # copies (a failed store write is retried before the next checkpoint, never re-signed).
            for pid, new_tip in advanced.items():
                self.tips[pid] = new_tip
                waiting = self.pending[pid]
                for s in [s for s in waiting if s <= new_tip[0]]:
                    del waiting[s]
                if not waiting:
                    del self.pending[pid]
            self.last = cp
            self.sealed_events += cp.count
            self._unstored = cp
            self._store_checkpoint(cp)
            self._unstored = None
            if self.publish is not None:
                try:
                    self.publish(_dumps(cp.record()))
                except Exception as exc:  # noqa: BLE001  # the file and the store already hold it
                    log.warning("sealer.publish_failed", seq=cp.seq, error=type(exc).__name__)
            log.info("sealer.checkpoint", seq=cp.seq, events=cp.count, producers=len(ranges), root=cp.root[:16])
            return cp

    def _store_checkpoint(self, cp: Checkpoint) -> None:
        row = [cp.seq, cp.hash, cp.prev, cp.created_at, cp.count, cp.root, cp.key_id, cp.signature]
        sql.insert_checkpoint(
            self.store,
            [*row, _dumps(cp.record()).decode()],
            [[cp.seq, r.producer, r.first, r.last, r.tip] for r in cp.ranges],
        )

    @property
    def stored_seq(self) -> int:
        """The newest checkpoint of this chain the store should hold: the last one signed, or the
        one before while the last one's store copy is still to be written."""
        last = self.last.seq if self.last else 0
        return last - 1 if self._unstored is not None else last

    @property
    def unsealed(self) -> int:
        return sum(len(v) for v in self.pending.values())


def _dumps(rec: dict[str, Any]) -> bytes:
    import json

    return json.dumps(rec, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _json(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def kafka_publisher(bootstrap: str, topic: str, options: dict[str, Any] | None = None) -> Callable[[bytes], None]:
    """Publish checkpoint records to ``trail.checkpoints`` (acks=all), connecting lazily."""
    state: dict[str, Any] = {}

    def publish(value: bytes) -> None:
        from kafka import KafkaProducer

        if "p" not in state:
            state["p"] = KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                acks="all",
                enable_idempotence=True,
                bootstrap_timeout_ms=5000,
                **(options or {}),
            )
        state["p"].send(topic, value=value).get(timeout=10)

    return publish


def make_sealer(
    settings: Any, store: Store, bootstrap: str | None, options: dict[str, Any] | None = None
) -> Sealer | None:
    """The sealer for a sink, or None when sealing is off (``TRAIL_CHECKPOINT_SECONDS=0``)."""
    if settings.checkpoint_seconds <= 0:
        return None
    publish = kafka_publisher(bootstrap, settings.topic("checkpoints"), options) if bootstrap else None
    return Sealer(store, checkpoint_signing_key(settings), AppendOnlyLog(settings.checkpoint_log_path), publish)
