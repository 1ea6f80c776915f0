"""The one acceptance rule: whatever the sink would refuse, record() and trail emit refuse first,
with the field named; a bad event never takes good ones down with it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trail.config import load_settings
from trail.errors import ConfigError, TransportUnavailable, ValidationError
from trail.events.intake import parse_line
from trail.events.model import MAX_EVENT_BYTES, MAX_SUBJECTS, Policy, format_timestamp, validate_input, validate_wire
from trail.events.personal import luhn_valid, resident_id_valid
from trail.events.wire import Rejected, decode
from trail.sdk import policy_for
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport
from trail.service import emit_lines

KEY = b"0123456789abcdef" * 4
SOURCE = {"service": "test-svc", "host": "test-host", "environment": "test"}
FIELDS: dict[str, Any] = {
    "actor": {"kind": "staff", "id": "E-TEST-1"},
    "action": "view",
    "data_categories": ["name"],
    "purpose": "unit test",
    "legal_basis": "contract",
    "target": {"system": "crm"},
}
LONE = "\ud800"  # a lone UTF-16 surrogate: a Python str may hold it, UTF-8 cannot encode it


class Sink:
    """A transport that decodes every value exactly as the sink does."""

    def __init__(self) -> None:
        self.stored: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.gate: threading.Event | None = None
        self.fail_with: BaseException | None = None
        self.lock = threading.Lock()

    def __call__(self, _key: bytes, values: list[bytes]) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        with self.lock:
            for v in values:
                d = decode(v)
                if isinstance(d, Rejected):
                    self.rejected.append(d.reason)
                else:
                    self.stored.append(d)


@pytest.fixture()
def make_client(tmp_path: Path) -> Iterator[Callable[..., tuple[Client, Sink]]]:
    made: list[tuple[Client, Sink]] = []

    def make(**options: Any) -> tuple[Client, Sink]:
        sink = Sink()
        options.setdefault("retry_interval_s", 0.02)
        client = Client(
            service="test-svc",
            transport=CallbackTransport(sink),
            subject_key=KEY,
            spool_dir=tmp_path / "spool",
            host="test-host",
            environment="test",
            **options,
        )
        made.append((client, sink))
        return client, sink

    yield make
    for client, sink in made:
        if sink.gate is not None:
            sink.gate.set()
        sink.fail_with = None
        client.close(timeout=1)


def field_of(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return exc.value.field


# ---------------------------------------------------------------- text that is not UTF-8


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"purpose": f"ok {LONE} ok"}, "purpose", id="purpose"),
        pytest.param({"actor": {"kind": "staff", "id": f"E{LONE}"}}, "actor.id", id="actor-id"),
        pytest.param({"target": {"system": "crm", "dataset": LONE}}, "target.dataset", id="target-dataset"),
        pytest.param({"consent_ref": f"C-{LONE}"}, "consent_ref", id="consent-ref"),
        pytest.param({"attributes": {"ticket": f"T-{LONE}"}}, "attributes.ticket", id="attribute-value"),
        pytest.param({"attributes": {f"k{LONE}": "v"}}, "attributes.(key 1)", id="attribute-key"),
        pytest.param({"subject_ids": ["SUBJ-TEST-1", f"S{LONE}"]}, "subject_ids[1]", id="subject-id"),
    ],
)
def test_text_that_cannot_be_utf8_is_refused_naming_the_field(make_client: Any, changes: dict, field: str) -> None:
    """A lone surrogate anywhere (keys included) is refused by record() with the field named."""
    client, _ = make_client()
    with pytest.raises(ValidationError) as exc:
        client.record(**{**FIELDS, **changes})
    assert field_of(exc) == field
    assert "UTF-8" in exc.value.reason
    assert LONE not in str(exc.value)


def test_error_message_never_carries_an_unencodable_key() -> None:
    """An unknown field whose name holds a surrogate is refused without echoing it."""
    with pytest.raises(ValidationError) as exc:
        validate_input({**FIELDS, "source": SOURCE, f"x{LONE}": 1})
    str(exc.value).encode("utf-8")  # printable: the error message itself is valid text


# ---------------------------------------------------------------- the final wire size


def test_the_documented_maximum_of_subjects_fits_on_the_wire(make_client: Any) -> None:
    """MAX_SUBJECTS longest subject ids, with ordinary other fields, are stored by the sink."""
    client, sink = make_client()
    ids = [f"SUBJ-TEST-{i:04d}-".ljust(256, "x") for i in range(MAX_SUBJECTS)]
    client.record(**FIELDS, subject_ids=ids, attributes={"ticket": "T-1", "request": "R-1"})
    assert client.flush(5)
    assert sink.rejected == [] and len(sink.stored) == 1
    assert len(sink.stored[0]["subject_refs"]) == MAX_SUBJECTS


def test_more_than_the_documented_maximum_is_refused() -> None:
    """One subject id over MAX_SUBJECTS is refused at validation."""
    with pytest.raises(ValidationError) as exc:
        validate_input({**FIELDS, "source": SOURCE, "subject_ids": [f"S{i}" for i in range(MAX_SUBJECTS + 1)]})
    assert field_of(exc) == "subject_ids"


@pytest.mark.parametrize("attr_len", [900, 950, 980, 990, 1000, 1010, 1024])
def test_record_accepts_exactly_what_the_sink_stores_near_the_size_limit(make_client: Any, attr_len: int) -> None:
    """Near 64 KiB after pseudonymisation, record() accepts an event iff the sink stores it."""
    client, sink = make_client()
    ids = [f"S{i}" for i in range(MAX_SUBJECTS)]  # short raw ids: only their refs are big
    attrs = {f"k{i:02d}": "v" * attr_len for i in range(31)}
    try:
        client.record(**FIELDS, subject_ids=ids, attributes=attrs)
    except ValidationError as exc:
        assert "bytes on the wire" in exc.reason
        refused = True
    else:
        refused = False
    assert client.flush(5)
    assert sink.rejected == []
    assert len(sink.stored) == (0 if refused else 1)


def test_size_is_checked_after_pseudonymisation() -> None:
    """Short raw ids are measured as their 64-hex refs: an event fine in raw form but over on the wire is refused."""
    ids = [f"S{i}" for i in range(MAX_SUBJECTS)]
    attrs = {f"k{i:02d}": "v" * 1024 for i in range(31)}
    raw = {**FIELDS, "source": SOURCE, "subject_ids": ids, "attributes": attrs}
    assert len(json.dumps(raw)) < MAX_EVENT_BYTES  # it fits as handed over
    with pytest.raises(ValidationError, match="bytes on the wire"):
        validate_input(raw)


# ---------------------------------------------------------------- the worker isolates a bad event


@pytest.mark.allow_internal_errors
def test_worker_sets_aside_a_bad_event_and_sends_the_rest_of_its_batch(make_client: Any) -> None:
    """An event the worker cannot encode is set aside alone; its batch is sent and the chain has no gap."""
    client, sink = make_client(linger_s=0.2)
    sink.gate = threading.Event()
    client.record(**FIELDS, attributes={"n": "1"})
    time.sleep(0.05)  # the worker takes the first event and waits at the gate with it
    client.record(**FIELDS, attributes={"n": "2"})
    bad = validate_input({**FIELDS, "source": client.source})
    bad.pop("subject_ids")
    bad["subject_refs"] = []
    bad["attributes"] = {"n": LONE}  # as if the acceptance rule had missed it
    client._enqueue(bad)
    client.record(**FIELDS, attributes={"n": "3"})
    sink.gate.set()
    assert client.flush(5)
    assert sink.rejected == []
    assert [e["attributes"]["n"] for e in sink.stored] == ["1", "2", "3"]
    assert [e["producer"]["seq"] for e in sink.stored] == [1, 2, 3]
    assert sink.stored[2]["producer"]["prev"] == sink.stored[1]["hash"]
    assert client.stats.refused == 1


@pytest.mark.allow_internal_errors
def test_a_transport_that_fails_unexpectedly_loses_nothing(make_client: Any) -> None:
    """A transport raising something other than TransportUnavailable: the batch is spooled, then sent."""
    client, sink = make_client()
    sink.fail_with = RuntimeError("boom")
    client.record(**FIELDS, attributes={"n": "1"})
    deadline = time.monotonic() + 5
    while client.stats.spooled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.stats.spooled == 1
    sink.fail_with = None
    client.record(**FIELDS, attributes={"n": "2"})
    assert client.flush(5)
    assert [e["producer"]["seq"] for e in sink.stored] == [1, 2]


# ---------------------------------------------------------------- JSON input


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b'{"action": "view", "action": "delete"}', "action: is given twice", id="top-level"),
        pytest.param(b'{"actor": {"id": "E1", "id": "E2"}}', "id: is given twice", id="nested"),
        pytest.param(b'{"purpose": "caf\xe9"}', "not valid UTF-8 (byte 17 of the line)", id="latin-1"),
        pytest.param(b'{"purpose": "\xed\xa0\x80"}', "not valid UTF-8", id="encoded-surrogate"),
        pytest.param(b'{"record_count": NaN}', "NaN is not a JSON value", id="nan"),
        pytest.param(b"[1, 2]", "must be a JSON object, got list", id="not-an-object"),
    ],
)
def test_json_lines_are_read_strictly(line: bytes, expected: str) -> None:
    """Duplicate keys, bytes that are not UTF-8 and non-JSON constants are refused, never repaired."""
    with pytest.raises(ValidationError) as exc:
        parse_line(line)
    assert expected in str(exc.value)


def test_a_byte_order_mark_and_blank_lines_are_fine() -> None:
    """A UTF-8 byte order mark is not an error; a blank line is no event."""
    assert parse_line(b'\xef\xbb\xbf{"a": "b"}') == {"a": "b"}
    assert parse_line(b"   ") is None


def test_emit_reports_invalid_utf8_by_line_and_stores_no_replacement_character(make_client: Any) -> None:
    """trail emit: a line that is not UTF-8 is an error with its number; no U+FFFD reaches the store."""
    client, sink = make_client()
    good = json.dumps({**FIELDS, "attributes": {"n": "1"}}).encode()
    bad = json.dumps({**FIELDS, "purpose": "PLACEHOLDER"}).encode().replace(b"PLACEHOLDER", b"caf\xe9")
    dup = b'{"action": "view", ' + json.dumps(FIELDS).encode()[1:]
    surrogate = json.dumps({**FIELDS, "purpose": LONE}).encode()  # "\ud800" as a JSON escape
    result = emit_lines(client, [good, bad, dup, surrogate, good], flush_timeout=5)
    assert result.accepted == 2 and result.rejected == 3
    assert [e["line"] for e in result.errors] == [2, 3, 4]
    assert "not valid UTF-8" in result.errors[0]["error"]
    assert result.errors[1]["error"].startswith("action: is given twice")
    assert result.errors[2]["error"].startswith("purpose: contains text that cannot be encoded as UTF-8")
    assert len(sink.stored) == 2 and "\ufffd" not in json.dumps(sink.stored, ensure_ascii=False)


# ---------------------------------------------------------------- clocks


def _at(delta: timedelta) -> str:
    return format_timestamp(datetime.now(UTC) + delta)


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        pytest.param("1999-12-31T23:59:59.999999Z", "before 2000-01-01", id="before-2000"),
        pytest.param("0001-01-01T00:00:00Z", "before 2000-01-01", id="year-1"),
        pytest.param("0001-01-01T00:00:00+01:00", "outside the years 1 to 9999", id="year-0-in-utc"),
        pytest.param("9999-12-31T23:59:59.999999Z", "ahead of this host's clock", id="year-9999"),
        pytest.param("9999-12-31T23:59:59-01:00", "outside the years 1 to 9999", id="year-10000-in-utc"),
        # computed when the test runs, not when it is collected (a long run would make it the past)
        pytest.param(timedelta(minutes=11), "more than 10 minutes ahead of this host's clock", id="11-minutes"),
    ],
)
def test_wild_clocks_are_refused_with_a_message_that_says_so(occurred_at: str | timedelta, expected: str) -> None:
    """occurred_at before 2000 or more than the skew ahead of the host clock is refused, and says why."""
    if isinstance(occurred_at, timedelta):
        occurred_at = _at(occurred_at)
    with pytest.raises(ValidationError) as exc:
        validate_input({**FIELDS, "source": SOURCE, "occurred_at": occurred_at})
    assert exc.value.field == "occurred_at" and expected in exc.value.reason


def test_a_clock_a_little_ahead_or_far_behind_is_accepted() -> None:
    """Five minutes ahead (within the default skew) and an old event from 2001 are accepted."""
    for at in (_at(timedelta(minutes=5)), "2001-01-01T00:00:00.000000Z", _at(timedelta(days=-400))):
        assert validate_input({**FIELDS, "source": SOURCE, "occurred_at": at})["occurred_at"] == at


def test_the_allowed_skew_is_a_setting() -> None:
    """TRAIL_MAX_CLOCK_SKEW widens (or narrows) what is accepted."""
    settings = load_settings({"TRAIL_MAX_CLOCK_SKEW": "1h"})
    assert settings.max_clock_skew == 3600
    raw = {**FIELDS, "source": SOURCE, "occurred_at": _at(timedelta(minutes=30))}
    assert validate_input(raw, policy_for(settings))
    with pytest.raises(ValidationError, match="60 seconds"):
        validate_input(raw, Policy(max_clock_skew_s=60))


@pytest.mark.parametrize("value", ["ten minutes", "-5", "nan"])
def test_a_bad_skew_setting_names_the_variable(value: str) -> None:
    """A skew that is not a duration is refused at start-up, naming the variable."""
    with pytest.raises(ConfigError, match="TRAIL_MAX_CLOCK_SKEW"):
        load_settings({"TRAIL_MAX_CLOCK_SKEW": value})


def test_the_sink_refuses_only_what_the_store_cannot_hold() -> None:
    """On the wire a year-2300 timestamp is refused (the store holds 1900-2299); 2200 is not."""
    from trail.events.model import event_hash

    def wire(at: str) -> dict[str, Any]:
        ev = validate_input({**FIELDS, "source": SOURCE})
        ev.pop("subject_ids")
        ev.update(subject_refs=[], occurred_at=at, producer={"id": "p", "seq": 1, "prev": ""})
        ev["hash"] = event_hash(ev)
        return ev

    assert validate_wire(wire("2200-01-01T00:00:00.000000Z"))
    with pytest.raises(ValidationError, match="outside what the store can hold"):
        validate_wire(wire("2300-01-01T00:00:00.000000Z"))


# ---------------------------------------------------------------- personal data in attributes


def _resident_id(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


def _card(prefix: str) -> str:
    for d in "0123456789":
        if luhn_valid(prefix + d):
            return prefix + d
    raise AssertionError("unreachable")


GOOD_ID = _resident_id("11010519900307123")  # synthetic: a made-up sequence number
BAD_ID = GOOD_ID[:-1] + ("1" if GOOD_ID[-1] != "1" else "2")
GOOD_CARD = _card("622202123456789012")  # synthetic
BAD_CARD = GOOD_CARD[:-1] + str((int(GOOD_CARD[-1]) + 1) % 10)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        pytest.param("13800138000", "mobile", id="mobile"),
        pytest.param("call +86 138-0013-8000 back", "mobile", id="mobile-in-text"),
        pytest.param(GOOD_ID, "resident identity number", id="resident-id"),
        pytest.param(GOOD_ID[:-1] + GOOD_ID[-1].lower() if GOOD_ID[-1] == "X" else GOOD_ID, "resident", id="id-x"),
        pytest.param("reach me at someone@example.com", "e-mail", id="email"),
        pytest.param(GOOD_CARD, "bank card", id="card"),
        pytest.param(
            " ".join(GOOD_CARD[i : i + 4] for i in range(0, len(GOOD_CARD), 4)), "bank card", id="card-spaced"
        ),
    ],
)
def test_personal_data_in_attributes_is_refused_naming_the_key(value: str, kind: str) -> None:
    """A value shaped like a phone, resident id, e-mail or card number is refused: key named, value not echoed."""
    with pytest.raises(ValidationError) as exc:
        validate_input({**FIELDS, "source": SOURCE, "attributes": {"ticket": "T-1", "note": value}})
    assert exc.value.field == "attributes.note"
    assert kind in exc.value.reason
    assert value not in str(exc.value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("20231234567", id="11-digit-order-number"),
        pytest.param("12800138000", id="11-digits-starting-12"),
        pytest.param("ORD-202311301380013800099", id="long-digit-run"),
        pytest.param(BAD_ID, id="18-digits-bad-check-digit"),
        pytest.param(_resident_id("11010519901332123"), id="18-digits-no-such-date"),
        pytest.param(BAD_CARD, id="card-length-failing-luhn"),
        pytest.param("1732953600123", id="epoch-milliseconds"),
        pytest.param("T-1234", id="ticket"),
        pytest.param("user@localhost", id="at-without-domain"),
        pytest.param("0199a1b2-7c3d-7e4f-8a5b-123456789abc", id="uuid"),
        pytest.param("d071e6b3-d154-4890-8082-7add729de3db", id="uuid-with-digit-groups"),
        pytest.param("9ae2bdd7beedc2e766c6b76585530e16925115707dc7a06ab5ee4aa2776b2c7b", id="sha256-hex"),
    ],
)
def test_look_alikes_are_accepted(value: str) -> None:
    """Order numbers, ids with a wrong check digit, numbers failing Luhn and the like pass."""
    ev = validate_input({**FIELDS, "source": SOURCE, "attributes": {"ref": value}})
    assert ev["attributes"]["ref"] == value


def test_personal_data_in_consent_ref_is_refused() -> None:
    """consent_ref carries a reference to the consent record, not the person's phone number."""
    with pytest.raises(ValidationError) as exc:
        validate_input({**FIELDS, "source": SOURCE, "consent_ref": "13800138000"})
    assert exc.value.field == "consent_ref"


def test_the_personal_data_check_can_be_turned_off() -> None:
    """TRAIL_REFUSE_PERSONAL_DATA=false accepts such values (the organisation's choice)."""
    settings = load_settings({"TRAIL_REFUSE_PERSONAL_DATA": "false"})
    assert settings.refuse_personal_data is False
    ev = validate_input({**FIELDS, "source": SOURCE, "attributes": {"phone": "13800138000"}}, policy_for(settings))
    assert ev["attributes"]["phone"] == "13800138000"
    with pytest.raises(ConfigError, match="TRAIL_REFUSE_PERSONAL_DATA"):
        load_settings({"TRAIL_REFUSE_PERSONAL_DATA": "maybe"})


def test_check_digit_helpers() -> None:
    """GB 11643 and Luhn helpers agree with the synthetic values built above."""
    assert resident_id_valid(GOOD_ID) and not resident_id_valid(BAD_ID)
    assert luhn_valid(GOOD_CARD) and not luhn_valid(BAD_CARD)


def test_transport_unavailable_is_still_the_ordinary_path(make_client: Any) -> None:
    """A broker that is down still spools and replays (the isolation did not change that)."""
    client, sink = make_client()
    sink.fail_with = TransportUnavailable("down")
    client.record(**FIELDS)
    deadline = time.monotonic() + 5
    while client.stats.spooled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.fail_with = None
    assert client.flush(5) and len(sink.stored) == 1


def test_the_access_log_records_a_read_whose_request_carried_personal_data(tmp_path: Path) -> None:
    """SQL text with a phone number, a purpose with a lone surrogate: the read is recorded, the value withheld."""
    from trail.access.principals import Principal
    from trail.access.recorder import AccessNote, AccessRecorder
    from trail.testing import RecordingTransport, test_client

    transport = RecordingTransport()
    client = test_client(tmp_path, transport, service="trail-access")
    recorder = AccessRecorder(client)
    note = AccessNote(dataset="sql", purpose=f"look {LONE}", attributes={"sql": "SELECT 1 WHERE x = '13800138000'"})
    principal = Principal(name="analyst-1", kind="staff", roles=("analyst",))
    recorder.record(principal=principal, role="analyst", method="POST", endpoint="/v1/sql", status=200, ip=None,
                    request_id="r1", note=note)  # fmt: skip
    assert client.flush(5)
    assert recorder.failed == 0 and recorder.recorded == 1
    (ev,) = transport.events
    assert ev["attributes"]["sql"] == "(withheld: looks like a mainland mobile phone number)"
    assert "13800138000" not in json.dumps(transport.events)
    client.close()


def test_a_skew_of_centuries_means_no_bound_not_a_crash() -> None:
    """TRAIL_MAX_CLOCK_SKEW=1e12 accepts a far-future time instead of overflowing."""
    raw = {**FIELDS, "source": SOURCE, "occurred_at": "2999-01-01T00:00:00.000000Z"}
    assert validate_input(raw, Policy(max_clock_skew_s=1e12))["occurred_at"] == raw["occurred_at"]


@pytest.mark.allow_internal_errors
def test_emit_never_reports_accepted_an_event_the_worker_could_not_send(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should validation and sending ever disagree, trail emit reports that line refused, not accepted."""
    import trail.sdk.client as client_module

    monkeypatch.setattr(client_module, "MAX_EVENT_BYTES", 1500)  # the worker now refuses big events
    client, sink = make_client()
    small = json.dumps({**FIELDS, "attributes": {"n": "1"}}).encode()
    big = json.dumps({**FIELDS, "purpose": "x" * 1000}).encode()
    result = emit_lines(client, [small, big, small], flush_timeout=5)
    assert (result.accepted, result.rejected) == (2, 1)
    assert result.errors[0]["line"] == 2 and "could not be sent" in result.errors[0]["error"]
    assert len(sink.stored) == 2 and [e["producer"]["seq"] for e in sink.stored] == [1, 2]


def test_a_purpose_of_only_spaces_is_no_purpose() -> None:
    """A blank purpose says nothing about why data is handled: refused where the event is born."""
    with pytest.raises(ValidationError) as exc:
        validate_input({**FIELDS, "source": SOURCE, "purpose": "   \t"})
    assert exc.value.field == "purpose" and "spaces" in exc.value.reason
