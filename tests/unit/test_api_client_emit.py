"""`trail emit` through the API sends a file of any size in bounded requests and answers once,
with refusals numbered by their line in the whole file."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trail.api import client as api_client
from trail.api.client import ApiClient


class Recording(ApiClient):
    """The client with its transport replaced by a stand-in server that refuses lines saying 'bad'."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1")
        self.bodies: list[bytes] = []

    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Any:
        assert method == "POST" and path == "/v1/events" and body is not None
        self.bodies.append(body)
        lines = body.split(b"\n")
        errors = [{"line": n, "error": "purpose: bad"} for n, line in enumerate(lines, start=1) if b"bad" in line]
        return {"accepted": len(lines) - len(errors), "rejected": len(errors), "errors": errors}


def test_a_big_file_goes_in_bounded_requests_and_answers_with_file_line_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_client, "EMIT_CHUNK_LINES", 100)
    monkeypatch.setattr(api_client, "EMIT_CHUNK_BYTES", 4096)
    lines = [json.dumps({"n": i, "v": "bad" if i % 97 == 0 else "ok"}).encode() for i in range(1000)]
    lines[500] = b'{"n": 500, "v": "' + b"x" * 10_000 + b'"}'  # one line larger than a request's bytes
    c = Recording()
    out = c.emit(lines)
    assert len(c.bodies) > 10
    assert all(body.count(b"\n") < 100 for body in c.bodies)
    assert all(len(body) <= 4096 for body in c.bodies if b"x" * 100 not in body), "bounded, but a big line goes alone"
    assert b"\n".join(c.bodies) == b"\n".join(lines), "every line sent once, in order"
    bad = [i + 1 for i in range(1000) if i % 97 == 0]
    assert out["rejected"] == len(bad) and out["accepted"] == 1000 - len(bad)
    assert [e["line"] for e in out["errors"]] == bad
