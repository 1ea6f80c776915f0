"""The SDK client a service creates once and calls for every operation on personal data.

What happens where:

* **caller's thread** (``record``): fill defaults, validate (errors name the field),
  replace raw ``subject_ids`` with ``subject_refs``, put the event on a bounded in-memory
  queue. No network, no sequencing, no hashing. When the queue is full the event is
  appended to an on-disk overflow journal instead (local disk, never the network), and
  later events follow it there until the worker has caught up, so order is kept.
* **worker thread**: takes events in order, assigns ``producer.seq``/``producer.prev``,
  computes the ``hash`` over the canonical encoding, and hands batches to the transport.
  When the transport fails, batches go to the spool, and everything after them follows
  until the spool has been replayed, so each producer's events reach the broker in order.

Nothing is dropped silently: the only way an event is not accepted is an exception from
``record`` (:class:`ValidationError`, :class:`SpoolFullError`, :class:`ClientClosedError`).
``record`` applies trail's acceptance rule (:mod:`trail.events.model`), which refuses everything
the sink would; should the worker still meet an event it cannot send, it sets that one aside
(logged as an internal error, counted in ``stats.refused``, listed in ``refused_events``) without
giving it a sequence number, and sends the rest of its batch.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, Unpack

from trail.errors import ClientClosedError, SpoolFullError, TransportUnavailable, ValidationError
from trail.events.model import (
    _HEX64,
    DEFAULT_POLICY,
    MAX_EVENT_BYTES,
    EventFields,
    Policy,
    canonical_bytes,
    new_event_id,
    validate_input,
)
from trail.files import open_private, private_dir
from trail.logging import get_logger
from trail.sdk.progress import Journal, journal_files, progress_record, read_journal
from trail.sdk.pseudonymise import Pseudonymiser
from trail.sdk.spool import Spool, find_orphans
from trail.sdk.transport import Transport

log = get_logger("trail.sdk")
P = ParamSpec("P")
R = TypeVar("R")

_STOP = object()


@dataclass
class ClientStats:
    """Counters a service can export as metrics."""

    recorded: int = 0
    sent: int = 0
    spooled: int = 0
    replayed: int = 0
    overflowed: int = 0
    transport_failures: int = 0
    #: Events ``record`` accepted that the worker could not send (an acceptance-rule gap: logged
    #: as an internal error, each alone; the others of its batch are sent).
    refused: int = 0
    last_error: str | None = None


@dataclass
class Operation:
    """What the context-manager/decorator form lets a handler fill in while it runs."""

    fields: dict[str, Any]
    subject_ids: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    record_count: int | None = None
    outcome: str | None = None


class Client:
    """Records audit events for one emitting instance (one ``producer.id``).

    >>> client = Client(service="crm", transport=..., subject_key=b"...")  # doctest: +SKIP
    >>> client.record(actor={"kind": "staff", "id": "E1001"}, action="view", ...)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        service: str,
        transport: Transport,
        subject_key: bytes,
        spool_dir: Path,
        environment: str = "production",
        host: str | None = None,
        location: Mapping[str, str] | None = None,
        producer_id: str | None = None,
        queue_size: int = 100_000,
        spool_max_bytes: int = 1 << 30,
        batch_max: int = 5_000,
        linger_s: float = 0.005,
        retry_interval_s: float = 1.0,
        defaults: Mapping[str, Any] | None = None,
        policy: Policy = DEFAULT_POLICY,
        heartbeat_s: float = 1.0,
        durable: bool = False,
    ) -> None:
        self.service = service
        self.policy = policy
        self.host = host or socket.gethostname()
        self.source = {"service": service, "host": self.host, "environment": environment}
        self.location = dict(location or {})
        self.defaults = dict(defaults or {})
        self.producer_id = producer_id or f"{service}/{new_event_id()}"
        self._key = self.producer_id.encode("utf-8")
        self._pseudo = Pseudonymiser(subject_key)
        self._transport = transport
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._batch_max = batch_max
        self._linger = linger_s
        self._retry_interval = retry_interval_s
        self.stats = ClientStats()
        #: ``(event_id, reason)`` of the latest events the worker refused (at most 1,000), so a
        #: caller that holds the ids (``trail emit``) can say which ones were not sent.
        self.refused_events: collections.deque[tuple[str, str]] = collections.deque(maxlen=1000)

        # Spool (the worker's) and overflow journal (callers', under _order_lock).
        spool_root = private_dir(spool_dir)
        own = spool_root / _safe_dirname(self.producer_id)
        self._spool = Spool(own, spool_max_bytes)
        self._spool_root = spool_root
        self._orphans = find_orphans(spool_root, own)
        self._overflow_path = own / "overflow.jsonl"
        self._overflow_fh: Any = None
        self._overflowing = False
        self._order_lock = threading.Lock()
        self._max_bytes = spool_max_bytes
        # Progress (trail.progress): own events accepted, sequenced and shipped (sent or spooled);
        # the durable journal of accepted events not shipped yet.
        self._accepted = 0
        self._own_sequenced = 0
        self._own_shipped = 0
        self._heartbeat_s = heartbeat_s
        self._announced: tuple[int, bool] | None = None
        self._journal = Journal(own, self.producer_id) if durable else None

        # Worker state.
        self._seq = 0
        self._prev = ""
        self._broker_down = False
        self._next_retry = 0.0
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._wake = threading.Event()
        self._worker = threading.Thread(target=self._run, name=f"trail-sdk-{service}", daemon=True)
        self._worker.start()
        # Heartbeats from their own thread: a worker stuck on a slow broker must not hide its claims.
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None
        if heartbeat_s > 0 and hasattr(transport, "announce"):
            self._beat = threading.Thread(target=self._heartbeats, name=f"trail-sdk-beat-{service}", daemon=True)
            self._beat.start()

    # ---------------------------------------------------------------- caller side
    def record(self, **fields: Unpack[EventFields]) -> str:
        """Validate, pseudonymise and enqueue one event; returns its ``event_id``.

        Keyword arguments are the fields of DESIGN.md §3 (``actor``, ``action``,
        ``subject_ids``, ``data_categories``, ``purpose``, ``legal_basis``, ``target``, ...).
        ``source`` and ``location`` default to the client's; ``event_id`` and
        ``occurred_at`` are filled when absent.
        """
        if self._closed:
            raise ClientClosedError("this trail client is closed; create a new one")
        raw: dict[str, Any] = {**self.defaults, **fields} if self.defaults else dict(fields)
        if "source" not in raw:
            raw["source"] = self.source
        if "location" not in raw and self.location:
            raw["location"] = self.location
        ev = validate_input(raw, self.policy, producer_id=self.producer_id)
        ids = ev.pop("subject_ids")
        ev["subject_refs"] = self._pseudo.refs(ids) if ids else []
        self._enqueue(ev)
        self.stats.recorded += 1
        return ev["event_id"]  # type: ignore[no-any-return]

    def record_pseudonymised(self, *, subject_refs: list[str], **fields: Any) -> str:
        """Record an event about subjects known only by their refs (trail's own components:
        notices, reviews). The refs must be the 64-hex HMACs this client's key produces."""

        for i, ref in enumerate(subject_refs):
            if not isinstance(ref, str) or _HEX64.match(ref) is None:
                raise ValidationError(f"subject_refs[{i}]", "must be 64 lowercase hex characters (HMAC-SHA256)")
        if self._closed:
            raise ClientClosedError("this trail client is closed; create a new one")
        if "source" not in fields:
            fields["source"] = self.source
        if "location" not in fields and self.location:
            fields["location"] = self.location
        ev = validate_input(fields, self.policy, producer_id=self.producer_id, extra_refs=len(subject_refs))
        ev.pop("subject_ids", None)
        ev["subject_refs"] = list(subject_refs)
        self._enqueue(ev)
        self.stats.recorded += 1
        return ev["event_id"]  # type: ignore[no-any-return]

    def record_event(self, event: Mapping[str, Any]) -> str:
        """Record an event given as a mapping (as read from a JSON line); validated as ``record`` does."""
        return self.record(**dict(event))

    def _enqueue(self, ev: dict[str, Any]) -> None:
        with self._order_lock:
            if not self._overflowing:
                try:
                    self._queue.put_nowait(ev)
                    self._accept(ev)
                    self._idle.clear()
                    return
                except queue.Full:
                    self._overflowing = True
                    log.warning("sdk.queue_full", producer=self.producer_id, queue_size=self._queue.maxsize)
            line = json.dumps(ev, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
            if self._spool.size_bytes + self._overflow_bytes() + len(line) > self._max_bytes:
                raise SpoolFullError(
                    f"the SDK spool in {self._spool.dir} is full; the broker has been unreachable "
                    "for long: restore it or raise TRAIL_SPOOL_MAX_BYTES"
                )
            if self._overflow_fh is None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                self._overflow_fh = os.fdopen(open_private(self._overflow_path, flags), "ab")
            self._overflow_fh.write(line)
            self._overflow_fh.flush()
            self._accept(ev, line)
            self.stats.overflowed += 1
            self._idle.clear()
        self._wake.set()

    def _accept(self, ev: dict[str, Any], line: bytes | None = None) -> None:
        """Count an accepted event (under _order_lock) and, in durable mode, journal it."""
        self._accepted += 1
        if self._journal is not None:
            if line is None:
                line = json.dumps(ev, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
            self._journal.append(line, self._accepted)

    def _shipped_own(self, n: int) -> None:
        """``n`` own events are delivered or spooled: their journal entries may go."""
        self._own_shipped += n
        if self._journal is not None:
            with self._order_lock:
                self._journal.trim(self._own_shipped, self._accepted)

    @property
    def claimed_seq(self) -> int:
        """The sequence number the last accepted event has, or will get once the worker takes it."""
        return self._seq + (self._accepted - self._own_sequenced)

    def _announce(self, *, closed: bool = False, producer: str | None = None, seq: int | None = None) -> bool:
        """Tell ``trail.producers`` how far this producer (or a crashed one it replayed) has got."""
        announce = getattr(self._transport, "announce", None)
        if announce is None:
            return False
        pid = producer or self.producer_id
        record = progress_record(
            pid,
            service=self.service,
            host=self.host,
            seq=self.claimed_seq if seq is None else seq,
            recorded=self._accepted if producer is None else 0,
            closed=closed,
            replayed_by=self.producer_id if producer is not None else None,
        )
        try:
            announce(pid.encode("utf-8"), record)
        except TransportUnavailable:
            return False
        return True

    def _heartbeats(self) -> None:
        while not self._beat_stop.wait(self._heartbeat_s):
            try:
                self._maybe_announce()
            except Exception:  # heartbeats must never take the client down
                log.exception("sdk.heartbeat_failed", producer=self.producer_id, internal=True)

    def _maybe_announce(self) -> None:
        if self._broker_down:
            return
        state = (self.claimed_seq, False)
        if state[0] and state != self._announced and self._announce():  # else: again at the next beat
            self._announced = state

    def _overflow_bytes(self) -> int:
        try:
            return self._overflow_path.stat().st_size
        except FileNotFoundError:
            return 0

    @contextmanager
    def operation(self, **fields: Any) -> Iterator[Operation]:
        """Record one event around a block; the outcome follows how the block ends.

        ``with client.operation(action="view", ...) as op: op.subject_ids.append(sid)``.
        A ``PermissionError`` records ``outcome="denied"``, any other exception ``"error"``;
        the exception still propagates. Validation of the static fields happens on entry.
        """
        op = Operation(fields=dict(fields))
        probe = {**self.defaults, **op.fields}
        probe.setdefault("source", self.source)
        validate_input(probe, self.policy)  # fail before the handler runs, not after
        outcome = "success"
        try:
            yield op
        except PermissionError:
            outcome = "denied"
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            final = dict(op.fields)
            if op.subject_ids:
                final["subject_ids"] = list(final.get("subject_ids", [])) + op.subject_ids
            if op.attributes:
                final["attributes"] = {**final.get("attributes", {}), **op.attributes}
            if op.record_count is not None:
                final["record_count"] = op.record_count
            final["outcome"] = op.outcome or outcome
            self.record(**final)

    def audited(self, **fields: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator form of :meth:`operation`; ``subject_ids`` may be a callable of the
        handler's arguments returning the ids."""
        ids_fn = fields.pop("subject_ids", None)

        def wrap(fn: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(fn)
            def inner(*args: P.args, **kwargs: P.kwargs) -> R:
                extra = dict(fields)
                if callable(ids_fn):
                    extra["subject_ids"] = list(ids_fn(*args, **kwargs))
                elif ids_fn is not None:
                    extra["subject_ids"] = list(ids_fn)
                with self.operation(**extra):
                    return fn(*args, **kwargs)

            return inner

        return wrap

    # ---------------------------------------------------------------- lifecycle
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every recorded event was acknowledged by the transport.

        Returns False on timeout (events are then still queued or spooled, not lost).
        """
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if self._idle.wait(timeout=min(0.05, max(0.0, deadline - time.monotonic()))):
                with self._order_lock:
                    if self._queue.empty() and not self._overflowing and self._spool.is_empty() and not self._orphans:
                        return True
            if self._broker_down:
                self._next_retry = 0.0  # a flush asks for a retry now
            self._wake.set()
        return False

    @property
    def spool_bytes(self) -> int:
        """Bytes in this client's spool waiting for the broker (a metric worth exporting)."""
        return self._spool.size_bytes

    def close(self, timeout: float = 10.0) -> bool:
        """Flush (up to ``timeout``), stop the worker and close the transport.

        Events not acknowledged by then stay in the spool on disk and are replayed by the
        next client that starts on the same spool directory. Returns True when nothing
        was left behind.
        """
        if self._closed:
            return True
        delivered = self.flush(timeout)
        self._closed = True
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join(timeout=max(1.0, timeout))
        self._queue.put(_STOP)
        self._wake.set()
        self._worker.join(timeout=max(1.0, timeout))
        if self._worker.is_alive():
            log.error("sdk.worker_stuck", producer=self.producer_id)
        if self._heartbeat_s > 0 and self.claimed_seq and not self._broker_down:
            self._announce(closed=True)  # the close marker: how far this producer got, final
        if self._journal is not None:
            self._journal.close()
        try:
            self._transport.close()
        except Exception as exc:  # noqa: BLE001  # a failed close must not hide what is left
            log.warning("sdk.transport_close_failed", error=type(exc).__name__)
        left = self._spool.size_bytes
        self._spool.close()
        if left == 0 and delivered:
            _remove_dir(self._spool.dir)
        else:
            log.warning("sdk.closed_with_spooled_events", producer=self.producer_id, spool_bytes=left)
        return delivered and left == 0

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- worker side
    def _run(self) -> None:
        stop = False
        while True:
            batch: list[dict[str, Any]] = []
            try:
                item = self._queue.get(timeout=0.05 if not self._overflowing else 0.0)
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)
            except queue.Empty:
                pass
            if batch:
                deadline = time.monotonic() + self._linger
                while len(batch) < self._batch_max:
                    try:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
            try:
                if batch:
                    self._ship(self._encode(batch))
                    self._shipped_own(len(batch))
                elif self._overflowing:
                    self._drain_overflow()
                self._maybe_replay()
            except Exception as exc:  # the worker must survive anything and say so
                self.stats.last_error = type(exc).__name__
                log.exception("sdk.worker_error", producer=self.producer_id, internal=True)
                time.sleep(0.1)
            with self._order_lock:
                drained = self._spool.is_empty() and not self._orphans
                if self._queue.empty() and not self._overflowing and (drained or stop):
                    self._idle.set()
            if stop:
                return

    def _encode(self, batch: list[dict[str, Any]], *, own: bool = True) -> list[bytes]:
        """Sequence, hash and encode; an event that cannot be sent is set aside alone and takes
        no sequence number, so it neither drops its batch nor leaves a gap in the chain. ``own``:
        events this client accepted (counted for its progress claims), not a crashed client's."""
        out: list[bytes] = []
        pid = self.producer_id
        if own:
            self._own_sequenced += len(batch)
        for ev in batch:
            seq = self._seq + 1
            ev["producer"] = {"id": pid, "seq": seq, "prev": self._prev}
            try:
                body = canonical_bytes(ev)
            except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
                self._refuse(ev, f"cannot be encoded ({type(exc).__name__})")
                continue
            digest = sha256(body).hexdigest()
            value = body[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}'
            if len(value) > MAX_EVENT_BYTES:
                self._refuse(ev, f"is {len(value)} bytes on the wire, over the {MAX_EVENT_BYTES} byte limit")
                continue
            self._seq = seq
            self._prev = digest
            out.append(value)
        return out

    def _refuse(self, ev: dict[str, Any], reason: str) -> None:
        ev.pop("producer", None)
        self.stats.refused += 1
        self.stats.last_error = f"event refused by the worker: {reason}"
        self.refused_events.append((str(ev.get("event_id")), reason))
        log.error(
            "sdk.event_refused", producer=self.producer_id, event_id=ev.get("event_id"), reason=reason, internal=True
        )

    def _ship(self, values: list[bytes]) -> None:
        if not values:
            return
        if not self._broker_down and self._spool.is_empty():
            try:
                self._transport.send(self._key, values)
                self.stats.sent += len(values)
                return
            except TransportUnavailable as exc:
                self._mark_down(str(exc))
            except Exception as exc:  # noqa: BLE001  # a failing transport must not lose the batch: spool it
                log.error("sdk.transport_failed", producer=self.producer_id, error=type(exc).__name__, internal=True)
                self._mark_down(f"transport failed: {type(exc).__name__}")
        self._spool.append(self._key, values)
        self.stats.spooled += len(values)

    def _mark_down(self, reason: str) -> None:
        self.stats.transport_failures += 1
        self.stats.last_error = reason
        if not self._broker_down:
            log.warning("sdk.broker_unavailable", producer=self.producer_id, reason=reason)
        self._broker_down = True
        self._next_retry = time.monotonic() + self._retry_interval

    def _maybe_replay(self) -> None:
        if self._spool.is_empty() and not self._orphans:
            self._broker_down = False
            return
        if time.monotonic() < self._next_retry:
            return
        replayed = 0
        try:
            while True:
                seg = self._spool.oldest()
                if seg is None:
                    break
                path, records = seg
                if records:
                    self._transport.send(self._key, [v for _, v in records])
                self._spool.ack(path)
                replayed += len(records)
            while self._orphans:
                orphan = self._orphans[0]
                try:
                    other = Spool(orphan, self._max_bytes)
                except BlockingIOError:
                    self._orphans.pop(0)  # another client adopted it
                    continue
                try:
                    self._replay_orphan(other)
                finally:
                    other.close()
                self._orphans.pop(0)
                _remove_dir(orphan)
        except TransportUnavailable as exc:
            self._mark_down(str(exc))
            if replayed:
                self.stats.replayed += replayed
            return
        if replayed:
            self.stats.replayed += replayed
            log.info("sdk.spool_replayed", producer=self.producer_id, events=replayed)
        self._broker_down = False

    def _replay_orphan(self, other: Spool) -> None:
        # An orphan's own overflow journal was never sequenced: those events are lost with
        # the crashed process's producer chain position, so they are sequenced under ours.
        while True:
            seg = other.oldest()
            if seg is None:
                break
            path, records = seg
            by_key: dict[bytes, list[bytes]] = {}
            for k, v in records:
                by_key.setdefault(k, []).append(v)
            for k, vs in by_key.items():
                self._transport.send(k, vs)
            other.ack(path)
            self.stats.replayed += len(records)
        for name in ("overflow.draining", "overflow.jsonl"):  # a crash may leave either, oldest first
            overflow = other.dir / name
            if overflow.exists():
                events = [json.loads(line) for line in overflow.read_bytes().splitlines() if line.endswith(b"}")]
                if events:
                    self._ship(self._encode(events, own=False))
                overflow.unlink()
        if journal_files(other.dir):
            # A durable client's journal: what it accepted, sent or not. Recorded again under our
            # producer (same event ids, so the store shows each once); its producer is announced
            # as replayed, so `trail gaps` does not report its tail as lost.
            crashed, events = read_journal(other.dir)
            for start in range(0, len(events), self._batch_max):
                self._ship(self._encode(events[start : start + self._batch_max], own=False))
            self.stats.replayed += len(events)
            if crashed:
                self._announce(closed=True, producer=crashed, seq=0)
            for path in journal_files(other.dir):
                path.unlink()

    def _drain_overflow(self) -> None:
        with self._order_lock:
            if self._overflow_fh is not None:
                self._overflow_fh.close()
                self._overflow_fh = None
            path = self._overflow_path
            if not path.exists():
                self._overflowing = False
                return
            work = path.with_suffix(".draining")
            os.replace(path, work)
        lines = work.read_bytes().splitlines()
        for start in range(0, len(lines), self._batch_max):
            chunk = [json.loads(line) for line in lines[start : start + self._batch_max] if line.strip()]
            self._ship(self._encode(chunk))
            self._shipped_own(len(chunk))
        work.unlink()
        with self._order_lock:
            if not self._overflow_path.exists() and self._queue.empty():
                self._overflowing = False


def _safe_dirname(producer_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in producer_id)


def _remove_dir(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
