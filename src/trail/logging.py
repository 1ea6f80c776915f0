"""structlog, configured once per process.

JSON lines for services (and whenever stderr is not a terminal), the console renderer on a
TTY. A redaction processor runs before rendering: keys that carry subject ids or free-form
attribute values are dropped, and strings that look like a mainland phone number, a resident
identity number or an e-mail address are masked, so a careless log call cannot put personal
data into the logs (Shenzhen Art. 76-77).

Canonical log lines: one line per unit of work (``sink.batch_flushed``, ``sdk.spooled``) with
everything an operator needs, rather than many small lines.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_DROP_KEYS = frozenset(
    {
        "subject_ids",
        "subject_id",
        "subject",
        "subjects",
        "attributes",
        "contact",
        "phone",
        "email",
        "id_number",
        "name_value",
        "raw",
        "value",
        "payload",
    }
)
_PATTERNS = (
    re.compile(r"(?<!\d)(?:\+?86)?1[3-9]\d{9}(?!\d)"),  # mainland mobile number
    re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"),  # resident identity card number
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),  # e-mail address
)
_configured = False
#: Names of internal errors logged since start (``internal=True``); tests assert it stays empty.
internal_errors: list[str] = []


def _mask(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def _mask_deep(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _mask(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {k: "[redacted]" if k in _DROP_KEYS else _mask_deep(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_deep(v, depth + 1) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop keys that carry personal data and mask PI-looking strings."""
    for key in list(event_dict):
        if key in _DROP_KEYS:
            event_dict[key] = "[redacted]"
            continue
        event_dict[key] = _mask_deep(event_dict[key])
    return event_dict


def track_internal(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Remember errors that code marked as internal (a swallowed bug, not a user mistake)."""
    if event_dict.get("internal"):
        internal_errors.append(str(event_dict.get("event")))
    return event_dict


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and the standard library's root logger (idempotent)."""
    global _configured
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and getattr(stream, "isatty", lambda: False)())
    renderer: Any = structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            track_internal,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # kafka-python logs reconnect noise at WARNING/ERROR; keep it to real problems.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    _configured = True


def get_logger(name: str) -> Any:
    if not _configured:
        configure()
    return structlog.get_logger(name)
