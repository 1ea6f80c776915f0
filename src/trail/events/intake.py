"""Reading one event from a line of JSON input (``trail emit``, ``POST /v1/events``).

Strict where the standard library is lenient, because a silently changed audit record is a
lost one: bytes that are not UTF-8 are refused (never replaced), a key given twice in one
object is refused (never "the last one wins"), and ``NaN``/``Infinity`` are not JSON.
"""

from __future__ import annotations

import json
from typing import Any

from trail.errors import ValidationError
from trail.events.model import printable_key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValidationError(printable_key(key), "is given twice in the same JSON object; give each field once")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValidationError("", f"{name} is not a JSON value")


def parse_line(line: bytes | str) -> dict[str, Any] | None:
    """The JSON object on one line, or None for a blank line; ValidationError says what is wrong."""
    if isinstance(line, bytes):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                "", f"not valid UTF-8 (byte {exc.start + 1} of the line); save the file as UTF-8"
            ) from None
    else:
        text = line
    text = text.strip()
    if text.startswith("\ufeff"):  # a byte order mark some editors write at the start of a file
        text = text[1:].lstrip()
    if not text:
        return None
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError("", f"not valid JSON (column {exc.colno})") from None
    except RecursionError:
        raise ValidationError("", "JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise ValidationError("", f"an audit event must be a JSON object, got {type(raw).__name__}")
    return raw
