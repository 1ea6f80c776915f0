"""The SDK: pseudonymisation, and the Client's sequencing, hashing, spooling, overflow and helpers.

The transport is a CallbackTransport over an in-memory recorder: this is the client's own logic;
the real broker is exercised by the integration tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trail.errors import ClientClosedError, ConfigError, SpoolFullError, TransportUnavailable, ValidationError
from trail.events.model import event_hash, validate_wire
from trail.sdk.client import Client
from trail.sdk.pseudonymise import Pseudonymiser
from trail.sdk.spool import read_segment
from trail.sdk.transport import CallbackTransport

KEY = b"0123456789abcdef" * 4  # 64 characters, a fixed fake key
OTHER_KEY = b"fedcba9876543210" * 4
FIELDS: dict[str, Any] = {
    "actor": {"kind": "staff", "id": "E-TEST-1"},
    "action": "view",
    "data_categories": ["name", "phone"],
    "purpose": "unit test",
    "legal_basis": "contract",
    "target": {"system": "crm", "dataset": "customers"},
}
SUBJECTS = ["SUBJ-TEST-0001", "SUBJ-TEST-0002", "SUBJ-TEST-0003"]


class Recorder:
    """The function behind a CallbackTransport: records batches; can be down or held at a gate."""

    def __init__(self) -> None:
        self.batches: list[tuple[bytes, list[bytes]]] = []
        self.down = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, key: bytes, values: list[bytes]) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.down:
            raise TransportUnavailable("test transport is down")
        with self._lock:
            self.batches.append((key, list(values)))

    @property
    def values(self) -> list[bytes]:
        with self._lock:
            return [v for _, vs in self.batches for v in vs]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.values]


MakeClient = Callable[..., Client]


@pytest.fixture()
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """Clients on one spool root under tmp_path, closed (briefly) after the test."""
    made: list[tuple[Client, Recorder]] = []

    def make(recorder: Recorder, **options: Any) -> Client:
        options.setdefault("retry_interval_s", 0.02)
        options.setdefault("subject_key", KEY)
        client = Client(
            service="test-svc",
            transport=CallbackTransport(recorder),
            spool_dir=tmp_path / "spool",
            host="test-host",
            environment="test",
            **options,
        )
        made.append((client, recorder))
        return client

    yield make
    for client, recorder in made:
        if recorder.gate is not None:
            recorder.gate.set()
        client.close(timeout=0.5)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def assert_chain(events: list[dict[str, Any]], producer_id: str) -> None:
    """seq 1..N without gaps, prev = previous hash, hash = event_hash of the rest."""
    prev = ""
    for n, ev in enumerate(events, start=1):
        body = {k: v for k, v in ev.items() if k != "hash"}
        assert ev["producer"] == {"id": producer_id, "seq": n, "prev": prev}
        assert ev["hash"] == event_hash(body)
        prev = ev["hash"]


# ---------------------------------------------------------------- pseudonymisation


def test_same_id_and_key_give_same_ref() -> None:
    """The same subject id under the same key always maps to the same reference."""
    assert Pseudonymiser(KEY).ref("SUBJ-TEST-0001") == Pseudonymiser(KEY).ref("SUBJ-TEST-0001")


def test_different_key_gives_different_ref() -> None:
    """The same subject id under another key maps to another reference."""
    assert Pseudonymiser(KEY).ref("SUBJ-TEST-0001") != Pseudonymiser(OTHER_KEY).ref("SUBJ-TEST-0001")


@pytest.mark.parametrize("size", [32, 63, 64, 65, 200])
def test_ref_is_hmac_sha256_for_keys_of_any_length(size: int) -> None:
    """Keys longer than SHA-256's 64-byte block are hashed first, as RFC 2104 says; ids of any
    script and length give what the standard library's HMAC gives."""
    key = bytes((i * 37 + size) % 256 for i in range(size))
    p = Pseudonymiser(key)
    for sid in ("SUBJ-TEST-0001", "", "客户-0001", "x" * 1000, "\U0001f600"):
        assert p.ref(sid) == hmac.new(key, sid.encode("utf-8"), hashlib.sha256).hexdigest()


def test_ref_is_keyed_hmac_sha256_hex() -> None:
    """A reference is the 64 lowercase hex digits of HMAC-SHA256(key, id)."""
    ref = Pseudonymiser(KEY).ref("SUBJ-TEST-0001")
    assert ref == hmac.new(KEY, b"SUBJ-TEST-0001", hashlib.sha256).hexdigest()
    assert len(ref) == 64
    assert set(ref) <= set("0123456789abcdef")


def test_refs_remove_duplicates_keeping_first_seen_order() -> None:
    """refs() drops repeated ids and keeps the order in which ids were first seen."""
    p = Pseudonymiser(KEY)
    ids = ["SUBJ-TEST-0003", "SUBJ-TEST-0001", "SUBJ-TEST-0003", "SUBJ-TEST-0002", "SUBJ-TEST-0001"]
    assert p.refs(ids) == [p.ref("SUBJ-TEST-0003"), p.ref("SUBJ-TEST-0001"), p.ref("SUBJ-TEST-0002")]


def test_short_key_is_refused() -> None:
    """A key under 32 bytes is refused with a ConfigError."""
    with pytest.raises(ConfigError, match="32 bytes"):
        Pseudonymiser(b"k" * 31)


# ---------------------------------------------------------------- record and the wire


def test_record_returns_the_event_id(make_client: MakeClient) -> None:
    """record() returns the event_id the transported event carries."""
    rec = Recorder()
    client = make_client(rec)
    ids = [client.record(**FIELDS) for _ in range(3)]
    assert client.flush(5)
    assert [e["event_id"] for e in rec.events] == ids


def test_given_event_id_is_returned(make_client: MakeClient) -> None:
    """A caller-supplied event_id is kept (lowercased) and returned."""
    client = make_client(Recorder())
    assert client.record(**FIELDS, event_id="3F2B8C1E-9D4A-4E6B-8C1D-2E3F4A5B6C7D") == (
        "3f2b8c1e-9d4a-4e6b-8c1d-2e3f4a5b6c7d"
    )


def test_events_form_a_gapless_hash_chain(make_client: MakeClient) -> None:
    """Events carry producer.seq 1..N without gaps, prev = previous hash, and a verifiable hash."""
    rec = Recorder()
    client = make_client(rec, linger_s=0.0, batch_max=4)
    for i in range(25):
        client.record(**FIELDS, attributes={"i": str(i)})
    assert client.flush(5)
    events = rec.events
    assert [e["attributes"]["i"] for e in events] == [str(i) for i in range(25)]
    assert_chain(events, client.producer_id)
    for ev in events:
        validate_wire(ev)


def test_events_are_keyed_by_producer(make_client: MakeClient) -> None:
    """Every batch is sent under the producer id, so one producer's events stay in one partition."""
    rec = Recorder()
    client = make_client(rec, producer_id="test-svc/instance-1")
    client.record(**FIELDS)
    client.record(**FIELDS)
    assert client.flush(5)
    assert {key for key, _ in rec.batches} == {b"test-svc/instance-1"}


def test_raw_subject_ids_never_leave_the_process(make_client: MakeClient) -> None:
    """Transported bytes carry subject_refs only, never the raw subject ids."""
    rec = Recorder()
    client = make_client(rec)
    client.record(**FIELDS, subject_ids=SUBJECTS)
    with client.operation(**FIELDS) as op:
        op.subject_ids.append("SUBJ-TEST-0004")
    assert client.flush(5)
    joined = b"\n".join(rec.values)
    for sid in [*SUBJECTS, "SUBJ-TEST-0004"]:
        assert sid.encode() not in joined
    assert b"subject_ids" not in joined
    first, second = rec.events
    assert first["subject_refs"] == Pseudonymiser(KEY).refs(SUBJECTS)
    assert first["record_count"] == 3
    assert second["subject_refs"] == [Pseudonymiser(KEY).ref("SUBJ-TEST-0004")]


def test_source_location_and_defaults_are_filled(make_client: MakeClient) -> None:
    """The client fills source, location and its default fields; explicit fields win."""
    rec = Recorder()
    client = make_client(rec, location={"site": "test-site"}, defaults={"legal_basis": "hr", "purpose": "default"})
    fields = {k: v for k, v in FIELDS.items() if k not in ("legal_basis", "purpose")}
    client.record(**fields, purpose="explicit")
    assert client.flush(5)
    [ev] = rec.events
    assert ev["source"] == {"service": "test-svc", "host": "test-host", "environment": "test"}
    assert ev["location"] == {"site": "test-site"}
    assert ev["legal_basis"] == "hr"
    assert ev["purpose"] == "explicit"


def test_invalid_event_is_refused_and_leaves_no_gap(make_client: MakeClient) -> None:
    """An invalid event raises ValidationError in the caller and does not consume a sequence number."""
    rec = Recorder()
    client = make_client(rec)
    with pytest.raises(ValidationError) as info:
        client.record(**{**FIELDS, "action": "peek"})
    assert info.value.field == "action"
    client.record(**FIELDS)
    assert client.flush(5)
    assert client.stats.recorded == 1
    assert [e["producer"]["seq"] for e in rec.events] == [1]


# ---------------------------------------------------------------- broker down: spool and replay


def test_unavailable_transport_spools_then_replays_in_order(make_client: MakeClient) -> None:
    """While the transport is down events go to the spool; once it is back they arrive in order."""
    rec = Recorder()
    rec.down = True
    client = make_client(rec)
    ids = [client.record(**FIELDS, attributes={"i": str(i)}) for i in range(5)]
    wait_for(lambda: client.stats.spooled == 5, what="5 events spooled")
    assert list(client._spool.dir.glob("seg-*.log"))
    assert not client.flush(0.2)
    rec.down = False
    ids += [client.record(**FIELDS, attributes={"i": str(i)}) for i in range(5, 8)]
    assert client.flush(5)
    events = rec.events
    assert [e["event_id"] for e in events] == ids
    assert_chain(events, client.producer_id)
    assert client.stats.replayed >= 5
    assert client._spool.is_empty()


def test_close_with_failing_transport_keeps_the_spool(make_client: MakeClient, tmp_path: Path) -> None:
    """close() with the transport down returns False and leaves the events in the spool on disk."""
    rec = Recorder()
    rec.down = True
    client = make_client(rec)
    ids = [client.record(**FIELDS) for _ in range(3)]
    assert client.close(timeout=0.3) is False
    [seg] = (tmp_path / "spool").glob("*/seg-*.log")
    assert [json.loads(v)["event_id"] for _, v in read_segment(seg)] == ids


def test_new_client_replays_orphaned_spool(make_client: MakeClient, tmp_path: Path) -> None:
    """A new client on the same spool root replays a closed client's spooled events, in order."""
    down = Recorder()
    down.down = True
    old = make_client(down)
    ids = [old.record(**FIELDS) for _ in range(3)]
    assert old.close(timeout=0.3) is False
    orphan_dir = old._spool.dir

    rec = Recorder()
    new = make_client(rec)
    wait_for(lambda: len(rec.values) == 3, what="orphaned events replayed")
    assert {key for key, _ in rec.batches} == {old.producer_id.encode()}
    events = rec.events
    assert [e["event_id"] for e in events] == ids
    assert_chain(events, old.producer_id)
    wait_for(lambda: not orphan_dir.exists(), what="orphan directory removed")

    new.record(**FIELDS)
    assert new.flush(5)
    assert rec.events[-1]["producer"] == {"id": new.producer_id, "seq": 1, "prev": ""}


def test_flush_waits_for_orphaned_events(make_client: MakeClient) -> None:
    """flush() on a client that adopted an orphaned spool returns True only once it was replayed."""
    down = Recorder()
    down.down = True
    old = make_client(down)
    for _ in range(3):
        old.record(**FIELDS)
    assert old.close(timeout=0.3) is False

    rec = Recorder()
    rec.down = True
    threading.Timer(0.3, lambda: setattr(rec, "down", False)).start()  # the broker returns shortly
    new = make_client(rec)
    assert new.flush(5)
    assert len(rec.values) == 3


# ---------------------------------------------------------------- full queue: the overflow journal


def test_full_queue_spills_to_overflow_and_keeps_order(make_client: MakeClient) -> None:
    """With the queue full, events go to the overflow journal and still arrive in recorded order."""
    rec = Recorder()
    rec.gate = threading.Event()
    client = make_client(rec, queue_size=10)
    ids = [client.record(**FIELDS, attributes={"i": "0"})]
    assert rec.entered.wait(5)  # the worker is now held inside send()
    ids += [client.record(**FIELDS, attributes={"i": str(i)}) for i in range(1, 41)]
    assert client.stats.overflowed > 0
    assert client._overflow_path.exists()
    rec.gate.set()
    assert client.flush(5)
    events = rec.events
    assert [e["event_id"] for e in events] == ids
    assert [e["attributes"]["i"] for e in events] == [str(i) for i in range(41)]
    assert_chain(events, client.producer_id)


def test_full_spool_refuses_instead_of_dropping(make_client: MakeClient) -> None:
    """When queue and spool bound are exhausted record() raises SpoolFullError; every accepted event arrives."""
    rec = Recorder()
    rec.gate = threading.Event()
    client = make_client(rec, queue_size=2, spool_max_bytes=4000)
    accepted = [client.record(**FIELDS)]
    assert rec.entered.wait(5)
    with pytest.raises(SpoolFullError):
        for _ in range(100):
            accepted.append(client.record(**FIELDS))
    rec.gate.set()
    assert client.flush(5)
    assert [e["event_id"] for e in rec.events] == accepted


# ---------------------------------------------------------------- lifecycle


def test_record_after_close_raises(make_client: MakeClient) -> None:
    """record() on a closed client raises ClientClosedError."""
    client = make_client(Recorder())
    assert client.close(timeout=1)
    with pytest.raises(ClientClosedError):
        client.record(**FIELDS)


def test_clean_close_removes_the_spool_directory(make_client: MakeClient) -> None:
    """close() after everything was delivered returns True and removes its spool directory."""
    rec = Recorder()
    client = make_client(rec)
    client.record(**FIELDS)
    assert client.close(timeout=2) is True
    assert len(rec.values) == 1
    assert not client._spool.dir.exists()
    assert client.close() is True  # closing twice is harmless


# ---------------------------------------------------------------- operation() and audited()


def test_operation_records_success_with_what_the_block_added(make_client: MakeClient) -> None:
    """operation() records 'success' with the subjects, attributes and count the block filled in."""
    rec = Recorder()
    client = make_client(rec)
    with client.operation(**FIELDS, attributes={"ticket": "T-TEST-1"}) as op:
        op.subject_ids.extend(SUBJECTS[:2])
        op.attributes["request"] = "R-TEST-1"
        op.record_count = 7
    assert client.flush(5)
    [ev] = rec.events
    assert ev["outcome"] == "success"
    assert ev["subject_refs"] == Pseudonymiser(KEY).refs(SUBJECTS[:2])
    assert ev["attributes"] == {"ticket": "T-TEST-1", "request": "R-TEST-1"}
    assert ev["record_count"] == 7


@pytest.mark.parametrize(
    ("exc_type", "outcome"),
    [
        pytest.param(RuntimeError, "error", id="runtime-error"),
        pytest.param(KeyError, "error", id="key-error"),
        pytest.param(PermissionError, "denied", id="permission-error"),
    ],
)
def test_operation_outcome_follows_the_exception(
    make_client: MakeClient, exc_type: type[BaseException], outcome: str
) -> None:
    """A block that raises records outcome 'error' ('denied' for PermissionError) and re-raises."""
    rec = Recorder()
    client = make_client(rec)
    with pytest.raises(exc_type), client.operation(**FIELDS):
        raise exc_type("test")
    assert client.flush(5)
    assert [e["outcome"] for e in rec.events] == [outcome]


def test_operation_explicit_outcome_wins(make_client: MakeClient) -> None:
    """An outcome the block sets on the operation is recorded as is."""
    rec = Recorder()
    client = make_client(rec)
    with client.operation(**FIELDS) as op:
        op.outcome = "denied"
    assert client.flush(5)
    assert rec.events[0]["outcome"] == "denied"


def test_operation_refuses_invalid_fields_before_the_block(make_client: MakeClient) -> None:
    """Invalid static fields raise ValidationError on entry: the block does not run, nothing is recorded."""
    rec = Recorder()
    client = make_client(rec)
    ran = False
    with pytest.raises(ValidationError) as info, client.operation(**{**FIELDS, "legal_basis": "whim"}):
        ran = True
    assert info.value.field == "legal_basis"
    assert not ran
    assert client.flush(5)
    assert rec.values == []
    assert client.stats.recorded == 0


def test_audited_computes_subjects_from_arguments(make_client: MakeClient) -> None:
    """audited() records an event whose subject ids come from the handler's arguments."""
    rec = Recorder()
    client = make_client(rec)

    @client.audited(**FIELDS, subject_ids=lambda customer_id, **_: [customer_id])
    def show_customer(customer_id: str, *, verbose: bool = False) -> str:
        return f"shown {customer_id}"

    assert show_customer.__name__ == "show_customer"
    assert show_customer("SUBJ-TEST-0001", verbose=True) == "shown SUBJ-TEST-0001"
    assert show_customer("SUBJ-TEST-0002") == "shown SUBJ-TEST-0002"
    assert client.flush(5)
    p = Pseudonymiser(KEY)
    assert [e["subject_refs"] for e in rec.events] == [[p.ref("SUBJ-TEST-0001")], [p.ref("SUBJ-TEST-0002")]]
    assert [e["outcome"] for e in rec.events] == ["success", "success"]


def test_audited_records_error_and_reraises(make_client: MakeClient) -> None:
    """A decorated handler that raises records outcome 'error' and the exception reaches the caller."""
    rec = Recorder()
    client = make_client(rec)

    @client.audited(**FIELDS, subject_ids=["SUBJ-TEST-0001"])
    def broken() -> None:
        raise LookupError("test")

    with pytest.raises(LookupError):
        broken()
    assert client.flush(5)
    [ev] = rec.events
    assert ev["outcome"] == "error"
    assert ev["subject_refs"] == [Pseudonymiser(KEY).ref("SUBJ-TEST-0001")]
