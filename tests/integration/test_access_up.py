"""Access end to end: `trail up` (the access log through the broker, sealed and verified; the
local token; principals and tokens from the command line; revocation at once; a burst of refused
requests raising denied_burst) and `trail serve` with a bootstrapped first admin."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TRAIL, trail_env, wait_for
from tests.factories import event
from trail.local.broker import LocalBroker
from trail.testing import TEST_KEY

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRAIL, *args], env=env, capture_output=True, text=True, timeout=180, check=False)


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-2000:]}"
    return res.stdout


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def http(method: str, url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310  # local API
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310  # local API
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class Up:
    data: Path
    api: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    base = tmp_path_factory.mktemp("access-up")
    data = base / "data"
    rules = base / "rules.toml"
    rules.write_text("[rules.denied_burst]\ncount = 6\n")
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_SINK_BATCH_SECONDS="0.2", TRAIL_RULES_FILE=str(rules),
                    TRAIL_CHECKPOINT_SECONDS="1", TRAIL_DATA_DIR=str(data))  # fmt: skip
    with open(base / "up.log", "wb") as log:
        proc = subprocess.Popen([TRAIL, "up"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        server = wait_for(lambda: (data / "server.json").exists() and json.loads((data / "server.json").read_text()),
                          60, what="server.json")  # fmt: skip
        yield Up(data, str(server["api"]), env, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_the_local_token_file_and_the_local_principal(up: Up) -> None:
    """`trail up` made principal local (every role) and DATA_DIR/keys/local.token, mode 0600."""
    path = up.data / "keys" / "local.token"
    assert path.stat().st_mode & 0o777 == 0o600
    token = path.read_text().strip()
    code, answer = http("GET", up.api + "/v1/principals", token)
    assert code == 200
    (local,) = [p for p in answer["principals"] if p["name"] == "local"]
    assert set(local["roles"]) == {"service", "analyst", "investigator", "responder", "auditor", "admin"}


def test_the_access_log_travels_through_the_broker_sealed_and_verified(up: Up, tmp_path: Path) -> None:
    """Commands with the local token and an unauthenticated request each become access-log events
    in the store, under their own producer; gaps and verify --strict cover them."""
    events = tmp_path / "e.jsonl"
    events.write_text("\n".join(json.dumps(event(i)) for i in range(10)))
    ok(run("emit", "--file", str(events), env=up.env))
    wait_for(lambda: jsonl(ok(run("query", "actor", "E1003", "--format", "json", env=up.env))), 30, what="the events")
    assert http("GET", up.api + "/v1/counts")[0] == 401

    def logged() -> list[dict[str, Any]]:
        return jsonl(ok(run("access-log", "--format", "json", "--limit", "1000", env=up.env)))

    rows = wait_for(lambda: (r := logged()) and any(e["outcome"] == "denied" for e in r)
                    and any(e["target"]["resource"] == "GET /v1/events" for e in r) and r, 30,
                    what="the access-log events")  # fmt: skip
    mine = [e for e in rows if e["target"]["resource"] == "GET /v1/events"][-1]
    assert mine["actor"]["id"] == "local" and mine["outcome"] == "success" and mine["record_count"] == 1
    denied = next(e for e in rows if e["outcome"] == "denied")
    assert denied["actor"] == {"kind": "system", "id": "unauthenticated"} and denied["location"]["ip"] == "127.0.0.1"
    assert {e["producer"]["id"] for e in rows} == {rows[0]["producer"]["id"]}
    assert rows[0]["producer"]["id"].startswith("trail-access/")
    res = run("gaps", env=up.env)
    assert res.returncode == 0, res.stdout
    time.sleep(1.5)  # let the access events of the reads above land before the strict check
    res = run("verify", "--strict", "--format", "json", env=up.env)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = jsonl(res.stdout)[0]
    assert summary["intact"] and summary["events_checked"] >= 10 + len(rows)


def test_principals_and_tokens_from_the_command_line_and_revocation_at_once(up: Up) -> None:
    """An admin (the local principal here) adds an analyst and gives it a token; the analyst reads
    events but not the access log (403, exit 2); revoked, the token stops working at once."""
    added = json.loads(ok(run("principals", "add", "A-Wang", "--role", "analyst", env=up.env)))
    assert added["name"] == "a-wang" and added["roles"] == ["analyst"]
    tok = json.loads(ok(run("tokens", "create", "a-wang", "--expires", "1d", "--format", "json", env=up.env)))
    assert set(tok) == {"id", "principal", "token", "expires_at"} and tok["principal"] == "a-wang"
    listed = jsonl(ok(run("tokens", "list", "--principal", "a-wang", "--format", "json", env=up.env)))
    assert [t["id"] for t in listed] == [tok["id"]] and tok["token"] not in json.dumps(listed)
    analyst = dict(up.env, TRAIL_TOKEN=tok["token"])
    ok(run("query", "events", "--limit", "5", env=analyst))
    res = run("access-log", env=analyst)
    assert res.returncode == 2 and "no role" in res.stderr
    res = run("query", "subject", "SUBJ-TEST-000001", env=analyst)
    assert res.returncode == 2 and "--purpose" in res.stderr
    ok(run("tokens", "revoke", tok["id"], env=up.env))
    res = run("query", "events", env=analyst)
    assert res.returncode == 2 and "revoked" in res.stderr
    res = run("sql", "SELECT count() AS n FROM events", "--format", "json", env=up.env)
    assert jsonl(ok(res))[0]["n"] >= 0
    res = run("sql", "DROP TABLE events", env=up.env)
    assert res.returncode == 2 and "only SELECT" in res.stderr
    res = run("retention", "request", "--before", "2026-01-01T00:00:00Z", "--reason", "R-7", env=up.env)
    assert res.returncode == 0 or "floor" in res.stderr
    res = run("retention", "request", "--before", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "--reason", "R-7", env=up.env)  # fmt: skip
    assert res.returncode == 2 and "retention floor" in res.stderr
    res = run("retention", "apply", "--before", "2999-01-01T00:00:00Z", "--reason", "x", env=up.env)
    assert res.returncode == 2 and "retention request" in res.stderr


def test_a_burst_of_refused_requests_raises_denied_burst(up: Up) -> None:
    """Someone probing the API without a valid token: the refusals are denied events of one actor
    (system:unauthenticated), and the existing denied_burst rule (count 6 here) raises an alert."""
    for i in range(8):
        assert http("GET", up.api + "/v1/events", f"trail_guess-{i}")[0] == 401

    def alerts() -> list[dict[str, Any]]:
        return jsonl(ok(run("alerts", "list", "--rule", "denied_burst", "--format", "json", env=up.env)))

    found = wait_for(alerts, 60, interval=1, what="a denied_burst alert")
    assert found[0]["actor"] == "unauthenticated" and found[0]["count"] >= 6


# --------------------------------------------------------------------------- trail serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_a_bootstrapped_first_admin(broker: LocalBroker, tmp_path: Path) -> None:
    """`principals add --bootstrap` makes the first admin once (and prints its token); `trail serve`
    runs the API alone; the admin manages principals but reads no events; SIGTERM stops it."""
    port = _free_port()
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_DATA_DIR=str(tmp_path / "data"),
                    TRAIL_KAFKA_BOOTSTRAP=broker.bootstrap, TRAIL_NAMESPACE=f"s{port}.",
                    TRAIL_API_PORT=str(port))  # fmt: skip
    first = json.loads(ok(run("principals", "add", "Root", "--role", "admin", "--bootstrap", env=env)))
    token = first["token"]["token"]
    assert first["principal"]["name"] == "root" and token.startswith("trail_")
    res = run("principals", "add", "root2", "--role", "admin", "--bootstrap", env=env)
    assert res.returncode == 2 and "admin exists already" in res.stderr
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([TRAIL, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        api = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(api), 60, what="trail serve")
        assert http("GET", api + "/v1/principals", token)[0] == 200
        assert http("GET", api + "/v1/events", token)[0] == 403
        code, made = http("POST", api + "/v1/principals", token,
                          json.dumps({"name": "crm", "roles": ["service"], "kind": "service"}).encode())  # fmt: skip
        assert code == 201 and made["kind"] == "service"
        with urllib.request.urlopen(api + "/console/login", timeout=30) as page:  # noqa: S310  # local API
            assert page.status == 200 and 'name="csrf"' in page.read().decode()  # trail serve serves the console
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "serve.log").read_text()[-2000:]


def _up(api: str) -> bool:
    try:
        return http("GET", api + "/v1/health")[0] == 200
    except OSError:
        return False
