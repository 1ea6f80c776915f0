"""The redaction processor: no subject ids, attributes or PI-looking strings reach the logs.

The phone, identity-number and e-mail strings below are made-up values in the shape the
masking patterns look for; they are the only PI-shaped data in the unit tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from trail.logging import get_logger, redact
from trail.testing import capture_logs

MOBILE = "13800138000"
ID_NUMBER = "123456200001011234"
ID_NUMBER_X = "12345620000101123X"
EMAIL = "someone@example.com"


def run(**event_dict: Any) -> dict[str, Any]:
    return dict(redact(None, "info", dict(event_dict)))


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("subject_ids", id="subject_ids"),
        pytest.param("subject_id", id="subject_id"),
        pytest.param("attributes", id="attributes"),
        pytest.param("phone", id="phone"),
        pytest.param("email", id="email"),
        pytest.param("payload", id="payload"),
        pytest.param("value", id="value"),
    ],
)
def test_personal_data_keys_are_dropped(key: str) -> None:
    """A key that carries personal data loses its value, whatever the value's type."""
    out = run(event="sdk.test", **{key: ["SUBJ-TEST-0001", {"ticket": "SUBJ-TEST-0002"}]})
    assert "SUBJ-TEST" not in json.dumps(out)
    assert out.get(key, "[redacted]") == "[redacted]"
    assert out["event"] == "sdk.test"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        pytest.param(f"call back on {MOBILE} today", MOBILE, id="mobile"),
        pytest.param(f"tel:{MOBILE}", MOBILE, id="mobile-after-colon"),
        pytest.param(f"holder {ID_NUMBER}.", ID_NUMBER, id="id-number"),
        pytest.param(f"holder {ID_NUMBER_X} checked", ID_NUMBER_X, id="id-number-x"),
        pytest.param(f"holder {ID_NUMBER_X.lower()} checked", ID_NUMBER_X.lower(), id="id-number-lower-x"),
        pytest.param(f"mail to <{EMAIL}>", EMAIL, id="email"),
        pytest.param("mail first.last+tag@mail.example.cn", "first.last+tag", id="email-plus-subdomain"),
        pytest.param(f"call +86{MOBILE}", MOBILE, id="mobile-with-country-code"),
    ],
)
def test_pi_inside_strings_is_masked(text: str, secret: str) -> None:
    """A phone number, identity number or e-mail inside a string value is masked; the rest stays."""
    out = run(event="sdk.test", detail=text)
    assert secret not in out["detail"]
    assert "[redacted]" in out["detail"]


def test_masking_applies_to_the_event_text_too() -> None:
    """The log message itself is masked like any other string."""
    assert run(event=f"lookup of {MOBILE} failed")["event"] == "lookup of [redacted] failed"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("batch of 20000 rows", id="count"),
        pytest.param("request 12345678901234567890", id="20-digit-request-id"),
        pytest.param("offset 1380013800", id="10-digit"),
        pytest.param("trace 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", id="uuid"),
        pytest.param("producer crm/E1001", id="producer"),
    ],
)
def test_ordinary_values_are_kept(text: str) -> None:
    """Counts, long request ids and UUIDs that are not PI-shaped pass unchanged."""
    assert run(event="sdk.test", detail=text)["detail"] == text


def test_non_string_values_are_kept() -> None:
    """Numbers and booleans under ordinary keys pass unchanged."""
    out = run(event="sink.batch_flushed", rows=13800138000, ok=True)
    assert out["rows"] == 13800138000
    assert out["ok"] is True


def test_pi_inside_nested_values_is_masked() -> None:
    """PI-looking strings inside a list or dict value are masked too."""
    out = run(event="sdk.test", contacts=[MOBILE], ctx={"reply_to": EMAIL})
    dumped = json.dumps(out)
    assert MOBILE not in dumped
    assert EMAIL not in dumped


def test_rendered_log_line_carries_no_pi() -> None:
    """A log call through the configured pipeline writes JSON with the PI dropped or masked."""
    with capture_logs("info") as buf:
        get_logger("trail.test").warning(
            "sdk.test_line", subject_ids=["SUBJ-TEST-0001"], detail=f"callback {MOBILE}", rows=3
        )
    [line] = [json.loads(raw) for raw in buf.getvalue().splitlines()]
    assert line["event"] == "sdk.test_line"
    assert line["rows"] == 3
    assert "SUBJ-TEST-0001" not in buf.getvalue()
    assert MOBILE not in buf.getvalue()
