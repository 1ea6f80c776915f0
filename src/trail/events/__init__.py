"""The v1 audit event: the contract between services, the broker and the store."""

from trail.events.model import (
    ACTIONS,
    ACTOR_KINDS,
    DATA_CATEGORIES,
    DESTINATION_KINDS,
    LEGAL_BASES,
    MAX_EVENT_BYTES,
    OUTCOMES,
    SCHEMA_V1,
    SENSITIVE_CATEGORIES,
    canonical_bytes,
    event_hash,
    format_timestamp,
    new_event_id,
    parse_timestamp,
    validate_input,
    validate_wire,
)

__all__ = [
    "ACTIONS",
    "ACTOR_KINDS",
    "DATA_CATEGORIES",
    "DESTINATION_KINDS",
    "LEGAL_BASES",
    "MAX_EVENT_BYTES",
    "OUTCOMES",
    "SCHEMA_V1",
    "SENSITIVE_CATEGORIES",
    "canonical_bytes",
    "event_hash",
    "format_timestamp",
    "new_event_id",
    "parse_timestamp",
    "validate_input",
    "validate_wire",
]
