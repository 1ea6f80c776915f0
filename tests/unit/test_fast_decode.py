"""The sink's fast decoder gives exactly the acceptance rule's answers (trail.events.wire.decode):
the same normalised event for what it accepts, and the rule's own rejection for everything else."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import input_events
from tests.unit.test_decode import FIELDS, sdk_records
from tests.unit.test_property_acceptance import _client, _sink
from trail.errors import ValidationError
from trail.events import wire
from trail.events.model import MAX_EVENT_BYTES, event_hash
from trail.ingest.decode import decode, decode_position, decode_row, fast_decode
from trail.storage.store import event_row


def same_answer(value: bytes | None) -> Any:
    """decode(value) == wire.decode(value), and the fast path never accepts what the rule refuses;
    the sink's row (decode_row) is the store's row of the rule's event, or the rule's rejection."""
    expected = wire.decode(value)
    assert decode(value) == expected
    assert decode_row(value) == (expected if isinstance(expected, wire.Rejected) else event_row(expected))
    position = decode_position(value)
    if isinstance(expected, wire.Rejected):
        assert position == expected
    else:
        p = expected["producer"]
        assert position == (p["id"], p["seq"], expected["hash"], p["prev"])
    if value is not None and len(value) <= MAX_EVENT_BYTES:
        fast = fast_decode(value)
        assert fast is None or fast == expected
    return expected


def rehashed(ev: dict[str, Any]) -> bytes:
    """``ev`` with the hash its content has (as a producer that hashes what it sends would give)."""
    body = {k: v for k, v in ev.items() if k != "hash"}
    try:
        return orjson.dumps({**body, "hash": event_hash(body)})
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits: no hash can be made
        return json.dumps(ev).encode()


# ------------------------------------------------------------------ what producers send


@given(raw=input_events())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_every_event_the_sdk_sends_takes_the_fast_path_with_the_rules_result(raw: dict[str, Any]) -> None:
    """Whatever record() accepts reaches the wire in canonical form: the fast path accepts it and
    returns what the full validator returns (destination, consent, attributes, any Unicode)."""
    with _sink.lock:
        _sink.values.clear()
    try:
        _client.record(**raw)
    except ValidationError:
        return
    assert _client.flush(10)
    with _sink.lock:
        [value] = _sink.values
    expected = wire.decode(value)
    assert not isinstance(expected, wire.Rejected), expected
    assert fast_decode(value) == expected
    assert decode_row(value) == event_row(expected), "the sink's row is the store's row of the rule's event"


# ------------------------------------------------------------------ what a hostile producer sends
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _paths(ev: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(ev, dict):
        for k, v in ev.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(ev, list):
        for i, v in enumerate(ev):
            out += _paths(v, (*prefix, i))
    return out


def _base_event() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        [value] = sdk_records(
            Path(d),
            [
                {
                    **FIELDS,
                    "consent_ref": "C-1",
                    "destination": {"kind": "abroad", "name": "org"},
                    "attributes": {"ticket": "T-1", "é": "中"},
                    "location": {"site": "s1"},
                }
            ],
        )
    ev: dict[str, Any] = orjson.loads(value)
    return ev


_BASE = _base_event()
_PATHS = _paths(_BASE)


@given(
    path=st.sampled_from(_PATHS),
    how=st.sampled_from(["set", "delete", "add"]),
    value=_json,
    rehash=st.booleans(),
)
@settings(max_examples=1500, deadline=None)
def test_a_changed_field_gets_the_rules_answer(path: tuple[Any, ...], how: str, value: Any, rehash: bool) -> None:
    """Any field of a good event set to any JSON value, removed, or joined by an unknown one, with
    the hash recomputed (a producer hashing what it sends) or not: the same answer as the rule."""
    ev = copy.deepcopy(_BASE)
    parent: Any = ev
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "set":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"{last}_extra"] = value
    else:
        parent.append(value)
    same_answer(rehashed(ev) if rehash else json.dumps(ev).encode())


HOSTILE: list[tuple[str, Any]] = [
    ("timestamp with an offset", {"occurred_at": "2026-11-22T10:05:27.123456+00:00"}),
    ("timestamp without microseconds", {"occurred_at": "2026-11-22T10:05:27Z"}),
    ("30 February", {"occurred_at": "2026-02-30T10:05:27.123456Z"}),
    ("year 9999", {"occurred_at": "9999-12-31T23:59:59.999999Z"}),
    ("year 1899", {"occurred_at": "1899-12-31T23:59:59.999999Z"}),
    ("timestamp with a newline", {"occurred_at": "2026-11-22T10:05:27.123456Z\n"}),
    ("upper-case event id", {"event_id": None}),  # filled below
    ("event id in braces", {"event_id": None}),
    ("a category twice", {"data_categories": ["name", "name"]}),
    ("no categories", {"data_categories": []}),
    ("null consent", {"consent_ref": None}),
    ("empty consent", {"consent_ref": ""}),
    ("null destination", {"destination": None}),
    ("no location", {"location": None}),
    ("true as a count", {"record_count": True}),
    ("count of 10^12 + 1", {"record_count": 10**12 + 1}),
    ("count as a float", {"record_count": 1.0}),
    ("blank purpose", {"purpose": "   "}),
    ("purpose over the limit", {"purpose": "x" * 1025}),
    ("purpose at the limit, in CJK", {"purpose": "界" * 1024}),
    ("33 attributes", {"attributes": {f"k{i}": "v" for i in range(33)}}),
    ("an empty attribute value", {"attributes": {"k": ""}}),
    ("an empty attribute key", {"attributes": {"": "v"}}),
    ("a ref in upper case", {"subject_refs": ["A" * 64]}),
    ("a ref with a newline", {"subject_refs": ["a" * 64 + "\n"]}),
    ("1001 refs", {"subject_refs": ["a" * 64] * 1001}),
    ("raw subject ids", {"subject_ids": ["someone"]}),
    ("another schema", {"schema": "trail.audit/v2"}),
    ("no schema", {"schema": None}),
]


@pytest.mark.parametrize("name,change", HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("rehash", [True, False], ids=["rehashed", "as-is"])
def test_hostile_and_non_canonical_fields_get_the_rules_answer(name: str, change: dict[str, Any], rehash: bool) -> None:
    ev = copy.deepcopy(_BASE)
    for key, value in change.items():
        if key == "event_id":
            value = ev["event_id"].upper() if "upper" in name else "{" + ev["event_id"] + "}"
        if value is None:
            ev.pop(key, None)
        else:
            ev[key] = value
    same_answer(rehashed(ev) if rehash else json.dumps(ev).encode())


@pytest.mark.parametrize(
    "producer",
    [
        {"id": "p", "seq": 1, "prev": "a" * 64},
        {"id": "p", "seq": 0, "prev": ""},
        {"id": "p", "seq": 2**64, "prev": "a" * 64},
        {"id": "p", "seq": 2, "prev": "A" * 64},
        {"id": "", "seq": 2, "prev": ""},
        {"id": "p", "seq": 2, "prev": "", "extra": 1},
        {"id": "p", "seq": "2", "prev": ""},
    ],
)
def test_producer_fields_get_the_rules_answer(producer: dict[str, Any]) -> None:
    same_answer(rehashed({**copy.deepcopy(_BASE), "producer": producer}))


def test_raw_bytes_get_the_rules_answer() -> None:
    good = rehashed(copy.deepcopy(_BASE))
    assert not isinstance(same_answer(good), wire.Rejected)
    text = good.decode()
    for value in [
        None,
        b"",
        b"[]",
        b"null",
        b"\xff\xfe",
        good[:-1],
        good + b" ",
        good + b"x",
        text.replace('"purpose":"unit test"', '"purpose":"\\ud800"').encode(),  # a lone surrogate
        text.replace('"purpose":"unit test"', '"purpose":"a","purpose":"unit test"').encode(),  # a key twice
        text.replace('"purpose":"unit test"', '"purpose":"unit test","purpose":"b"').encode(),
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        good[:-1] + b',"pad":"' + b"x" * MAX_EVENT_BYTES + b'"}',
        json.dumps(_BASE, indent=2).encode(),  # not compact: still valid, by the full validator
    ]:
        same_answer(value)


def test_the_sorted_encoding_is_the_canonical_one() -> None:
    """The fast path hashes msgspec's sorted encoding; it must be the canonical bytes exactly,
    for every kind of character an attribute may hold (controls, quotes, any plane)."""
    chars = "".join(chr(c) for c in [*range(0, 0x80), 0x7F, 0xA0, 0x2028, 0x2029, 0xFEFF, 0xFFFF, 0x1F600, 0x10FFFF])
    ev = copy.deepcopy(_BASE)
    ev["attributes"] = {chars[i : i + 8] or "k": chars[-i - 8 : -i or None] for i in range(0, len(chars), 8)}
    ev["attributes"] = dict(list(ev["attributes"].items())[:32])
    ev["purpose"] = chars
    value = rehashed(ev)
    assert fast_decode(value) == wire.decode(value) != None  # noqa: E711
