"""The API under load on 127.0.0.1: 200 concurrent clients and 50 slow ones (headers sent byte by
byte, a body that stalls) against `trail up`, while events keep being ingested. Bounded in count
and time; the slow clients are cut off by the header and body deadlines; every well-behaved
request is answered, none with a 5xx, and every ingested event is stored."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TRAIL, trail_env, wait_for
from tests.factories import event
from trail.testing import TEST_KEY

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

CLIENTS = 200
SLOW = 50
BATCHES, PER_BATCH = 20, 100
HEADER_TIMEOUT = 2.0


def request(method: str, url: str, token: str, body: bytes | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310  # local API
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:200]


@pytest.fixture()
def up(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_SINK_BATCH_SECONDS="0.2",
                    TRAIL_API_HEADER_TIMEOUT=str(HEADER_TIMEOUT), TRAIL_API_BODY_TIMEOUT="3")  # fmt: skip
    with open(tmp_path / "up.log", "wb") as log:
        proc = subprocess.Popen([TRAIL, "up", "--data-dir", str(data)], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        server = wait_for(lambda: (data / "server.json").exists() and json.loads((data / "server.json").read_text()),
                          60, what="server.json")  # fmt: skip
        yield str(server["api"]), (data / "keys" / "local.token").read_text().strip(), tmp_path / "up.log"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def slow_headers(host: str, port: int, out: list[float]) -> None:
    """Send a request's headers one byte every 0.3 s; record how long until the server hung up."""
    start = time.monotonic()
    head = b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x\r\n\r\n"
    with socket.create_connection((host, port), timeout=20) as s:
        try:
            for b in head:
                s.sendall(bytes([b]))
                time.sleep(0.3)
                if time.monotonic() - start > 15:
                    break
            s.recv(1)
        except OSError:
            pass
    out.append(time.monotonic() - start)


def slow_body(host: str, port: int, token: str, out: list[int]) -> None:
    """Announce a body and stall after a few bytes: the body deadline answers 408."""
    with socket.create_connection((host, port), timeout=20) as s:
        s.sendall(f"POST /v1/sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"query\"".encode())  # fmt: skip
        answer = s.recv(200)
    out.append(int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.1 ") else 0)


def test_200_clients_and_50_slow_ones_while_ingesting(up: tuple[str, str, Path]) -> None:
    api, token, log = up
    host, port = api.removeprefix("http://").split(":")
    ingested: list[int] = []

    def ingest() -> None:
        for b in range(BATCHES):
            lines = b"\n".join(json.dumps(event(b * PER_BATCH + i)).encode() for i in range(PER_BATCH))
            code, answer = request("POST", api + "/v1/events", token, lines)
            assert code == 200, answer
            ingested.append(int(answer["accepted"]))
            time.sleep(0.05)

    slow_done: list[float] = []
    stalled: list[int] = []
    slow_threads = [threading.Thread(target=slow_headers, args=(host, int(port), slow_done)) for _ in range(SLOW - 5)]
    slow_threads += [threading.Thread(target=slow_body, args=(host, int(port), token, stalled)) for _ in range(5)]
    feeder = threading.Thread(target=ingest)
    started = time.monotonic()
    for t in slow_threads:
        t.start()
    feeder.start()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda i: request("GET", f"{api}/v1/events?actor=E{1000 + i % 50}&limit=100", token),
                                range(CLIENTS)))  # fmt: skip
    feeder.join(120)
    for t in slow_threads:
        t.join(30)
    elapsed = time.monotonic() - started
    codes = [c for c, _ in answers]
    assert codes.count(200) == CLIENTS, sorted(set(codes))
    assert len(slow_done) == SLOW - 5 and max(slow_done) < HEADER_TIMEOUT + 5, sorted(slow_done)[-3:]
    assert stalled == [408] * 5, stalled
    assert sum(ingested) == BATCHES * PER_BATCH
    assert elapsed < 120

    def stored() -> int:
        code, counts = request("GET", api + "/v1/counts", token)
        assert code == 200
        return int(counts["events"])

    wait_for(lambda: stored() == BATCHES * PER_BATCH, 60, what="every ingested event stored")
    assert "internal_error" not in log.read_text(errors="replace")
