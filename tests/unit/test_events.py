"""The v1 audit event contract (DESIGN.md §3): validation, normalisation, encoding, schema files."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

import trail.events.model as model
from trail.errors import UnknownSchemaError, ValidationError
from trail.events.model import (
    ACTIONS,
    ACTOR_KINDS,
    DATA_CATEGORIES,
    DESTINATION_KINDS,
    LEGAL_BASES,
    MAX_ATTRIBUTES,
    MAX_EVENT_BYTES,
    MAX_SUBJECTS,
    MAX_TEXT_LEN,
    OUTCOMES,
    canonical_bytes,
    event_hash,
    validate_input,
    validate_wire,
)
from trail.sdk.client import Client
from trail.sdk.pseudonymise import Pseudonymiser
from trail.sdk.transport import CallbackTransport

SCHEMA_DIR = Path(model.__file__).parent / "schema"
EXAMPLES = sorted((SCHEMA_DIR / "examples").glob("*.json"))
INPUT_SCHEMA = json.loads((SCHEMA_DIR / "audit-v1.input.json").read_text(encoding="utf-8"))
WIRE_SCHEMA = json.loads((SCHEMA_DIR / "audit-v1.wire.json").read_text(encoding="utf-8"))
CANONICAL_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
KEY = b"0123456789abcdef" * 4  # 64 characters, a fixed fake key
SOURCE = {"service": "test-svc", "host": "test-host", "environment": "test"}
DROP = object()  # marks a field to remove in ``event(...)``


def event(**changes: Any) -> dict[str, Any]:
    """A minimal valid input event; ``changes`` use ``a__b`` for nested fields, DROP to remove."""
    ev: dict[str, Any] = {
        "actor": {"kind": "staff", "id": "E-TEST-1"},
        "action": "view",
        "subject_ids": ["SUBJ-TEST-0001"],
        "data_categories": ["name"],
        "purpose": "unit test",
        "legal_basis": "contract",
        "source": dict(SOURCE),
        "target": {"system": "crm"},
    }
    for name, value in changes.items():
        parent, _, child = name.partition("__")
        holder, key = (ev.setdefault(parent, {}), child) if child else (ev, parent)
        if value is DROP:
            holder.pop(key, None)
        else:
            holder[key] = value
    return ev


def refused(raw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_input(raw)
    return info.value


def wire_event(**changes: Any) -> dict[str, Any]:
    """A valid wire event built the way the SDK builds one (seq 1, hashed)."""
    ev = validate_input(event(**changes))
    ev["subject_refs"] = Pseudonymiser(KEY).refs(ev.pop("subject_ids"))
    ev["producer"] = {"id": "test-svc/1", "seq": 1, "prev": ""}
    ev["hash"] = event_hash(ev)
    return ev


def rehash(ev: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in ev.items() if k != "hash"}
    return {**body, "hash": event_hash(body)}


def wire_refused(raw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_wire(raw)
    return info.value


# ---------------------------------------------------------------- examples and acceptance


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_accepted(path: Path) -> None:
    """Every shipped example is accepted once ``source`` is filled, as the SDK fills it."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    ev = validate_input({"source": SOURCE, **raw})
    assert ev["action"] == raw["action"]
    assert ev["occurred_at"] == raw["occurred_at"]


def test_source_is_required_by_validate_input() -> None:
    """An event without ``source`` is refused with the field named (the SDK fills it first)."""
    assert refused(event(source=DROP)).field == "source"


def test_valid_event_is_normalised_with_defaults() -> None:
    """Missing schema, outcome, record_count, location and attributes get their defaults."""
    ev = validate_input(event(subject_ids=["SUBJ-TEST-0001", "SUBJ-TEST-0002"]))
    assert ev["schema"] == "trail.audit/v1"
    assert ev["outcome"] == "success"
    assert ev["record_count"] == 2
    assert ev["location"] == {}
    assert ev["attributes"] == {}


# ---------------------------------------------------------------- field errors


def test_unknown_actor_kind_message_is_exact() -> None:
    """An unknown actor.kind is refused with the field, the value and the allowed kinds named."""
    exc = refused(event(actor={"kind": "robot", "id": "E-TEST-1"}))
    assert exc.field == "actor.kind"
    assert str(exc) == "actor.kind: 'robot' is not one of staff, service, agent, subject, system"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"action": "peek"}, "action", id="action"),
        pytest.param({"data_categories": ["name", "shoe_size"]}, "data_categories[1]", id="data-category"),
        pytest.param({"legal_basis": "whim"}, "legal_basis", id="legal-basis"),
        pytest.param({"outcome": "maybe"}, "outcome", id="outcome"),
        pytest.param({"destination": {"kind": "cloud"}}, "destination.kind", id="destination-kind"),
        pytest.param({"action": "VIEW"}, "action", id="enum-is-case-sensitive"),
    ],
)
def test_unknown_enum_value_is_refused(changes: dict[str, Any], field: str) -> None:
    """A value outside an enumeration is refused with the field named and the allowed values listed."""
    exc = refused(event(**changes))
    assert exc.field == field
    assert str(exc).startswith(f"{field}: ")
    assert "is not one of" in exc.reason


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        pytest.param({"actor": "E-TEST-1"}, "actor", "must be an object, got str", id="actor-str"),
        pytest.param({"actor__id": 42}, "actor.id", "must be a string, got int", id="actor-id-int"),
        pytest.param({"actor__id": ""}, "actor.id", "must not be empty", id="actor-id-empty"),
        pytest.param({"actor__role": "r" * 257}, "actor.role", "longer than 256", id="actor-role-long"),
        pytest.param({"action": 3}, "action", "a int is not one of", id="action-int"),
        pytest.param({"purpose": 7}, "purpose", "must be a string, got int", id="purpose-int"),
        pytest.param({"purpose": "p" * (MAX_TEXT_LEN + 1)}, "purpose", "longer than", id="purpose-long"),
        pytest.param({"data_categories": "name"}, "data_categories", "must be a list", id="categories-str"),
        pytest.param({"data_categories": []}, "data_categories", "at least one", id="categories-empty"),
        pytest.param({"subject_ids": "SUBJ-TEST-0001"}, "subject_ids", "must be a list", id="subjects-str"),
        pytest.param({"subject_ids": [""]}, "subject_ids[0]", "non-empty string", id="subject-empty"),
        pytest.param({"subject_ids": ["SUBJ-TEST-0001", 7]}, "subject_ids[1]", "non-empty", id="subject-int"),
        pytest.param({"subject_ids": ["S" * 257]}, "subject_ids[0]", "longer than 256", id="subject-long"),
        pytest.param({"record_count": "5"}, "record_count", "must be an integer, got str", id="count-str"),
        pytest.param({"record_count": True}, "record_count", "must be an integer, got bool", id="count-bool"),
        pytest.param({"record_count": 1.5}, "record_count", "must be an integer", id="count-float"),
        pytest.param({"record_count": -1}, "record_count", "0 or more", id="count-negative"),
        pytest.param({"record_count": 10**13}, "record_count", "larger than", id="count-huge"),
        pytest.param({"source": ["svc"]}, "source", "must be an object, got list", id="source-list"),
        pytest.param({"location": "Shenzhen"}, "location", "must be an object", id="location-str"),
        pytest.param({"target__system": 1}, "target.system", "must be a string", id="target-system-int"),
        pytest.param({"consent_ref": 5}, "consent_ref", "must be a string", id="consent-ref-int"),
        pytest.param({"attributes": ["a"]}, "attributes", "must be an object", id="attributes-list"),
        pytest.param({"attributes": {"ticket": 5}}, "attributes.ticket", "must be a string", id="attr-int"),
        pytest.param({"attributes": {"": "x"}}, "attributes", "keys must be", id="attr-key-empty"),
        pytest.param({"attributes": {"k" * 65: "x"}}, "attributes", "keys must be", id="attr-key-long"),
        pytest.param({"attributes": {"t": "x" * 1025}}, "attributes.t", "longer than", id="attr-value-long"),
        pytest.param({"event_id": 123}, "event_id", "must be a UUID string, got int", id="event-id-int"),
        pytest.param({"event_id": "not-a-uuid"}, "event_id", "is not a UUID", id="event-id-text"),
        pytest.param({"occurred_at": 1700000000}, "occurred_at", "got int", id="occurred-at-int"),
        pytest.param({"occurred_at": "yesterday"}, "occurred_at", "RFC 3339", id="occurred-at-text"),
        pytest.param(
            {"attributes": {7: "x"}},
            "attributes",
            "keys must be",
            id="attr-key-int",
        ),
    ],
)
def test_wrong_type_or_shape_is_refused(changes: dict[str, Any], field: str, reason: str) -> None:
    """A value of the wrong type or shape is refused with the field and the reason named."""
    exc = refused(event(**changes))
    assert exc.field == field
    assert reason in exc.reason
    assert str(exc) == f"{field}: {exc.reason}"


@pytest.mark.parametrize(
    "field",
    [
        pytest.param("actor", id="actor"),
        pytest.param("action", id="action"),
        pytest.param("data_categories", id="data_categories"),
        pytest.param("purpose", id="purpose"),
        pytest.param("legal_basis", id="legal_basis"),
        pytest.param("target", id="target"),
        pytest.param("actor__kind", id="actor.kind"),
        pytest.param("actor__id", id="actor.id"),
        pytest.param("source__host", id="source.host"),
        pytest.param("target__system", id="target.system"),
    ],
)
def test_missing_required_field_is_named(field: str) -> None:
    """A missing required field is refused with that field's dotted path."""
    exc = refused(event(**{field: DROP}))
    assert exc.field == field.replace("__", ".")
    assert exc.reason


def test_destination_without_kind_is_refused() -> None:
    """A destination without its required kind is refused naming destination.kind."""
    assert refused(event(action="export", destination={"name": "list.csv"})).field == "destination.kind"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"customer_name": "x"}, "customer_name", id="top-level"),
        pytest.param({"subject_refs": ["0" * 64]}, "subject_refs", id="wire-only-subject-refs"),
        pytest.param({"producer": {"id": "p", "seq": 1, "prev": ""}}, "producer", id="wire-only-producer"),
        pytest.param({"hash": "0" * 64}, "hash", id="wire-only-hash"),
        pytest.param({"actor__email": "x"}, "actor.email", id="actor"),
        pytest.param({"source__region": "x"}, "source.region", id="source"),
        pytest.param({"location": {"city": "x"}}, "location.city", id="location"),
        pytest.param({"target__table": "x"}, "target.table", id="target"),
        pytest.param({"destination": {"kind": "file", "country": "x"}}, "destination.country", id="destination"),
    ],
)
def test_unknown_field_is_refused(changes: dict[str, Any], field: str) -> None:
    """An unknown top-level or nested field is refused with its path named."""
    exc = refused(event(**changes))
    assert exc.field == field
    assert "unknown field" in exc.reason


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param("trail.audit/v2", id="v2"),
        pytest.param("trail.audit/V1", id="wrong-case"),
        pytest.param(1, id="int"),
        pytest.param(None, id="null"),
    ],
)
def test_unknown_schema_is_refused(schema: Any) -> None:
    """An event naming another schema raises UnknownSchemaError on field 'schema'."""
    with pytest.raises(UnknownSchemaError) as info:
        validate_input(event(schema=schema))
    assert info.value.field == "schema"
    assert "trail.audit/v1" in info.value.reason


def test_non_mapping_is_refused() -> None:
    """Something that is not a JSON object is refused with a ValidationError, not a crash."""
    assert "JSON object" in refused(["not", "an", "event"]).reason


# ---------------------------------------------------------------- limits


def test_oversize_event_is_refused() -> None:
    """An event whose encoding is over 64 KiB is refused, naming the byte limit."""
    raw = event(
        subject_ids=[f"SUBJ-TEST-{i:04d}-".ljust(256, "x") for i in range(MAX_SUBJECTS)],
        attributes={f"note{i:02d}": "a" * MAX_TEXT_LEN for i in range(MAX_ATTRIBUTES)},
    )
    exc = refused(raw)
    assert exc.field == ""
    assert f"{MAX_EVENT_BYTES} byte limit" in exc.reason


def test_oversize_event_of_multibyte_text_is_refused() -> None:
    """An event over 64 KiB once UTF-8 encoded is refused even when it has fewer than 64 Ki characters."""
    raw = event(attributes={f"note{i:02d}": "审" * MAX_TEXT_LEN for i in range(28)})
    exc = refused(raw)
    assert "byte limit" in exc.reason


def test_event_at_subject_limit_is_accepted() -> None:
    """Exactly 1000 subject ids are accepted."""
    ids = [f"SUBJ-TEST-{i:04d}" for i in range(MAX_SUBJECTS)]
    assert validate_input(event(subject_ids=ids))["record_count"] == MAX_SUBJECTS


def test_more_than_1000_subjects_are_refused() -> None:
    """More than 1000 subject ids are refused, pointing at record_count for bulk operations."""
    exc = refused(event(subject_ids=[f"SUBJ-TEST-{i:04d}" for i in range(MAX_SUBJECTS + 1)]))
    assert exc.field == "subject_ids"
    assert "record_count" in exc.reason


def test_attribute_limit() -> None:
    """32 attributes are accepted and 33 refused on field 'attributes'."""
    validate_input(event(attributes={f"k{i}": "v" for i in range(MAX_ATTRIBUTES)}))
    exc = refused(event(attributes={f"k{i}": "v" for i in range(MAX_ATTRIBUTES + 1)}))
    assert exc.field == "attributes"
    assert str(MAX_ATTRIBUTES) in exc.reason


# ---------------------------------------------------------------- event_id


def test_absent_event_id_becomes_uuid7() -> None:
    """A missing event_id is filled with a UUIDv7 (RFC 4122 variant) whose time prefix is now."""
    before = time.time_ns() // 1_000_000
    ev = validate_input(event())
    after = time.time_ns() // 1_000_000
    generated = uuid.UUID(ev["event_id"])
    assert generated.version == 7
    assert generated.variant == uuid.RFC_4122
    assert before <= generated.int >> 80 <= after
    assert ev["event_id"] == str(generated)


def test_generated_event_ids_differ() -> None:
    """Generated event ids are unique."""
    assert len({validate_input(event())["event_id"] for _ in range(200)}) == 200


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("3f2b8c1e-9d4a-4e6b-8c1d-2e3f4a5b6c7d", "3f2b8c1e-9d4a-4e6b-8c1d-2e3f4a5b6c7d", id="uuid4-lower"),
        pytest.param("3F2B8C1E-9D4A-4E6B-8C1D-2E3F4A5B6C7D", "3f2b8c1e-9d4a-4e6b-8c1d-2e3f4a5b6c7d", id="uuid4-upper"),
        pytest.param("{3f2b8c1e-9d4a-4e6b-8c1d-2e3f4a5b6c7d}", "3f2b8c1e-9d4a-4e6b-8c1d-2e3f4a5b6c7d", id="braces"),
        pytest.param("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", id="uuid7"),
        pytest.param("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", id="uuid1"),
    ],
)
def test_given_event_id_is_kept_normalised(given: str, expected: str) -> None:
    """A given event_id of any UUID version is kept, normalised to lowercase canonical form."""
    assert validate_input(event(event_id=given))["event_id"] == expected


# ---------------------------------------------------------------- occurred_at


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2026-11-22T10:05:27.123456", id="naive-string"),
        pytest.param("2026-11-22 10:05:27", id="naive-space"),
        pytest.param(datetime(2026, 11, 22, 10, 5, 27), id="naive-datetime"),
    ],
)
def test_naive_timestamp_is_refused(value: Any) -> None:
    """A timestamp without a UTC offset is refused on field occurred_at."""
    exc = refused(event(occurred_at=value))
    assert exc.field == "occurred_at"
    assert "offset" in exc.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2026-11-22T10:05:27.123456Z", "2026-11-22T10:05:27.123456Z", id="canonical"),
        pytest.param("2026-11-22T18:05:27.123456+08:00", "2026-11-22T10:05:27.123456Z", id="plus-eight"),
        pytest.param("2026-11-22T05:05:27-05:00", "2026-11-22T10:05:27.000000Z", id="minus-five-no-fraction"),
        pytest.param("2026-11-23T01:30:00.5+15:25", "2026-11-22T10:05:00.500000Z", id="odd-offset"),
        pytest.param("2026-11-22T10:05:27.123Z", "2026-11-22T10:05:27.123000Z", id="millis"),
        pytest.param(
            datetime(2026, 11, 22, 18, 5, 27, 123456, tzinfo=timezone(timedelta(hours=8))),
            "2026-11-22T10:05:27.123456Z",
            id="aware-datetime",
        ),
    ],
)
def test_timestamp_is_converted_to_canonical_utc(value: Any, expected: str) -> None:
    """A timestamp with any offset becomes UTC in the form 2026-11-22T10:05:27.123456Z."""
    assert validate_input(event(occurred_at=value))["occurred_at"] == expected


def test_absent_timestamp_is_now_in_canonical_form() -> None:
    """A missing occurred_at is filled with the current UTC time in canonical form."""
    ts = validate_input(event())["occurred_at"]
    assert CANONICAL_TS.fullmatch(ts)
    filled = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - filled).total_seconds()) < 5


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2026-13-22T10:05:27.123456Z", id="month-13"),
        pytest.param("2026-11-22T25:05:27.123456Z", id="hour-25"),
    ],
)
def test_impossible_canonical_looking_timestamp_is_refused(value: str) -> None:
    """A canonical-looking timestamp that is not a real instant is refused."""
    assert refused(event(occurred_at=value)).field == "occurred_at"


def test_space_padded_timestamp_is_not_kept_verbatim() -> None:
    """A 27-character timestamp that is not canonical is refused or normalised, never kept as is."""
    try:
        ev = validate_input(event(occurred_at="2026-11- 1T10:05:27.123456Z"))
    except ValidationError:
        return
    assert CANONICAL_TS.fullmatch(ev["occurred_at"])


# ---------------------------------------------------------------- privacy of error messages


@pytest.mark.parametrize(
    ("changes", "secret"),
    [
        pytest.param({"action": "13800138000"}, "13800138000", id="phone-in-action"),
        pytest.param({"actor__kind": "123456789012345678"}, "123456789012345678", id="id-number-in-actor-kind"),
        pytest.param({"legal_basis": "someone@example.com"}, "someone@example.com", id="email-in-legal-basis"),
        pytest.param({"outcome": "Zhang San"}, "Zhang San", id="name-in-outcome"),
        pytest.param({"data_categories": ["SUBJ-TEST-0001"]}, "SUBJ-TEST-0001", id="id-in-category"),
        pytest.param({"destination": {"kind": "SUBJ-TEST-0001"}}, "SUBJ-TEST-0001", id="id-in-dest-kind"),
        pytest.param({"subject_ids": ["SUBJ-TEST-" + "9" * 250]}, "SUBJ-TEST-", id="long-subject-id"),
        pytest.param({"actor__id": "SUBJ-TEST-" + "9" * 250}, "SUBJ-TEST-", id="long-actor-id"),
        pytest.param({"attributes": {"note": "SUBJ-TEST-" + "9" * 1020}}, "SUBJ-TEST-", id="long-attribute"),
        pytest.param({"occurred_at": "SUBJ-TEST-0001"}, "SUBJ-TEST-0001", id="id-in-occurred-at"),
        pytest.param({"event_id": "SUBJ-TEST-0001"}, "SUBJ-TEST-0001", id="id-in-event-id"),
    ],
)
def test_error_never_echoes_free_text(changes: dict[str, Any], secret: str) -> None:
    """An error message never repeats free text or identifiers put into a field."""
    exc = refused(event(**changes))
    assert secret not in str(exc)
    assert secret not in exc.field


# ---------------------------------------------------------------- validate_wire


def test_wire_event_from_sdk_steps_is_accepted() -> None:
    """A pseudonymised, sequenced and hashed event is accepted unchanged."""
    ev = wire_event()
    assert validate_wire(copy.deepcopy(ev)) == ev


def test_wire_refuses_raw_subject_ids() -> None:
    """A wire event carrying raw subject_ids is refused on field subject_ids."""
    ev = wire_event()
    ev["subject_ids"] = ["SUBJ-TEST-0001"]
    exc = wire_refused(ev)
    assert exc.field == "subject_ids"
    assert "SUBJ-TEST-0001" not in str(exc)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("purpose",), "another purpose", id="purpose"),
        pytest.param(("actor", "id"), "E-TEST-2", id="actor-id"),
        pytest.param(("subject_refs",), ["f" * 64], id="subject-refs"),
        pytest.param(("record_count",), 99, id="record-count"),
        pytest.param(("occurred_at",), "2020-01-01T00:00:00.000000Z", id="occurred-at"),
        pytest.param(("producer", "seq"), 2, id="producer-seq"),
        pytest.param(("attributes",), {"ticket": "T-TEST-2"}, id="attributes"),
    ],
)
def test_wire_detects_change_after_hashing(path: tuple[str, ...], value: Any) -> None:
    """Changing any field after the hash was computed is refused on field 'hash'."""
    ev = wire_event()
    holder = ev
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    exc = wire_refused(ev)
    assert exc.field == "hash"
    assert "does not match" in exc.reason


@pytest.mark.parametrize(
    "seq",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param("1", id="string"),
        pytest.param(1.0, id="float"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
    ],
)
def test_wire_requires_seq_from_one(seq: Any) -> None:
    """producer.seq must be an integer of at least 1."""
    ev = wire_event()
    ev["producer"]["seq"] = seq
    assert wire_refused(rehash(ev)).field == "producer.seq"


def test_wire_requires_empty_prev_for_seq_one() -> None:
    """The first event of a producer (seq 1) must have an empty prev."""
    ev = wire_event()
    ev["producer"]["prev"] = "a" * 64
    exc = wire_refused(rehash(ev))
    assert exc.field == "producer.prev"
    assert "seq 1" in exc.reason


def test_wire_accepts_later_event_with_prev() -> None:
    """An event with seq 2 and the previous event's hash as prev is accepted."""
    first = wire_event()
    ev = wire_event()
    ev["producer"] = {"id": "test-svc/1", "seq": 2, "prev": first["hash"]}
    validate_wire(rehash(ev))


@pytest.mark.parametrize(
    ("producer", "field"),
    [
        pytest.param(None, "producer", id="missing"),
        pytest.param("test-svc/1", "producer", id="string"),
        pytest.param({"id": "p", "seq": 1, "prev": "", "host": "h"}, "producer.host", id="unknown-field"),
        pytest.param({"seq": 1, "prev": ""}, "producer.id", id="no-id"),
        pytest.param({"id": "p", "seq": 2, "prev": "XYZ"}, "producer.prev", id="prev-not-hex"),
        pytest.param({"id": "p", "seq": 2, "prev": "A" * 64}, "producer.prev", id="prev-uppercase"),
        pytest.param({"id": "p", "seq": 2}, "producer.prev", id="prev-missing"),
    ],
)
def test_wire_checks_producer(producer: Any, field: str) -> None:
    """A missing or malformed producer is refused with the producer field named."""
    ev = wire_event()
    ev["producer"] = producer
    assert wire_refused(rehash(ev)).field == field


@pytest.mark.parametrize(
    "digest",
    [
        pytest.param(None, id="missing"),
        pytest.param("abc", id="short"),
        pytest.param("G" * 64, id="not-hex"),
    ],
)
def test_wire_requires_hash_shape(digest: Any) -> None:
    """A missing or malformed hash is refused on field 'hash'."""
    ev = wire_event()
    ev["hash"] = digest
    assert wire_refused(ev).field == "hash"


def test_wire_requires_hex_subject_refs() -> None:
    """A subject_ref that is not 64 lowercase hex characters is refused with its index."""
    ev = wire_event()
    ev["subject_refs"] = ["f" * 64, "SUBJ-TEST-0001"]
    exc = wire_refused(rehash(ev))
    assert exc.field == "subject_refs[1]"
    assert "SUBJ-TEST-0001" not in str(exc)


# ---------------------------------------------------------------- canonical encoding


def test_canonical_bytes_are_sorted_compact_utf8() -> None:
    """canonical_bytes is sorted-key, compact JSON with non-ASCII kept as UTF-8."""
    data = {"purpose": "客服回访", "b": {"z": 1, "a": [2, {"y": "é", "x": None}]}, "a": True}
    out = canonical_bytes(data)
    assert out == '{"a":true,"b":{"a":[2,{"x":null,"y":"é"}],"z":1},"purpose":"客服回访"}'.encode()
    assert b"\\u" not in out
    assert out == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_canonical_bytes_ignore_insertion_order() -> None:
    """Two mappings with the same content encode to the same bytes whatever their key order."""
    assert canonical_bytes({"b": 1, "a": {"d": 2, "c": 3}}) == canonical_bytes({"a": {"c": 3, "d": 2}, "b": 1})


def test_nan_never_reaches_the_canonical_encoding() -> None:
    """A float (NaN included) has no place in an event: validation refuses it before encoding."""
    with pytest.raises(ValidationError) as exc:
        validate_input(event(record_count=float("nan")))
    assert exc.value.field == "record_count"


def test_event_hash_is_sha256_of_canonical_bytes() -> None:
    """event_hash is the hex SHA-256 of the canonical encoding."""
    ev = {"b": "审计", "a": 1}
    assert event_hash(ev) == hashlib.sha256(canonical_bytes(ev)).hexdigest()


# ---------------------------------------------------------------- the schema files


@pytest.mark.parametrize("schema", [pytest.param(INPUT_SCHEMA, id="input"), pytest.param(WIRE_SCHEMA, id="wire")])
def test_schema_file_is_valid_json_schema(schema: dict[str, Any]) -> None:
    """The schema file is itself a valid JSON Schema (draft 2020-12)."""
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_validates_against_input_schema(path: Path) -> None:
    """Every shipped example validates against audit-v1.input.json."""
    validator = Draft202012Validator(INPUT_SCHEMA, format_checker=FormatChecker())
    validator.validate(json.loads(path.read_text(encoding="utf-8")))


def _enum_cases() -> list[Any]:
    cases = []
    for label, schema in (("input", INPUT_SCHEMA), ("wire", WIRE_SCHEMA)):
        props = schema["properties"]
        for name, found, constant in (
            ("ACTIONS", props["action"]["enum"], ACTIONS),
            ("DATA_CATEGORIES", props["data_categories"]["items"]["enum"], DATA_CATEGORIES),
            ("ACTOR_KINDS", props["actor"]["properties"]["kind"]["enum"], ACTOR_KINDS),
            ("LEGAL_BASES", props["legal_basis"]["enum"], LEGAL_BASES),
            ("OUTCOMES", props["outcome"]["enum"], OUTCOMES),
            ("DESTINATION_KINDS", props["destination"]["properties"]["kind"]["enum"], DESTINATION_KINDS),
        ):
            cases.append(pytest.param(found, constant, id=f"{label}-{name}"))
    return cases


@pytest.mark.parametrize(("in_file", "in_code"), _enum_cases())
def test_schema_enums_match_code(in_file: list[str], in_code: tuple[str, ...]) -> None:
    """Each enumeration in the schema files equals the constant in trail.events.model."""
    assert in_file == list(in_code)


def _limit_cases() -> list[Any]:
    cases = []
    for label, schema, subjects, limit in (
        ("input", INPUT_SCHEMA, "subject_ids", MAX_SUBJECTS),
        ("wire", WIRE_SCHEMA, "subject_refs", model.WIRE_MAX_SUBJECTS),
    ):
        props = schema["properties"]
        cases += [
            pytest.param(props[subjects]["maxItems"], limit, id=f"{label}-max-subjects"),
            pytest.param(props["attributes"]["maxProperties"], MAX_ATTRIBUTES, id=f"{label}-max-attributes"),
            pytest.param(props["purpose"]["maxLength"], MAX_TEXT_LEN, id=f"{label}-purpose-length"),
            pytest.param(props["schema"]["const"], model.SCHEMA_V1, id=f"{label}-schema-name"),
        ]
    return cases


@pytest.mark.parametrize(("in_file", "in_code"), _limit_cases())
def test_schema_limits_match_code(in_file: Any, in_code: Any) -> None:
    """The limits written in the schema files equal the ones the code enforces."""
    assert in_file == in_code


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_sdk_event_validates_against_wire_schema(tmp_path: Path, path: Path) -> None:
    """An event the SDK produced from an example validates against audit-v1.wire.json."""
    sent: list[bytes] = []
    client = Client(
        service="test-svc",
        transport=CallbackTransport(lambda _key, values: sent.extend(values)),
        subject_key=KEY,
        spool_dir=tmp_path / "spool",
    )
    try:
        client.record_event(json.loads(path.read_text(encoding="utf-8")))
        assert client.flush(5)
    finally:
        client.close(1)
    [body] = sent
    Draft202012Validator(WIRE_SCHEMA, format_checker=FormatChecker()).validate(json.loads(body))


def test_canonical_bytes_match_the_standard_library_encoding() -> None:
    """The fast encoder gives byte for byte what json.dumps(sort_keys, compact, UTF-8) gives."""
    import json
    import random

    rnd = random.Random(7)
    alphabet = [chr(i) for i in range(0x00, 0x250)] + ["\u2028", "\u2029", "中", "审", "😀", "\ufeff", "\uffff"]
    for _ in range(3000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        doc = {"z": text, "a": [text, 0, 10**12], "m": {text or "k": text, "b": ""}, "n": {}}
        expected = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
        assert canonical_bytes(doc) == expected, repr(text)


def test_event_ids_are_written_as_uuid_writes_them() -> None:
    """The hand-made text of a UUIDv7 is exactly the standard form, across many ids."""
    from trail.events.model import new_event_id

    for _ in range(2_000):
        text = new_event_id()
        assert text == str(uuid.UUID(text)) and len(text) == 36


def test_a_filled_occurred_at_is_now_in_the_wire_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """occurred_at filled by validation is the current time as format_timestamp writes it, also
    across a change of second, minute and year, and for the first and last microsecond."""
    from trail.events import model

    before = datetime.now(UTC)
    ev = validate_input(event())
    after = datetime.now(UTC)
    assert ev["occurred_at"] == model.format_timestamp(model.parse_timestamp("occurred_at", ev["occurred_at"]))
    assert before <= model.parse_timestamp("occurred_at", ev["occurred_at"]) <= after
    for instant in (
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, 0, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 30, 0, 500000, tzinfo=UTC),
    ):
        ns = (int(instant.timestamp()) * 1_000_000 + instant.microsecond) * 1000
        monkeypatch.setattr(model.time, "time_ns", lambda ns=ns: ns)
        assert model.now_timestamp() == model.format_timestamp(instant)
