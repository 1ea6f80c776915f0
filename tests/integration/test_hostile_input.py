"""Hostile and careless input through the real commands, broker and store: refused with the field
named, never a traceback, never "accepted" for something not stored, never a wild row that
breaks a query."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.access_fixtures import make_api
from tests.conftest import TRAIL, trail_env, wait_for
from tests.factories import event
from tests.strategies import input_events
from trail.errors import ValidationError
from trail.sdk.client import Client
from trail.sdk.transport import KafkaTransport
from trail.testing import TEST_KEY

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow]

LONE = "\ud800"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([TRAIL, *args], env=env, capture_output=True, timeout=180)


def stored_events(data: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    res = run("query", "events", "--data-dir", str(data), "--format", "json", "--limit", "1000", env=env)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.decode().splitlines() if line.strip()]


def test_emit_in_direct_mode_refuses_what_it_cannot_store_and_reports_the_rest(tmp_path: Path) -> None:
    """trail emit without a stack: surrogates, oversize, wild clocks, PI, duplicate keys, bad UTF-8 are
    errors by line; the good events are stored; no traceback; "accepted" counts only stored events."""
    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_CHECKPOINT_SECONDS="0")
    lines = [
        json.dumps(event(0)).encode(),
        json.dumps(event(1, purpose=f"broken {LONE}")).encode(),  # the escape \ud800 in JSON
        json.dumps(event(2, attributes={f"k{LONE}": "v"})).encode(),
        json.dumps(event(3, subject_ids=[f"SUBJ-TEST-{i:06d}" for i in range(1000)])).encode(),
        json.dumps(event(4, occurred_at="9999-12-31T23:59:59Z")).encode(),
        json.dumps(event(5, occurred_at="0001-01-01T00:00:00Z")).encode(),
        json.dumps(event(6, attributes={"contact": "13800138000"})).encode(),
        b'{"action": "view", ' + json.dumps(event(7))[1:].encode(),
        json.dumps(event(8, purpose="PLACEHOLDER")).encode().replace(b"PLACEHOLDER", b"caf\xe9"),
        json.dumps(event(9)).encode(),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = run("emit", "--data-dir", str(data), "--file", str(path), env=env)
    assert res.returncode == 0, res.stderr
    assert b"Traceback" not in res.stderr
    out = json.loads(res.stdout)
    assert out["accepted"] == 2 and out["rejected"] == 8, out
    errors = {e["line"]: e["error"] for e in out["errors"]}
    assert errors[2].startswith("purpose: contains text that cannot be encoded as UTF-8")
    assert errors[3].startswith("attributes.(key 1): contains text that cannot be encoded as UTF-8")
    assert errors[4].startswith("subject_ids: lists more than 500 subjects")
    assert errors[5].startswith("occurred_at: is more than 10 minutes ahead of this host's clock")
    assert errors[6].startswith("occurred_at: is before 2000-01-01")
    assert errors[7].startswith("attributes.contact: looks like a mainland mobile phone number")
    assert errors[8].startswith("action: is given twice")
    assert errors[9].startswith("not valid UTF-8")
    assert "13800138000" not in res.stdout.decode() + res.stderr.decode()
    rows = stored_events(data, env)
    assert sorted(r["attributes"]["ticket"] for r in rows) == ["T-0", "T-9"]
    assert [r["producer"]["seq"] for r in sorted(rows, key=lambda r: r["producer"]["seq"])] == [1, 2]
    assert run("gaps", "--data-dir", str(data), env=env).returncode == 0


def test_emit_at_the_size_limit_is_stored_or_refused_never_accepted_and_lost(tmp_path: Path) -> None:
    """An event with the documented maximum of subjects is stored; one over 64 KiB once pseudonymised is
    refused, not reported accepted and then dropped."""
    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_CHECKPOINT_SECONDS="0")
    many = [f"SUBJ-TEST-{i:06d}" for i in range(500)]
    big_attrs = {f"k{i:02d}": "v" * 1000 for i in range(31)}
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps(event(0, subject_ids=many)) + "\n" + json.dumps(event(1, subject_ids=many, attributes=big_attrs))
    )
    res = run("emit", "--data-dir", str(data), "--file", str(path), env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["accepted"] == 1 and out["rejected"] == 1, out
    assert "bytes on the wire" in out["errors"][0]["error"]
    rows = stored_events(data, env)
    assert len(rows) == 1 and len(rows[0]["subject_refs"]) == 500


INSERT_WILD_ROWS = """
import sys
from trail.config import load_settings
from trail.events.model import event_hash, validate_input
from trail.storage.store import open_store

settings = load_settings()
store = open_store(settings.store_dsn, settings.clickhouse_database)
fields = {"actor": {"kind": "staff", "id": "E-WILD"}, "action": "view", "data_categories": ["name"],
          "purpose": "wild clock", "legal_basis": "contract", "target": {"system": "crm"},
          "source": {"service": "old-producer", "host": "h", "environment": "test"}}
rows = []
for seq, at in enumerate(sys.argv[1:], start=1):
    ev = validate_input(fields)
    ev.pop("subject_ids")
    ev.update(subject_refs=[], occurred_at=at, producer={"id": "old-producer/1", "seq": seq, "prev": ""})
    if rows:
        ev["producer"]["prev"] = rows[-1]["hash"]
    ev["hash"] = event_hash(ev)
    rows.append(ev)
store.insert_events(rows)
store.close()
"""


def test_queries_do_not_fail_because_of_one_stored_wild_row(tmp_path: Path) -> None:
    """Rows dated in the years 9999 and 1, stored by an old writer, break no query command."""
    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_DATA_DIR=str(data))
    path = tmp_path / "good.jsonl"
    path.write_text(json.dumps(event(0, actor={"kind": "staff", "id": "E-WILD"})) + "\n")
    assert run("emit", "--file", str(path), env=env).returncode == 0
    wild = ["9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00.000000Z"]
    res = subprocess.run([sys.executable, "-c", INSERT_WILD_ROWS, *wild], env=env, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]

    rows = stored_events(data, env)
    assert sorted(r["occurred_at"] for r in rows if r["actor"]["id"] == "E-WILD")[:1] == ["0001-01-01T00:00:00.000000Z"]
    assert "9999-12-31T23:59:59.999999Z" in {r["occurred_at"] for r in rows}
    for args in (
        ["query", "actor", "E-WILD", "--format", "json"],
        ["query", "subject", "SUBJ-TEST-000000", "--format", "json"],
        ["query", "events", "--since", "2026-01-01T00:00:00Z", "--format", "json"],
        ["query", "events", "--until", "2030-01-01T00:00:00Z"],
        ["query", "events", "--format", "csv"],
        ["counts"],
        ["gaps"],
        ["verify"],
    ):
        res = run(*args, env=env)
        assert res.returncode in (0, 1), (args, res.stderr.decode()[-2000:])
        assert b"Traceback" not in res.stderr, args


_SINKS: dict[int, Any] = {}


@pytest.mark.kafka
@given(batch=st.lists(input_events(), min_size=12, max_size=12))
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_events_record_accepts_are_stored_through_broker_and_sink(
    batch: list[dict[str, Any]], broker: Any, topics: dict[str, str], store: Any, make_sink: Any, tmp_path: Path
) -> None:
    """Generated events through the real broker, sink and chDB: every one record() accepted is
    stored, none is dead-lettered."""
    if id(make_sink) not in _SINKS:  # one sink for all the examples of this test
        _SINKS[id(make_sink)] = make_sink()
    run_id = uuid.uuid4().hex[:6]
    client = Client(service=f"prop-{run_id}", transport=KafkaTransport(broker.bootstrap, topics["events"]),
                    subject_key=TEST_KEY, spool_dir=tmp_path / f"spool-{run_id}")  # fmt: skip
    accepted = []
    for raw in batch:
        try:
            accepted.append(client.record(**raw))
        except ValidationError:
            continue
    assert client.close(timeout=30)

    def stored() -> set[str]:
        ids = {str(r["event_id"]) for r in store.query("SELECT toString(event_id) AS event_id FROM {db}.events")}
        return ids & set(accepted)

    wait_for(lambda: stored() == set(accepted), 60, what="every accepted event stored")
    assert _SINKS[id(make_sink)].sink.stats.deadlettered == 0


def test_the_api_intake_applies_the_same_rule(tmp_path: Path, store: Any) -> None:
    """POST /v1/events: the same refusals, by line, as trail emit; the good lines are stored; no 500."""
    gen = make_api(tmp_path, store)
    api = next(gen)
    try:
        body = b"\n".join(
            [
                json.dumps(event(0)).encode(),
                json.dumps(event(1, purpose=f"x{LONE}")).encode(),
                b'{"action": "view", ' + json.dumps(event(2))[1:].encode(),
                json.dumps(event(3, purpose="PLACEHOLDER")).encode().replace(b"PLACEHOLDER", b"\xff"),
                json.dumps(event(4, attributes={"mail": "someone@example.com"})).encode(),
                json.dumps(event(5, occurred_at="9999-01-01T00:00:00Z")).encode(),
                json.dumps(event(6)).encode(),
            ]
        )
        res = api.client.post("/v1/events", content=body, headers=api.as_("service"))
        assert res.status_code == 200, res.text
        out = res.json()
        assert out["accepted"] == 2 and out["rejected"] == 5
        errors = {e["line"]: e["error"] for e in out["errors"]}
        assert errors[2].startswith("purpose: contains text that cannot be encoded as UTF-8")
        assert errors[3].startswith("action: is given twice")
        assert errors[4].startswith("not valid UTF-8")
        assert errors[5].startswith("attributes.mail: looks like an e-mail address")
        assert errors[6].startswith("occurred_at: is more than 10 minutes ahead")
        assert "someone@example.com" not in res.text
        assert api.services.backend.client.flush(30)
        # the API's own access-log events (no ticket) may be stored by now too
        assert {r["attributes"].get("ticket") for r in store.find_events(limit=100)} >= {"T-0", "T-6"}
    finally:
        gen.close()
