"""Decoding a record from ``trail.events``: pure; the sink dead-letters what it rejects.

A record is either a valid, hash-checked v1 event ready for the writer, or a
:class:`Rejected` with a reason that names the field and never echoes personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from trail.errors import ValidationError
from trail.events.model import MAX_EVENT_BYTES, validate_wire


@dataclass(frozen=True)
class Rejected:
    reason: str


def decode(value: bytes | None) -> dict[str, Any] | Rejected:
    if value is None:
        return Rejected("empty record (tombstone); trail.events carries no deletions")
    if len(value) > MAX_EVENT_BYTES:
        return Rejected(f"record is {len(value)} bytes, over the {MAX_EVENT_BYTES} byte limit")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):
            return Rejected("JSON nested too deeply")
        return Rejected(f"not valid UTF-8 JSON (at byte {exc.pos})")
    if not isinstance(raw, dict):
        return Rejected(f"an audit event must be a JSON object, got {type(raw).__name__}")
    try:
        return validate_wire(raw)
    except ValidationError as exc:
        return Rejected(str(exc))
    except RecursionError:
        return Rejected("event nested too deeply")
