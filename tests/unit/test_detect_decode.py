"""The detector's decoding: what the rules read is checked; anything else is skipped, not fatal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.test_detect_engine import WED_10_LOCAL, wire
from trail.detect.consumer import decode_event


def enc(**over: Any) -> bytes:
    ev = wire(WED_10_LOCAL)
    for k, v in over.items():
        if v is None:
            ev.pop(k, None)
        else:
            ev[k] = v
    return json.dumps(ev).encode()


@pytest.mark.parametrize("full", [pytest.param(False, id="light"), pytest.param(True, id="full")])
def test_valid_event_decodes(full: bool) -> None:
    """A well-formed wire event decodes in both modes."""
    ev = decode_event(enc(), full=full)
    assert ev is not None
    assert ev["actor"]["id"] == "E-TEST-1"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="tombstone"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(enc(schema="trail.audit/v2"), id="unknown-schema"),
        pytest.param(enc(occurred_at="2026-13-01T00:00:00.000000Z"), id="month-13"),
        pytest.param(enc(occurred_at="yesterday"), id="timestamp-text"),
        pytest.param(enc(actor={"kind": "robot", "id": "x"}), id="actor-kind"),
        pytest.param(enc(actor="E-1"), id="actor-string"),
        pytest.param(enc(action="steal"), id="action"),
        pytest.param(enc(record_count=-1), id="negative-count"),
        pytest.param(enc(record_count="5"), id="count-string"),
        pytest.param(enc(subject_refs=[1, 2]), id="refs-not-strings"),
        pytest.param(enc(data_categories="health"), id="categories-string"),
        pytest.param(enc(destination="abroad"), id="destination-string"),
        pytest.param(enc(outcome=None), id="no-outcome"),
        pytest.param(b"x" * (70 * 1024), id="too-large"),
    ],
)
def test_malformed_is_skipped(value: bytes | None) -> None:
    """A record the rules cannot read decodes to None (counted and skipped by the detector)."""
    assert decode_event(value) is None
