"""`trail verify` against a running API waits for the verification however long it takes, while
other calls keep the client's timeout. A stand-in HTTP server answers slowly (pure client logic;
the real API is exercised by tests/integration/test_access_up.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trail.api.client import ApiClient
from trail.errors import TrailError

SUMMARY = {"intact": True, "events_checked": 10}


class Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(1.0)  # longer than the client's timeout below
        body = json.dumps({"summary": SUMMARY, "findings": []} if self.path.startswith("/v1/verify") else {})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def slow_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_verify_outlasts_the_clients_timeout_and_other_calls_do_not(slow_api: str) -> None:
    client = ApiClient(slow_api, timeout=0.3)
    assert client.verify(None, True)["summary"] == SUMMARY
    with pytest.raises(TrailError, match="cannot reach the trail API"):
        client.counts()
