"""The sink's decoder: one pass in C for the events producers send, the full validator for the rest.

:func:`trail.events.wire.decode` is the acceptance rule: it parses a record, validates every
field, normalises what may be normalised and checks the hash. It spends most of its time in
Python, about three quarters of the sink's. :func:`decode` here gives the same answers faster:

* **The fast path** decodes the record with msgspec into typed structures that enforce, in C,
  everything the rule checks field by field — types, enumerations, lengths, the 64-hex forms,
  unknown and missing fields — in the *canonical* form the SDK sends (every normalised field
  present, ids and times already in their canonical spelling). What the structures cannot say
  (a date that exists, the store's range of years, categories given once, ``seq`` 1 without a
  ``prev``) is checked after, and the hash is computed over msgspec's sorted encoding of the
  event, which is byte for byte the canonical encoding (a test keeps the two equal).
* **Anything else** — a record the fast path does not accept for any reason, including a bad
  one — goes through :func:`trail.events.wire.decode`, which decides and words the reason.

So the fast path only ever accepts: an event it accepts is one the rule accepts, and it returns
the same normalised event (tests compare the two over generated and hostile records). It never
rejects anything itself, so every rejection keeps the rule's exact reason.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from trail.events import wire
from trail.events.model import (
    ACTIONS,
    ACTOR_KINDS,
    DATA_CATEGORIES,
    DESTINATION_KINDS,
    LEGAL_BASES,
    MAX_ATTR_KEY_LEN,
    MAX_ATTRIBUTES,
    MAX_EVENT_BYTES,
    MAX_ID_LEN,
    MAX_TEXT_LEN,
    OUTCOMES,
    SCHEMA_V1,
    STORABLE_FROM,
    STORABLE_UNTIL,
    WIRE_MAX_SUBJECTS,
)
from trail.storage.store import event_row

_Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LEN)]
_OptId = _Id | UnsetType
_Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_LEN)]
_Hex64 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]


def _one_of(values: tuple[str, ...]) -> Any:
    return Literal.__getitem__(values)


def _struct(name: str, fields: list[tuple[Any, ...]]) -> Any:
    return msgspec.defstruct(name, fields, forbid_unknown_fields=True, omit_defaults=True, kw_only=True, gc=False)


_Actor = _struct(
    "Actor", [("kind", _one_of(ACTOR_KINDS)), ("id", _Id), ("role", _OptId, UNSET), ("department", _OptId, UNSET)]
)
_Source = _struct("Source", [("service", _Id), ("host", _Id), ("environment", _Id)])
_Location = _struct("Location", [("ip", _OptId, UNSET), ("site", _OptId, UNSET), ("region", _OptId, UNSET)])
_Target = _struct("Target", [("system", _Id), ("dataset", _OptId, UNSET), ("resource", _OptId, UNSET)])
_Destination = _struct(
    "Destination", [("kind", _one_of(DESTINATION_KINDS)), ("name", _OptId, UNSET), ("region", _OptId, UNSET)]
)
_Producer = _struct(
    "Producer",
    [
        ("id", _Id),
        ("seq", Annotated[int, Meta(ge=1)]),
        ("prev", Annotated[str, Meta(pattern=r"^(?:[0-9a-f]{64})?\Z")]),
    ],
)
_Event = _struct(
    "WireEvent",
    [
        ("schema", Literal[SCHEMA_V1]),
        ("event_id", Annotated[str, Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")]),
        (
            "occurred_at",
            Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\Z")],
        ),
        ("actor", _Actor),
        ("action", _one_of(ACTIONS)),
        ("subject_refs", Annotated[list[_Hex64], Meta(max_length=WIRE_MAX_SUBJECTS)]),
        ("record_count", Annotated[int, Meta(ge=0, le=10**12)]),
        ("data_categories", Annotated[list[_one_of(DATA_CATEGORIES)], Meta(min_length=1)]),  # type: ignore[misc]
        ("purpose", _Text),
        ("legal_basis", _one_of(LEGAL_BASES)),
        ("consent_ref", _OptId, UNSET),
        ("source", _Source),
        ("location", _Location),
        ("target", _Target),
        ("destination", _Destination | UnsetType, UNSET),
        ("outcome", _one_of(OUTCOMES)),
        (
            "attributes",
            Annotated[
                dict[
                    Annotated[str, Meta(min_length=1, max_length=MAX_ATTR_KEY_LEN)],
                    Annotated[str, Meta(max_length=MAX_TEXT_LEN)],
                ],
                Meta(max_length=MAX_ATTRIBUTES),
            ],
        ),
        ("producer", _Producer),
        ("hash", _Hex64 | UnsetType, UNSET),
    ],
)

_DECODER: Final = msgspec.json.Decoder(_Event)
_ENCODER: Final = msgspec.json.Encoder(order="sorted")


def _fast_struct(value: bytes) -> Any | None:
    """The decoded event (its ``hash`` checked and kept) when ``value`` is a valid event in
    canonical form; None otherwise (which says nothing about its validity)."""
    try:
        ev = _DECODER.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return None
    digest = ev.hash
    at = ev.occurred_at
    cats = ev.data_categories
    producer = ev.producer
    if (
        digest is UNSET
        or not STORABLE_FROM <= at <= STORABLE_UNTIL
        or (len(cats) > 1 and len(set(cats)) != len(cats))
        or (producer.seq == 1 and producer.prev)
    ):
        return None
    try:
        datetime.fromisoformat(at[:-1])  # the date exists (no 30 February)
    except ValueError:
        return None
    ev.hash = UNSET
    try:
        canonical = _ENCODER.encode(ev)
    except (msgspec.EncodeError, UnicodeEncodeError):
        return None
    if hashlib.sha256(canonical).hexdigest() != digest:
        return None
    ev.hash = digest
    return ev


def fast_decode(value: bytes) -> dict[str, Any] | None:
    """The normalised event when ``value`` is a valid event in canonical form; None otherwise
    (which says nothing about its validity: the full validator decides)."""
    ev = _fast_struct(value)
    if ev is None:
        return None
    out: dict[str, Any] = msgspec.to_builtins(ev)
    return out


def _s(value: Any) -> Any:
    return "" if value is UNSET else value


def _struct_row(ev: Any) -> tuple[Any, ...]:
    """:func:`trail.storage.store.event_row` of a decoded event, without building its dicts."""
    a, src, loc, tgt, dest, p = ev.actor, ev.source, ev.location, ev.target, ev.destination, ev.producer
    has_dest = dest is not UNSET
    return (
        ev.event_id,
        ev.occurred_at,
        a.kind,
        a.id,
        _s(a.role),
        _s(a.department),
        ev.action,
        ev.subject_refs,
        ev.record_count,
        ev.data_categories,
        ev.purpose,
        ev.legal_basis,
        _s(ev.consent_ref),
        src.service,
        src.host,
        src.environment,
        _s(loc.ip),
        _s(loc.site),
        _s(loc.region),
        tgt.system,
        _s(tgt.dataset),
        _s(tgt.resource),
        dest.kind if has_dest else "",
        _s(dest.name) if has_dest else "",
        _s(dest.region) if has_dest else "",
        ev.outcome,
        ev.attributes,
        p.id,
        p.seq,
        p.prev,
        ev.hash,
    )


def decode_row(value: bytes | None) -> tuple[Any, ...] | wire.Rejected:
    """What :func:`decode` answers, as the row the store inserts (:func:`~trail.storage.store.event_row`):
    the sink's path, which skips building the event's dicts when the fast path accepts."""
    if value is not None and len(value) <= MAX_EVENT_BYTES:
        ev = _fast_struct(value)
        if ev is not None:
            return _struct_row(ev)
    result = wire.decode(value)
    return result if isinstance(result, wire.Rejected) else event_row(result)


def decode(value: bytes | None) -> dict[str, Any] | wire.Rejected:
    """What :func:`trail.events.wire.decode` answers, by the fast path when it can."""
    if value is not None and len(value) <= MAX_EVENT_BYTES:
        ev = fast_decode(value)
        if ev is not None:
            return ev
    return wire.decode(value)


def decode_position(value: bytes | None) -> tuple[str, int, str, str] | wire.Rejected:
    """What :func:`decode` answers, reduced to ``(producer id, seq, hash, prev)``: the sealer's
    path (it validates every record as the sink does, and keeps only its place in the chain)."""
    if value is not None and len(value) <= MAX_EVENT_BYTES:
        ev = _fast_struct(value)
        if ev is not None:
            p = ev.producer
            return (p.id, p.seq, ev.hash, p.prev)
    result = wire.decode(value)
    if isinstance(result, wire.Rejected):
        return result
    pr = result["producer"]
    return (pr["id"], pr["seq"], result["hash"], pr["prev"])
