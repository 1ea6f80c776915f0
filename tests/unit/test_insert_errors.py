"""A failed insert's error keeps ClickHouse's code, reason, column, row and name, never the data
(tests/integration/test_store.py makes a real one on chDB)."""

from __future__ import annotations

from trail.storage.store import _insert_reason

SECRET = "13800138000 Zhang San"


def test_the_http_servers_shape_keeps_the_reason_and_drops_the_data() -> None:
    exc = Exception(
        "HTTPDriver for http://clickhouse:8123 received ClickHouse error code 27\n"
        f" Code: 27. DB::Exception: Cannot parse input: expected '\"' before: '{SECRET}\"]': "
        "(while reading the value of key purpose): (at row 7)\n"
        f': Row 7:\nColumn 10, name: purpose, type: String, parsed text: "{SECRET}"\n'
        ". (CANNOT_PARSE_INPUT_ASSERTION_FAILED) (version 26.9.1.1)"
    )
    reason = _insert_reason(exc)
    assert SECRET not in reason and "13800138000" not in reason
    assert reason == "Code: 27. Cannot parse input, column purpose, row 7 (CANNOT_PARSE_INPUT_ASSERTION_FAILED)"


def test_errors_without_a_clickhouse_message_are_kept_short() -> None:
    assert _insert_reason(ConnectionRefusedError("[Errno 111] Connection refused")) == "[Errno 111] Connection refused"
    timeout = Exception(
        "Code: 159. DB::Exception: Timeout exceeded: elapsed 2.1 seconds, maximum: 1. (TIMEOUT_EXCEEDED)"
    )
    assert _insert_reason(timeout) == "Code: 159. Timeout exceeded (TIMEOUT_EXCEEDED)"


def test_data_that_looks_like_the_error_text_is_not_taken_for_it() -> None:
    """Input quoted in the message that mimics ClickHouse's own words (a prefix, an error name, a
    column) is not what the reason reports."""
    forged = "DB::Exception: (while reading the value of key actor_id) (at row 999) (FORGED_NAME)"
    exc = Exception(
        f"Code: 27. DB::Exception: Code: 27. DB::Exception: Cannot parse input: expected ',' before: '{forged}': "
        "(while reading the value of key attributes): (at row 3)\n: Row 3: ... (CANNOT_PARSE_INPUT_ASSERTION_FAILED)"
    )
    assert _insert_reason(exc) == (
        "Code: 27. Cannot parse input, column attributes, row 3 (CANNOT_PARSE_INPUT_ASSERTION_FAILED)"
    )


def test_a_value_quoted_in_the_reason_itself_is_replaced() -> None:
    exc = Exception(
        f"Code: 6. DB::Exception: Cannot parse string '{SECRET}' as UInt64: syntax error at begin of string. "
        "(CANNOT_PARSE_TEXT)"
    )
    assert _insert_reason(exc) == "Code: 6. Cannot parse string '…' as UInt64 (CANNOT_PARSE_TEXT)"
