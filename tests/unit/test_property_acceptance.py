"""Property: anything record() accepts, the sink stores (its decoding and validation path)."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import input_events
from trail.errors import ValidationError
from trail.events.wire import Rejected, decode
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport

KEY = b"0123456789abcdef" * 4


class _SinkPath:
    """Every value the client sends, through the sink's decode (dead letters collected)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stored: list[str] = []
        self.dead: list[str] = []
        self.values: list[bytes] = []  # what went over the wire, as sent

    def __call__(self, _key: bytes, values: list[bytes]) -> None:
        with self.lock:
            for v in values:
                self.values.append(v)
                d = decode(v)
                if isinstance(d, Rejected):
                    self.dead.append(d.reason)
                else:
                    self.stored.append(d["event_id"])


_tmp = tempfile.TemporaryDirectory(prefix="trail-property-")
_sink = _SinkPath()
_client = Client(
    service="property",
    transport=CallbackTransport(_sink),
    subject_key=KEY,
    spool_dir=Path(_tmp.name) / "spool",
    host="test-host",
    environment="test",
    linger_s=0.0,
)


@given(raw=input_events())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_anything_record_accepts_the_sink_stores(raw: dict[str, Any]) -> None:
    """An event record() accepts is never dead-lettered by the sink; a refusal is a ValidationError."""
    try:
        event_id = _client.record(**raw)
    except ValidationError as exc:
        str(exc).encode("utf-8")  # the message itself is printable
        return
    assert _client.flush(10)
    with _sink.lock:
        assert _sink.dead == [], _sink.dead
        assert _sink.stored[-1] == event_id
    assert _client.stats.refused == 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
_FIELDS = ("actor", "action", "subject_ids", "data_categories", "purpose", "legal_basis", "consent_ref", "target",
           "location", "destination", "outcome", "attributes", "occurred_at", "event_id", "record_count", "source",
           "schema")  # fmt: skip


@given(field=st.sampled_from(_FIELDS), value=_json)
@settings(max_examples=500, deadline=None)
def test_any_json_value_in_any_field_is_accepted_or_refused_never_a_crash(field: str, value: Any) -> None:
    """Whatever JSON a careless service puts in a field, record() accepts it or raises ValidationError."""
    base = {"actor": {"kind": "staff", "id": "E1"}, "action": "view", "data_categories": ["name"],
            "purpose": "p", "legal_basis": "contract", "target": {"system": "crm"}}  # fmt: skip
    try:
        _client.record(**{**base, field: value})
    except ValidationError:
        return
    assert _client.flush(10)
    with _sink.lock:
        assert _sink.dead == []
