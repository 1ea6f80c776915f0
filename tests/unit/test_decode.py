"""Decoding records from trail.events: every bad record is Rejected with a reason, good ones decode."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import trail.events.model as model
from trail.events.model import MAX_EVENT_BYTES, event_hash, validate_wire
from trail.events.wire import Rejected, decode
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport
from trail.storage.store import EVENT_COLUMNS, events_to_columns, row_to_event

KEY = b"0123456789abcdef" * 4  # 64 characters, a fixed fake key
EXAMPLES = sorted((Path(model.__file__).parent / "schema" / "examples").glob("*.json"))
FIELDS: dict[str, Any] = {
    "actor": {"kind": "staff", "id": "E-TEST-1"},
    "action": "view",
    "subject_ids": ["SUBJ-TEST-0001"],
    "data_categories": ["name"],
    "purpose": "unit test",
    "legal_basis": "contract",
    "target": {"system": "crm"},
}


def sdk_records(tmp_path: Path, events: list[dict[str, Any]]) -> list[bytes]:
    """The bytes the SDK would put on trail.events for ``events``, in order."""
    sent: list[bytes] = []
    client = Client(
        service="test-svc",
        transport=CallbackTransport(lambda _key, values: sent.extend(values)),
        subject_key=KEY,
        spool_dir=tmp_path / "spool",
        host="test-host",
        environment="test",
    )
    try:
        for ev in events:
            client.record_event(ev)
        assert client.flush(5)
    finally:
        client.close(1)
    return sent


@pytest.fixture()
def good_record(tmp_path: Path) -> bytes:
    [record] = sdk_records(tmp_path, [FIELDS])
    return record


def reencode(record: bytes, **changes: Any) -> bytes:
    ev = json.loads(record)
    ev.update(changes)
    return json.dumps(ev).encode()


def test_sdk_record_decodes(tmp_path: Path) -> None:
    """A record produced by the SDK decodes to the validated wire event."""
    records = sdk_records(tmp_path, [FIELDS, {**FIELDS, "action": "export", "destination": {"kind": "file"}}])
    decoded = [decode(r) for r in records]
    assert not any(isinstance(d, Rejected) for d in decoded)
    assert [d["producer"]["seq"] for d in decoded] == [1, 2]  # type: ignore[index]
    assert decoded[0] == validate_wire(json.loads(records[0]))
    assert decoded[1]["producer"]["prev"] == decoded[0]["hash"]  # type: ignore[index]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_sdk_record_of_every_example_decodes(tmp_path: Path, path: Path) -> None:
    """Each shipped example, sent through the SDK, decodes without rejection."""
    [record] = sdk_records(tmp_path, [json.loads(path.read_text(encoding="utf-8"))])
    assert not isinstance(decode(record), Rejected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(None, "tombstone", id="tombstone"),
        pytest.param(b"", "not valid UTF-8 JSON", id="empty-bytes"),
        pytest.param(b"not json at all", "not valid UTF-8 JSON", id="not-json"),
        pytest.param(b'{"schema": "trail.audit/v1",', "not valid UTF-8 JSON", id="truncated-json"),
        pytest.param(b"\xff\xfe\x00", "not valid UTF-8 JSON", id="not-utf8"),
        pytest.param(b"[1, 2]", "must be a JSON object, got list", id="json-list"),
        pytest.param(b'"an event"', "must be a JSON object, got str", id="json-string"),
        pytest.param(b"42", "must be a JSON object, got int", id="json-number"),
        pytest.param(b"null", "must be a JSON object, got NoneType", id="json-null"),
        pytest.param(b" " * (MAX_EVENT_BYTES + 1), f"over the {MAX_EVENT_BYTES} byte limit", id="oversize"),
        pytest.param(b"[" * 30000 + b"]" * 30000, "nested too deeply", id="deep-nesting"),
        pytest.param(b'{"schema": "trail.audit/v2"}', "unknown schema", id="unknown-schema"),
        pytest.param(b'{"schema": "trail.audit/v1"}', "actor", id="invalid-event"),
    ],
)
def test_bad_record_is_rejected_with_reason(value: bytes | None, reason: str) -> None:
    """A record that is not a valid event is Rejected with a reason saying why."""
    result = decode(value)
    assert isinstance(result, Rejected)
    assert reason in result.reason


def test_record_at_the_size_limit_is_not_rejected_for_size() -> None:
    """A record of exactly 64 KiB is judged on its content, not refused for its size."""
    result = decode(b" " * MAX_EVENT_BYTES)
    assert isinstance(result, Rejected)
    assert "byte limit" not in result.reason


def test_tampered_record_is_rejected_on_hash(good_record: bytes) -> None:
    """A record changed after the SDK hashed it is Rejected naming the hash."""
    result = decode(reencode(good_record, purpose="changed in transit"))
    assert isinstance(result, Rejected)
    assert result.reason.startswith("hash:")


def test_record_with_raw_subject_ids_is_rejected_without_echo(good_record: bytes) -> None:
    """A record carrying raw subject ids is Rejected, and the reason does not repeat them."""
    result = decode(reencode(good_record, subject_ids=["SUBJ-TEST-0009"]))
    assert isinstance(result, Rejected)
    assert result.reason.startswith("subject_ids:")
    assert "SUBJ-TEST-0009" not in result.reason


def test_record_with_unknown_field_is_rejected(good_record: bytes) -> None:
    """A record with a field outside the v1 contract is Rejected naming the field."""
    result = decode(reencode(good_record, customer_name="x"))
    assert isinstance(result, Rejected)
    assert result.reason.startswith("customer_name:")


# ---------------------------------------------------------------- decoded event -> store row -> event


def _rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cols = events_to_columns(events)
    assert len(cols) == len(EVENT_COLUMNS)
    return [dict(zip(EVENT_COLUMNS, values, strict=True)) for values in zip(*cols, strict=True)]


def test_store_row_round_trip_is_exact(tmp_path: Path) -> None:
    """A decoded event written as columns and read back as a row rebuilds the same event and hash."""
    examples = [json.loads(p.read_text(encoding="utf-8")) for p in EXAMPLES]
    events = [decode(r) for r in sdk_records(tmp_path, [FIELDS, *examples])]
    assert not any(isinstance(e, Rejected) for e in events)
    for original, row in zip(events, _rows(events), strict=True):  # type: ignore[arg-type]
        rebuilt = row_to_event(row)
        assert rebuilt == original
        assert event_hash({k: v for k, v in rebuilt.items() if k != "hash"}) == rebuilt["hash"]


def test_store_row_with_datetime_timestamp_round_trips(tmp_path: Path) -> None:
    """A row whose occurred_at comes back as a naive UTC datetime still rebuilds the hashed event."""
    [record] = sdk_records(tmp_path, [{**FIELDS, "occurred_at": "2026-11-22T10:05:27.123456Z"}])
    event = decode(record)
    assert isinstance(event, dict)
    [row] = _rows([event])
    row["occurred_at"] = datetime(2026, 11, 22, 10, 5, 27, 123456)  # as the store returns it
    assert row_to_event(row) == event
