"""Validation and canonical encoding of the v1 audit event (DESIGN.md §3).

Two stages share one validator:

* ``validate_input`` checks what a service hands the SDK: raw ``subject_ids`` are allowed
  (the SDK pseudonymises them before the event leaves the process), ``producer`` and
  ``hash`` must be absent, and missing ``event_id``/``occurred_at``/``outcome`` are filled.
* ``validate_wire`` checks what arrives from the broker: ``subject_refs`` only, ``producer``
  and ``hash`` present, and the hash must match the canonical encoding.

This is trail's one acceptance rule: ``record()``, ``trail emit`` and ``POST /v1/events`` (all
through the SDK's ``validate_input``) refuse, with the field named, everything the sink
(``validate_wire``) would refuse, and more:

* text that cannot be encoded as UTF-8 (a lone surrogate), anywhere, keys included;
* an event whose final wire encoding, after pseudonymisation, with ``producer`` and ``hash``,
  would be over ``MAX_EVENT_BYTES`` (what the sink dead-letters);
* ``occurred_at`` before 2000-01-01, or more than the policy's clock skew (default 10 minutes,
  ``TRAIL_MAX_CLOCK_SKEW``) ahead of this host's clock; the sink, which cannot know the
  producer's clock, refuses only what the store cannot hold (before 1900 or after 2299);
* ``attributes`` values (and ``consent_ref``) that look like personal data
  (:mod:`trail.events.personal`), unless the policy turns that off.

Errors name the field and the reason. They echo a value only for enumerations and only a
short prefix of it, never free text, identifiers or anything that could be personal data.

This module does no I/O and is on the SDK's hot path: keep the per-event work small.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NotRequired, TypedDict, get_args

import orjson

from trail.errors import UnknownSchemaError, ValidationError
from trail.events.personal import looks_like_personal_data

SCHEMA_V1: Final = "trail.audit/v1"
MAX_EVENT_BYTES: Final = 64 * 1024
#: 500 subject refs take 33,499 bytes on the wire (64 hex characters, quotes and a comma each),
#: which leaves about half of MAX_EVENT_BYTES to the rest of the event; 1,000 (the first
#: documented maximum) took 66,999 bytes and could never fit.
MAX_SUBJECTS: Final = 500
#: What the sink still takes from producers of the first contract (the byte limit applies too).
WIRE_MAX_SUBJECTS: Final = 1000
MAX_ATTRIBUTES: Final = 32
MAX_ID_LEN: Final = 256
MAX_TEXT_LEN: Final = 1024
MAX_ATTR_KEY_LEN: Final = 64

#: The enumerations of the v1 event as types (the SDK's keyword arguments are typed with them);
#: the tuples below are built from them, so the two never disagree.
ActorKind = Literal["staff", "service", "agent", "subject", "system"]
Action = Literal[
    "collect",
    "view",
    "query",
    "use",
    "modify",
    "correct",
    "copy",
    "export",
    "print",
    "transfer",
    "provide",
    "disclose",
    "delete",
    "destroy",
    "deidentify",
    "anonymize",
    "restore",
    "consent_grant",
    "consent_withdraw",
    "access_request",
]
DataCategory = Literal[
    "name",
    "birth_date",
    "id_number",
    "address",
    "phone",
    "email",
    "account",
    "credential",
    "location",
    "device_id",
    "communication",
    "marital_status",
    "employment",
    "income",
    "financial",
    "health",
    "biometric",
    "religion",
    "political",
    "sexual_life",
    "criminal_record",
    "minor",
    "other",
]
LegalBasis = Literal["consent", "contract", "hr", "public_duty", "news", "disclosed", "law"]
Outcome = Literal["success", "denied", "error"]
DestinationKind = Literal["file", "media", "third_party", "public", "abroad"]

ACTOR_KINDS: Final[tuple[ActorKind, ...]] = get_args(ActorKind)
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
DATA_CATEGORIES: Final[tuple[DataCategory, ...]] = get_args(DataCategory)
#: Shenzhen Art. 18-20, Dalian 6.3.3: explicit consent required.
SENSITIVE_CATEGORIES: Final = frozenset(
    {
        "biometric",
        "health",
        "religion",
        "political",
        "sexual_life",
        "criminal_record",
        "minor",
        "financial",
        "location",
        "id_number",
    }
)
LEGAL_BASES: Final[tuple[LegalBasis, ...]] = get_args(LegalBasis)
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
DESTINATION_KINDS: Final[tuple[DestinationKind, ...]] = get_args(DestinationKind)
#: Actions that move data somewhere; ``destination`` is meaningful for these.
MOVING_ACTIONS: Final = frozenset({"copy", "export", "print", "transfer", "provide", "disclose"})


class Actor(TypedDict):
    """Who performed the operation (MIIT Art. 13(6) "personnel")."""

    kind: ActorKind
    id: str
    role: NotRequired[str]
    department: NotRequired[str]


class Source(TypedDict):
    """Where the operation ran; the SDK fills it from its configuration."""

    service: str
    host: str
    environment: str


class Location(TypedDict, total=False):
    """MIIT Art. 13(6) "place"."""

    ip: str
    site: str
    region: str


class Target(TypedDict):
    """The data store that was touched."""

    system: str
    dataset: NotRequired[str]
    resource: NotRequired[str]


class Destination(TypedDict):
    """Where data went, for copy, export, print, transfer, provide and disclose."""

    kind: DestinationKind
    name: NotRequired[str]
    region: NotRequired[str]


class EventFields(TypedDict, total=False):
    """The keyword arguments of ``Client.record`` (DESIGN.md §3).

    None is required by the type, because a client's ``defaults`` may supply any of them;
    ``record`` still refuses an event that lacks ``actor``, ``action``, ``data_categories``,
    ``purpose``, ``legal_basis`` or ``target`` once the defaults are applied.
    """

    schema: str
    event_id: str
    occurred_at: str | datetime
    actor: Actor
    action: Action
    subject_ids: list[str]
    record_count: int
    data_categories: list[DataCategory]
    purpose: str
    legal_basis: LegalBasis
    consent_ref: str
    source: Source
    location: Location
    target: Target
    destination: Destination
    outcome: Outcome
    attributes: dict[str, str]


_ACTOR_KINDS = frozenset(ACTOR_KINDS)
_ACTIONS = frozenset(ACTIONS)
_CATEGORIES = frozenset(DATA_CATEGORIES)
_LEGAL = frozenset(LEGAL_BASES)
_OUTCOMES = frozenset(OUTCOMES)
_DEST_KINDS = frozenset(DESTINATION_KINDS)

_TOP_FIELDS_COMMON = frozenset(
    {
        "schema",
        "event_id",
        "occurred_at",
        "actor",
        "action",
        "record_count",
        "data_categories",
        "purpose",
        "legal_basis",
        "consent_ref",
        "source",
        "location",
        "target",
        "destination",
        "outcome",
        "attributes",
    }
)
_TOP_INPUT = _TOP_FIELDS_COMMON | {"subject_ids"}
_TOP_WIRE = _TOP_FIELDS_COMMON | {"subject_refs", "producer", "hash"}

# (field name, required, max length) for each nested object.
_ACTOR_FIELDS: Final = {"kind": True, "id": True, "role": False, "department": False}
_SOURCE_FIELDS: Final = {"service": True, "host": True, "environment": True}
_LOCATION_FIELDS: Final = {"ip": False, "site": False, "region": False}
_TARGET_FIELDS: Final = {"system": True, "dataset": False, "resource": False}
_DEST_FIELDS: Final = {"kind": True, "name": False, "region": False}
_PRODUCER_FIELDS: Final = frozenset({"id", "seq", "prev"})

#: The earliest ``occurred_at`` accepted from a service (nothing trail records predates it).
EARLIEST_OCCURRED_AT: Final = "2000-01-01T00:00:00.000000Z"
#: What the store's DateTime64(6) column holds; the sink refuses anything outside it.
STORABLE_FROM: Final = "1900-01-01T00:00:00.000000Z"
STORABLE_UNTIL: Final = "2299-12-31T23:59:59.999999Z"
DEFAULT_MAX_CLOCK_SKEW_S: Final = 600.0
#: Bytes the worker adds after validation besides the producer id: ``,"producer":{"id":"",
#: "prev":"<64 hex>","seq":<up to 20 digits>}`` and ``,"hash":"<64 hex>"``.
_PRODUCER_HASH_BYTES: Final = len(',"producer":{"id":"","prev":"","seq":}') + 64 + 20 + len(',"hash":""') + 64
#: One subject ref on the wire: 64 hex characters in quotes, and a comma.
_REF_BYTES: Final = 64 + 2 + 1


@dataclass(frozen=True)
class Policy:
    """The host-dependent part of the acceptance rule, for events a service hands over.

    ``max_clock_skew_s``: how far ``occurred_at`` may be ahead of this host's clock.
    ``refuse_personal_data``: refuse ``attributes`` values and ``consent_ref`` that look like
    personal data. Both come from the settings (``TRAIL_MAX_CLOCK_SKEW``,
    ``TRAIL_REFUSE_PERSONAL_DATA``); the defaults are the settings' defaults.
    """

    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    refuse_personal_data: bool = True


DEFAULT_POLICY: Final = Policy()

_ECHO_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_./0123456789")
_TS_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_UUID_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def _show(value: object) -> str:
    """A safe rendering of a wrong enumeration value for an error message.

    Only short words that look like an enum member (lowercase letters, digits, '_') are
    echoed; anything else could be personal data typed into the wrong field.
    """
    if isinstance(value, str):
        if (
            0 < len(value) <= 32
            and all(c in _ECHO_CHARS for c in value)
            and any("a" <= c <= "z" for c in value)
            and not any(c.isdigit() for c in value.split("/")[0])
        ):
            return repr(value)
        return f"a string of {len(value)} characters"
    return f"a {_kind(value)}"


def _encodable(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (Python strings may hold lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_key(key: object) -> str:
    """A key as it may appear in an error message (a field path)."""
    if isinstance(key, str) and 0 < len(key) <= 64 and key.isprintable() and _encodable(key):
        return key
    return "(a key that cannot be shown)"


_NOT_UTF8: Final = "contains text that cannot be encoded as UTF-8 (a lone surrogate); send valid Unicode text"


def _find_unencodable(field: str, value: object) -> str | None:
    """The path of the first string (or key) in ``value`` that is not encodable as UTF-8."""
    if isinstance(value, str):
        return None if _encodable(value) else field
    if isinstance(value, dict):
        for i, (k, v) in enumerate(value.items()):
            if isinstance(k, str) and not _encodable(k):
                return f"{field}.(key {i + 1})" if field else f"(key {i + 1})"
            found = _find_unencodable(f"{field}.{printable_key(k)}" if field else printable_key(k), v)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_unencodable(f"{field}[{i}]", item)
            if found is not None:
                return found
    return None


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _enum(field: str, value: object, allowed: frozenset[str], ordered: tuple[str, ...]) -> str:
    if value.__class__ is not str or value not in allowed:
        raise ValidationError(field, f"{_show(value)} is not one of {', '.join(ordered)}")
    return value


def _text(field: str, value: object, limit: int = MAX_ID_LEN, *, empty_ok: bool = False) -> str:
    if value.__class__ is not str:
        raise ValidationError(field, f"must be a string, got {_kind(value)}")
    if not value and not empty_ok:
        raise ValidationError(field, "must not be empty")
    if len(value) > limit:
        raise ValidationError(field, f"is longer than {limit} characters")
    return value


def _object(field: str, value: object, spec: Mapping[str, bool], limit: int = MAX_ID_LEN) -> dict[str, str]:
    if value.__class__ is not dict:
        raise ValidationError(field, f"must be an object, got {_kind(value)}")
    obj: dict[str, Any] = value
    out: dict[str, str] = {}
    for key, val in obj.items():
        if key not in spec:
            raise ValidationError(f"{field}.{printable_key(key)}", f"unknown field; allowed: {', '.join(spec)}")
        if val is None and not spec[key]:
            continue
        if val.__class__ is not str or not val or len(val) > limit:
            _text(f"{field}.{key}", val, limit)  # raises, naming the field (built only then)
        out[key] = val
    for key, required in spec.items():
        if required and key not in out:
            raise ValidationError(f"{field}.{key}", "is required")
    return out


class _RandomPool:
    """os.urandom read 4 KiB at a time: one system call (which releases the GIL and makes the
    caller queue for it again) per 400 ids instead of one per id. Still the OS's CSPRNG."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._buf = b""
        self._pos = 0

    def take10(self) -> bytes:
        with self._lock:
            if self._pos + 10 > len(self._buf):
                self._buf, self._pos = os.urandom(4000), 0
            out = self._buf[self._pos : self._pos + 10]
            self._pos += 10
            return out


_random = _RandomPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.reset)  # a child must not reuse the parent's bytes


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_random.take10(), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0x2 << 62  # RFC 4122 variant
    value |= rand & 0x3FFFFFFFFFFFFFFF  # rand_b, 62 bits
    h = f"{value:032x}"  # as str(uuid.UUID(int=value)), without building the object
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_second: tuple[int, str] = (-1, "")


def now_timestamp() -> str:
    """The current time as :func:`format_timestamp` writes it; the text of the second is made
    once a second (a ``datetime`` per event cost a tenth of ``record()``'s validation)."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).replace(tzinfo=None).isoformat(timespec="seconds"))
    return f"{cached[1]}.{us:06d}Z"


def format_timestamp(dt: datetime) -> str:
    """RFC 3339, UTC, microseconds: ``2026-11-22T10:05:27.123456Z``."""
    if dt.tzinfo is None:
        raise ValidationError("occurred_at", "must carry a UTC offset (for example ...Z)")
    # isoformat, not strftime: strftime writes the year 1 as "1", not "0001"
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(field: str, value: object) -> datetime:
    """Parse an RFC 3339 timestamp with an offset; the result is in UTC."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        if len(value) > 40:
            raise ValidationError(field, "is not an RFC 3339 timestamp")
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                field, "is not an RFC 3339 timestamp (expected like 2026-11-22T10:05:27.123456Z)"
            ) from None
    else:
        raise ValidationError(field, f"must be an RFC 3339 timestamp string, got {_kind(value)}")
    if dt.tzinfo is None:
        raise ValidationError(field, "must carry a UTC offset (for example ...Z)")
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValidationError(field, "is outside the years 1 to 9999 once converted to UTC") from None


def _normalise_timestamp(field: str, value: object) -> str:
    if value.__class__ is str:
        m = _TS_CANONICAL.match(value)
        if m is not None:
            # Fast path: already canonical (zero-padded, UTC, microseconds); still check the date exists.
            try:
                datetime.fromisoformat(value[:-1])  # validates the fields (a 30 February is refused)
            except ValueError:
                raise ValidationError(field, "is not a valid date and time") from None
            return value
    return format_timestamp(parse_timestamp(field, value))


def _event_id(value: object) -> str:
    if value.__class__ is not str:
        raise ValidationError("event_id", f"must be a UUID string, got {_kind(value)}")
    text: str = value
    if _UUID_CANONICAL.match(text) is not None:
        return text  # already lowercase canonical form (what the SDK sends)
    if len(text) > 45:
        raise ValidationError("event_id", "is not a UUID")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValidationError("event_id", "is not a UUID") from None


def _check_clock(occurred_at: str, policy: Policy | None) -> None:
    """``occurred_at`` (canonical form, which orders as text) within the accepted range."""
    if policy is None:  # the sink: what the store can hold
        if not STORABLE_FROM <= occurred_at <= STORABLE_UNTIL:
            raise ValidationError("occurred_at", "is outside what the store can hold (years 1900 to 2299)")
        return
    if occurred_at < EARLIEST_OCCURRED_AT:
        raise ValidationError(
            "occurred_at", "is before 2000-01-01; give the time the operation happened, in UTC (check the clock)"
        )
    if occurred_at > _latest_accepted(policy.max_clock_skew_s):
        raise ValidationError(
            "occurred_at",
            f"is more than {_duration(policy.max_clock_skew_s)} ahead of this host's clock "
            "(TRAIL_MAX_CLOCK_SKEW); give the time the operation happened, and check the clock",
        )


_latest_cache: tuple[int, float, str] = (0, 0.0, "")


def _latest_accepted(skew_s: float) -> str:
    """The latest acceptable ``occurred_at`` (canonical text): now plus the skew, rounded up to
    the next second, computed once per second."""
    global _latest_cache
    second = int(time.time())
    cached_second, cached_skew, text = _latest_cache
    if cached_second != second or cached_skew != skew_s:
        try:
            text = format_timestamp(datetime.fromtimestamp(second + 1, UTC) + timedelta(seconds=skew_s))
        except OverflowError:  # a skew setting of centuries: no bound
            text = "9999-12-31T23:59:59.999999Z"
        _latest_cache = (second, skew_s, text)
    return text


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{int(seconds // 60)} minutes"
    return f"{seconds:g} seconds"


def _check_personal_data(field: str, value: str) -> None:
    kind = looks_like_personal_data(value)
    if kind is not None:
        raise ValidationError(
            field,
            f"looks like {kind}; attributes and consent_ref carry references (a ticket or request id), "
            "never personal data (turn this check off with TRAIL_REFUSE_PERSONAL_DATA=false)",
        )


def _validate_common(raw: Mapping[str, Any], top: frozenset[str], policy: Policy | None) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValidationError("", f"an audit event must be a JSON object, got {_kind(raw)}")
    schema = raw.get("schema", SCHEMA_V1)
    if schema != SCHEMA_V1:
        raise UnknownSchemaError("schema", f"unknown schema {_show(schema)}; this trail accepts {SCHEMA_V1}")
    for key in raw:
        if key not in top:
            raise ValidationError(printable_key(key), "unknown field for trail.audit/v1")

    ev: dict[str, Any] = {"schema": SCHEMA_V1}
    event_id = raw.get("event_id")
    ev["event_id"] = new_event_id() if event_id is None else _event_id(event_id)
    occurred = raw.get("occurred_at")
    if occurred is None:
        ev["occurred_at"] = now_timestamp()
    else:
        ev["occurred_at"] = _normalise_timestamp("occurred_at", occurred)
        _check_clock(ev["occurred_at"], policy)

    actor = _object("actor", raw.get("actor"), _ACTOR_FIELDS)
    _enum("actor.kind", actor["kind"], _ACTOR_KINDS, ACTOR_KINDS)
    ev["actor"] = actor
    action = _enum("action", raw.get("action"), _ACTIONS, ACTIONS)
    ev["action"] = action

    cats = raw.get("data_categories")
    if cats.__class__ is not list:
        raise ValidationError("data_categories", f"must be a list of categories, got {_kind(cats)}")
    if not cats:
        raise ValidationError("data_categories", "must name at least one category (use 'other' if none fits)")
    seen: list[str] = []
    for i, cat in enumerate(cats):
        if cat.__class__ is not str or cat not in _CATEGORIES:
            _enum(f"data_categories[{i}]", cat, _CATEGORIES, DATA_CATEGORIES)  # raises, naming the item
        if cat not in seen:
            seen.append(cat)
    ev["data_categories"] = seen

    ev["purpose"] = _text("purpose", raw.get("purpose"), MAX_TEXT_LEN)
    ev["legal_basis"] = _enum("legal_basis", raw.get("legal_basis"), _LEGAL, LEGAL_BASES)
    consent_ref = raw.get("consent_ref")
    if consent_ref is not None:
        ev["consent_ref"] = _text("consent_ref", consent_ref)
        if policy is not None and policy.refuse_personal_data:
            _check_personal_data("consent_ref", consent_ref)
    ev["source"] = _object("source", raw.get("source"), _SOURCE_FIELDS)
    location = raw.get("location")
    ev["location"] = {} if location is None else _object("location", location, _LOCATION_FIELDS)
    ev["target"] = _object("target", raw.get("target"), _TARGET_FIELDS)
    dest = raw.get("destination")
    if dest is not None:
        d = _object("destination", dest, _DEST_FIELDS)
        _enum("destination.kind", d["kind"], _DEST_KINDS, DESTINATION_KINDS)
        ev["destination"] = d
    outcome = raw.get("outcome")
    ev["outcome"] = "success" if outcome is None else _enum("outcome", outcome, _OUTCOMES, OUTCOMES)

    attrs = raw.get("attributes")
    if attrs is not None:
        if attrs.__class__ is not dict:
            raise ValidationError("attributes", f"must be an object of string to string, got {_kind(attrs)}")
        if len(attrs) > MAX_ATTRIBUTES:
            raise ValidationError("attributes", f"has more than {MAX_ATTRIBUTES} keys")
        refuse_pi = policy is not None and policy.refuse_personal_data
        for k, v in attrs.items():
            if k.__class__ is not str or not k or len(k) > MAX_ATTR_KEY_LEN:
                raise ValidationError("attributes", f"keys must be 1 to {MAX_ATTR_KEY_LEN} characters")
            if v.__class__ is not str:
                raise ValidationError(f"attributes.{printable_key(k)}", f"must be a string, got {_kind(v)}")
            if len(v) > MAX_TEXT_LEN:
                raise ValidationError(f"attributes.{printable_key(k)}", f"is longer than {MAX_TEXT_LEN} characters")
            if refuse_pi:
                _check_personal_data(f"attributes.{printable_key(k)}", v)
        ev["attributes"] = dict(attrs)
    else:
        ev["attributes"] = {}
    return ev


def _record_count(raw: Mapping[str, Any], n_subjects: int) -> int:
    count = raw.get("record_count")
    if count is None:
        return n_subjects
    if count.__class__ is not int:
        raise ValidationError("record_count", f"must be an integer, got {_kind(count)}")
    if count < 0:
        raise ValidationError("record_count", "must be 0 or more")
    if count > 10**12:
        raise ValidationError("record_count", "is larger than 10^12; split the operation")
    return count


def _list_of_ids(field: str, value: object, limit: int = MAX_SUBJECTS) -> list[str]:
    if value.__class__ is not list:
        raise ValidationError(field, f"must be a list of strings, got {_kind(value)}")
    items: list[Any] = value
    if len(items) > limit:
        raise ValidationError(field, f"lists more than {limit} subjects; give record_count for bulk operations")
    for i, item in enumerate(items):
        if item.__class__ is not str or not item:
            raise ValidationError(f"{field}[{i}]", "must be a non-empty string")
        if len(item) > MAX_ID_LEN:
            raise ValidationError(f"{field}[{i}]", f"is longer than {MAX_ID_LEN} characters")
        if not _encodable(item):
            raise ValidationError(f"{field}[{i}]", _NOT_UTF8)
    return items


def validate_input(
    raw: Mapping[str, Any],
    policy: Policy = DEFAULT_POLICY,
    *,
    producer_id: str | None = None,
    extra_refs: int = 0,
) -> dict[str, Any]:
    """Validate an event as a service hands it over; returns a normalised copy.

    The copy keeps raw ``subject_ids`` (the SDK replaces them before sending). Missing
    ``schema``, ``event_id``, ``occurred_at``, ``outcome`` and ``record_count`` are filled;
    ``source`` must be present (the SDK fills it from its configuration first).

    The size is checked as the sink will see it: each subject id replaced by its 64-hex ref
    (plus ``extra_refs`` refs given as such), ``producer`` (of ``producer_id``, else the longest
    one allowed) and ``hash`` added.
    """
    ev = _validate_common(raw, _TOP_INPUT, policy)
    if not ev["purpose"].strip():
        # blank is no purpose (PIPL Art. 6: a specific purpose); stored blank purposes stay readable
        raise ValidationError("purpose", "must say why the data is handled, not only spaces")
    subjects = raw.get("subject_ids")
    ids = [] if subjects is None else _list_of_ids("subject_ids", subjects)
    ev["subject_ids"] = ids
    n_refs = len(ids) + extra_refs
    if n_refs > MAX_SUBJECTS:
        raise ValidationError(
            "subject_ids", f"lists more than {MAX_SUBJECTS} subjects; give record_count for bulk operations"
        )
    ev["record_count"] = _record_count(raw, len(ids))
    ev.pop("subject_ids")
    try:
        body = canonical_bytes(ev)
    except orjson.JSONEncodeError:
        bad = _find_unencodable("", ev)
        raise ValidationError(bad or "", _NOT_UTF8) from None
    finally:
        ev["subject_ids"] = ids
    pid_bytes = 4 * MAX_ID_LEN if producer_id is None else len(orjson.dumps(producer_id)) - 2
    size = len(body) + len(',"subject_refs":[]') + n_refs * _REF_BYTES - (1 if n_refs else 0)
    size += _PRODUCER_HASH_BYTES + pid_bytes
    if size > MAX_EVENT_BYTES:
        raise ValidationError(
            "",
            f"the event would be {size} bytes on the wire (subject ids pseudonymised), over the "
            f"{MAX_EVENT_BYTES} byte limit; list fewer subject_ids (give record_count), or shorten "
            "purpose and attributes",
        )
    return ev


def validate_wire(raw: Mapping[str, Any], *, check_hash: bool = True) -> dict[str, Any]:
    """Validate an event as it arrives from the broker: pseudonymised, sequenced, hashed.

    Returns the normalised event, including ``producer`` and ``hash``. Raises
    :class:`ValidationError` when anything is off, including a hash that does not match the
    canonical encoding of the rest of the event.
    """
    if isinstance(raw, Mapping) and "subject_ids" in raw:
        raise ValidationError("subject_ids", "raw subject ids must never leave the service; send subject_refs")
    ev = _validate_common(raw, _TOP_WIRE, None)
    refs = raw.get("subject_refs")
    ref_list = [] if refs is None else _list_of_ids("subject_refs", refs, WIRE_MAX_SUBJECTS)
    for i, ref in enumerate(ref_list):
        if _HEX64.match(ref) is None:
            raise ValidationError(f"subject_refs[{i}]", "must be 64 lowercase hex characters (HMAC-SHA256)")
    ev["subject_refs"] = ref_list
    ev["record_count"] = _record_count(raw, len(ref_list))
    producer = raw.get("producer")
    if producer.__class__ is not dict:
        raise ValidationError("producer", f"must be an object with id, seq, prev, got {_kind(producer)}")
    for key in producer:
        if key not in _PRODUCER_FIELDS:
            raise ValidationError(f"producer.{key}", "unknown field; allowed: id, seq, prev")
    pid = _text("producer.id", producer.get("id"))
    seq = producer.get("seq")
    if seq.__class__ is not int or seq < 1:
        raise ValidationError("producer.seq", "must be an integer from 1")
    prev = producer.get("prev")
    if prev.__class__ is not str or (prev and _HEX64.match(prev) is None):
        raise ValidationError("producer.prev", "must be the previous event's hash (64 hex) or empty")
    if seq == 1 and prev:
        raise ValidationError("producer.prev", "must be empty for seq 1")
    ev["producer"] = {"id": pid, "seq": seq, "prev": prev}
    digest = raw.get("hash")
    if digest.__class__ is not str or _HEX64.match(digest) is None:
        raise ValidationError("hash", "must be 64 lowercase hex characters (SHA-256)")
    if check_hash and event_hash(ev) != digest:
        # The hash covers the normalised event; the SDK sends events already normalised.
        raise ValidationError("hash", "does not match the canonical encoding of the event")
    ev["hash"] = digest
    return ev


_OPTS = orjson.OPT_SORT_KEYS


def canonical_bytes(event: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON, sorted keys, no insignificant whitespace (the hashed encoding).

    Byte for byte what ``json.dumps(event, ensure_ascii=False, sort_keys=True,
    separators=(",", ":"))`` gives for the values an event holds (strings, integers, lists,
    objects); orjson only does it several times faster. A test keeps the two equal.
    """
    return orjson.dumps(event, option=_OPTS)


def event_hash(event_without_hash: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical encoding of an event that has no ``hash`` field."""
    return hashlib.sha256(canonical_bytes(event_without_hash)).hexdigest()
