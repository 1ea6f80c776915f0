"""The command line against a running `trail up` (through its API) and without it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, TRAIL, trail_env, wait_for
from tests.factories import event, subject
from trail.sdk.pseudonymise import Pseudonymiser
from trail.testing import TEST_KEY

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


def run(*args: str, env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([TRAIL, *args], env=env, input=stdin, capture_output=True, timeout=180)


def jsonl(res: subprocess.CompletedProcess[bytes]) -> list[dict]:
    return [json.loads(line) for line in res.stdout.decode().splitlines() if line.strip()]


@pytest.fixture()
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(event(i)) for i in range(50)]
    lines.insert(10, '{"actor": {"kind": "robot", "id": "R1"}}')
    lines.insert(20, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_up_emit_query_gaps_and_clean_stop(tmp_path, events_file):
    """`trail up` serves emit, query and gaps through its API, and stops cleanly on SIGTERM."""
    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_SINK_BATCH_SECONDS="0.2")
    up_log = open(tmp_path / "up.log", "wb")  # noqa: SIM115  # closed with the process below
    up = subprocess.Popen([TRAIL, "up", "--data-dir", str(data)], env=env, stdout=subprocess.DEVNULL, stderr=up_log)
    try:
        server = wait_for(lambda: (data / "server.json").exists() and json.loads((data / "server.json").read_text()),
                          60, what="server.json")  # fmt: skip
        assert server["pid"] == up.pid and server["api"].startswith("http://127.0.0.1:") and server["kafka"]

        res = run("emit", "--data-dir", str(data), "--file", str(events_file), env=env)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["accepted"] == 50 and out["rejected"] == 2
        assert [e["line"] for e in out["errors"]] == [11, 21]
        assert out["errors"][0]["error"].startswith("actor.kind: 'robot' is not one of staff")

        def stored() -> list[dict]:
            return jsonl(
                run("query", "events", "--data-dir", str(data), "--format", "json", "--limit", "1000", env=env)
            )

        rows = wait_for(lambda: len(stored()) == 50 and stored(), 30, what="50 events through the API")
        assert {r["attributes"]["ticket"] for r in rows} == {f"T-{i}" for i in range(50)}

        res = run("query", "subject", subject(3), "--data-dir", str(data), "--format", "json", env=env)
        ref = Pseudonymiser(TEST_KEY).ref(subject(3))
        hits = jsonl(res)
        assert hits and all(ref in r["subject_refs"] for r in hits)
        assert subject(3) not in res.stdout.decode()

        res = run("query", "actor", "E1003", "--data-dir", str(data), "--format", "csv", env=env)
        lines = res.stdout.decode().splitlines()
        assert lines[0].startswith("occurred_at,event_id,actor,action")
        assert len(lines) == 2 and "staff:E1003" in lines[1]

        res = run("gaps", "--data-dir", str(data), env=env)
        assert res.returncode == 0, res.stdout
        res = run("verify", "--data-dir", str(data), "--strict", env=env)
        assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
        # the 50 events and the access log's own (one per request so far), every one of them sealed
        checked = re.match(r"intact: (\d+) events checked, (\d+) sealed", res.stdout.decode())
        assert checked and int(checked.group(1)) > 50 and checked.group(1) == checked.group(2), res.stdout
        some_id = rows[7]["event_id"]
        res = run("proof", some_id, "--data-dir", str(data), env=env)
        assert res.returncode == 0, res.stderr
        (tmp_path / "proof.json").write_bytes(res.stdout)
        pub = (data / "keys" / "checkpoint.pub").read_text().strip()
        res = run("proof", "check", str(tmp_path / "proof.json"), "--public-key", pub, env=env)
        assert res.returncode == 0 and b"proof OK" in res.stdout

        # The README's SDK example runs as is against `trail up`.
        readme = (ROOT / "README.md").read_text()
        example = readme.split("<!-- sdk-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
        res = subprocess.run(
            [sys.executable, "-c", example], env=dict(env, TRAIL_DATA_DIR=str(data)), capture_output=True, timeout=120
        )
        assert res.returncode == 0, res.stderr.decode()[-3000:]

        def by_e1001() -> list[dict]:
            rows = jsonl(run("query", "actor", "E1001", "--data-dir", str(data), "--format", "json", env=env))
            return [r for r in rows if r["source"]["service"] == "crm"]

        mine = wait_for(
            lambda: (found := by_e1001()) and len(found) >= 2 and found,
            30,
            what="the README example's events",
        )
        assert sorted(e["action"] for e in mine) == ["export", "view"]
        assert [e["outcome"] for e in mine if e["action"] == "export"] == ["success"]
        import urllib.request

        with urllib.request.urlopen(server["api"] + "/v1/health", timeout=30) as resp:  # noqa: S310  # local API
            health = json.loads(resp.read())
        assert health["sink"]["running"] and health["store"]
        # the checkpoints behind verify --strict came from the sealer role, reading the log
        assert health["sealer"]["running"] and health["sealer"]["leading"] and health["sealer"]["checkpoints"] >= 1
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
        up_log.close()
    assert code == 0
    assert not (data / "server.json").exists()

    # Without `trail up`, the same commands open the data directory themselves.
    res = run("query", "events", "--data-dir", str(data), "--format", "json", "--limit", "1000", env=env)
    assert res.returncode == 0, res.stderr
    assert len(jsonl(res)) == 53
    res = run("emit", "--data-dir", str(data), "--file", str(events_file), env=env)
    assert json.loads(res.stdout)["accepted"] == 50
    res = run("counts", "--data-dir", str(data), "--format", "json", env=env)
    assert json.loads(res.stdout)["events"] == 103


def test_gaps_exits_1_and_lists_missing_ranges(tmp_path):
    """`trail gaps` lists each missing seq range per producer and exits 1."""
    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode())
    script = textwrap.dedent(f"""
        from trail.testing import RecordingTransport, test_client
        from trail.events.wire import decode
        from trail.storage.store import open_store
        from tests.factories import event
        rec = RecordingTransport()
        c = test_client({str(tmp_path)!r}, rec, service="gappy")
        for i in range(10):
            c.record(**event(i))
        c.close()
        keep = [e for e in rec.events if e["producer"]["seq"] not in (3, 4, 8)]
        store = open_store("chdb://{data / "store"}")
        store.insert_events(keep)
        store.close()
    """)
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))  # fmt: skip
    assert res.returncode == 0, res.stderr.decode()
    res = run("gaps", "--data-dir", str(data), "--format", "json", env=env)
    assert res.returncode == 1
    gaps = jsonl(res)
    assert [(g["first_missing"], g["last_missing"], g["missing"]) for g in gaps] == [(3, 4, 2), (8, 8, 1)]
    assert all(g["producer_id"].startswith("gappy/") for g in gaps)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(["query", "events", "--since", "yesterday"], "--since", id="bad-timestamp"),
        pytest.param(["query", "events", "--action", "steal"], "--action", id="bad-enum"),
        pytest.param(["emit", "--file", "/nonexistent/events.jsonl"], "--file", id="missing-file"),
        pytest.param(["query", "events", "--limit", "0"], "--limit", id="bad-limit"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path, args, needle):
    """Bad command-line input exits 2 with a short error naming the option, no traceback."""
    res = run(*args, "--data-dir", str(tmp_path / "d"), env=trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode()))
    err = res.stderr.decode()
    assert res.returncode == 2
    assert needle in err
    assert "Traceback" not in err


def test_production_mode_requires_the_subject_key(tmp_path):
    """In production mode a missing pseudonymisation key is a clear start-up error."""
    env = trail_env(TRAIL_MODE="production", TRAIL_KAFKA_BOOTSTRAP="127.0.0.1:1")
    res = run("query", "subject", "S-1", "--data-dir", str(tmp_path), env=env)
    assert res.returncode == 2
    assert "TRAIL_SUBJECT_KEY" in res.stderr.decode()
    assert "Traceback" not in res.stderr.decode()


def test_schema_prints_the_json_schema():
    """`trail schema` prints a JSON Schema naming the v1 contract."""
    res = run("schema", env=trail_env())
    doc = json.loads(res.stdout)
    assert doc["properties"]["schema"]["const"] == "trail.audit/v1"
    assert "subject_ids" not in doc["properties"]
    doc = json.loads(run("schema", "--form", "input", env=trail_env()).stdout)
    assert "subject_ids" in doc["properties"]


def test_demo_runs_green_from_a_fresh_directory(tmp_path):
    """`trail demo` on a fresh directory exits 0 and shows counts, a history and the gap check."""
    res = subprocess.run([TRAIL, "demo", "--data-dir", str(tmp_path / "demo")], env=trail_env(),
                         capture_output=True, timeout=300)  # fmt: skip
    out = res.stdout.decode()
    assert res.returncode == 0, out + res.stderr.decode()[-2000:]
    assert "read back from the store: 4000 events" in out
    assert "bulk export: 50000 records about 2000 customers" in out
    assert "bulk_export by E2042; graded IV" in out and "regulator initial report (zh, en)" in out
    # the example resolver knows nobody whose reference starts 0000 (the key is new each run, so
    # now and then one of the 2,000 is "unknown" and its notice fails, as the demo means it to)
    sent, failed = map(int, re.search(r"(\d+) sent to the outbox, (\d+) failed", out).groups())
    assert sent + failed == 2000 and failed <= 5, out
    assert "no gaps" in out
    assert "bulk_export actor E2042 at 03:00 local" in out
    assert re.search(r"trail verify: intact: .*; [1-9]\d* rows of the lookup copies match the events", out)
    assert "trail verify: intact" in out and "inclusion proof of the bulk export" in out and ": checks" in out
    assert "CUST-" not in out + res.stderr.decode()
    assert "subject report for one customer" in out and "signature checks" in out
    reports = sorted(p.name for p in (tmp_path / "demo" / "reports").iterdir())
    assert "compliance_report.json" in reports and "subject_report.zh.pdf" in reports


def test_keys_verify_tamper_and_retention_from_the_command_line(tmp_path, events_file):
    """keys init, emit, verify (clean, then after tampering: exit 1 naming the event), retention."""
    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode())
    res = run("keys", "init", "--data-dir", str(data), env=env)
    assert res.returncode == 0, res.stderr
    pub = json.loads(res.stdout)["public_key"]
    assert len(pub) == 64
    res = run("keys", "init", "--data-dir", str(data), env=env)
    assert res.returncode == 2 and b"refusing to replace" in res.stderr
    assert (
        json.loads(run("emit", "--data-dir", str(data), "--file", str(events_file), env=env).stdout)["accepted"] == 50
    )
    res = run("verify", "--data-dir", str(data), "--public-key", pub, "--format", "json", env=env)
    assert res.returncode == 0, res.stdout
    assert json.loads(res.stdout.decode().splitlines()[0])["sealed_events"] == 50
    # tamper from another process with write access to the store
    stored = jsonl(run("query", "events", "--data-dir", str(data), "--format", "json", env=env))
    victim, hidden = stored[12]["event_id"], stored[30]["event_id"]
    script = (
        "from trail.storage.store import open_store\n"
        "from trail.integrity import drill\n"
        f"s = open_store('chdb://{data / 'store'}')\n"
        f"drill.modify_field(s, {victim!r})\n"
        f"drill.delete_copy(s, {hidden!r}, 'pages_by_subject')\n"
        "s.close()\n"
    )
    assert subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120).returncode == 0
    res = run("verify", "--data-dir", str(data), "--format", "json", env=env)
    assert res.returncode == 1
    findings = jsonl(res)[1:]
    assert [(f["kind"], f["event_id"]) for f in findings] == [("modified", victim), ("copy_missing", hidden)]
    res = run("verify", "--data-dir", str(data), env=env)
    assert res.returncode == 1 and b"copy_missing" in res.stdout and b"pages_by_subject lacks" in res.stdout
    assert b"rows of the lookup copies compared with events" in res.stdout
    # a key that did not sign the checkpoints: every checkpoint is reported as forged
    from trail.integrity.keys import generate

    res = run("verify", "--data-dir", str(data), "--public-key", generate().public.raw_hex, "--format", "json", env=env)
    assert res.returncode == 1 and {f["kind"] for f in jsonl(res)[1:]} >= {"checkpoint_forged"}
    # lawful expiry: everything sealed so far goes, with a signed record; verify accepts it
    res = run("retention", "apply", "--data-dir", str(data), "--before", "2999-01-01T00:00:00Z",
              "--reason", "retention period ended", env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["events"] == 50
    res = run("verify", "--data-dir", str(data), "--format", "json", env=env)
    assert res.returncode == 0, res.stdout
    assert json.loads(res.stdout.decode().splitlines()[0])["expired_events"] == 50
