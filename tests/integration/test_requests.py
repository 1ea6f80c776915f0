"""Individuals' requests (PIPL Art. 50): the clock at its boundaries, refusal only with a reason,
the history replayed from the store (SQLite and PostgreSQL), the expected delete and withdrawal
events, and the same through the API with the access log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.access_fixtures import Api, make_api
from tests.factories import event, subject
from trail.errors import Refused, ValidationError
from trail.rights.request_service import RequestService
from trail.rights.requests import add_working_days, clock, deadline_for, parse_deadlines
from trail.storage.store import Store

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MON = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)  # a Monday


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --------------------------------------------------------------------------- the clock (pure)
@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        pytest.param(MON, 15, datetime(2026, 11, 23, 9, 30, tzinfo=UTC), id="monday+15 is three weeks on"),
        pytest.param(MON + timedelta(days=4), 1, MON + timedelta(days=7), id="friday+1 is monday"),
        pytest.param(MON + timedelta(days=5), 1, MON + timedelta(days=7), id="saturday+1 is monday"),
        pytest.param(MON + timedelta(days=6), 5, MON + timedelta(days=11), id="sunday+5 is friday"),
    ],
)
def test_working_days(start: datetime, days: int, due: datetime) -> None:
    """Working days skip Saturdays and Sundays and keep the time of day."""
    assert add_working_days(start, days) == due


def test_clock_at_its_boundaries() -> None:
    """Exactly at due_at: due soon, not overdue; one microsecond later: overdue; three days before:
    due soon, a microsecond earlier: ok; an answer exactly at due_at is on time, one later is late."""
    d = deadline_for("access", MON, {})
    due = datetime.fromisoformat(d["due_at"].replace("Z", "+00:00"))
    assert due == datetime(2026, 11, 23, 9, 30, tzinfo=UTC) and d["days"] == 15 and d["status"] == "verify"
    us = timedelta(microseconds=1)
    assert clock(d["due_at"], None, due)["state"] == "due_soon"
    assert clock(d["due_at"], None, due + us) == {"state": "overdue", "due_soon": False, "overdue": True}
    assert clock(d["due_at"], None, due - timedelta(days=3))["state"] == "due_soon"
    assert clock(d["due_at"], None, due - timedelta(days=3) - us)["state"] == "ok"
    assert clock(d["due_at"], d["due_at"], due + timedelta(days=9))["state"] == "answered_on_time"
    late = (due + us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert clock(d["due_at"], late, due + us)["state"] == "answered_late"


def test_configured_deadline_and_the_30_day_outer_bound() -> None:
    """A configured number of working days is used and named as the source; 30 working days would
    pass the 30-day outer bound of GB/T 35273, so the deadline is capped there and says so."""
    conf = parse_deadlines("deletion=10, access=30")
    d = deadline_for("deletion", MON, conf)
    assert d["source"] == "TRAIL_REQUEST_DEADLINES" and d["due_at"].startswith("2026-11-16")
    capped = deadline_for("access", MON, conf)
    assert capped["capped_by_outer_bound"] and capped["due_at"].startswith("2026-12-02")
    assert "35273" in capped["outer_bound"]
    assert "15 working days" in deadline_for("copy", MON, conf)["source"]
    for bad in ("deletion=0", "erasure=5", "access=31", "access"):
        with pytest.raises(ValidationError, match="TRAIL_REQUEST_DEADLINES"):
            parse_deadlines(bad)


# --------------------------------------------------------------------------- the service
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_kwargs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {"store_url": "", "sqlite_path": str(tmp_path / "requests.db")}
        return
    schema = f"t_req_{uuid.uuid4().hex[:10]}"
    yield {"store_url": f"{PG_DSN}?schema={schema}", "sqlite_path": ""}
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_requests" CASCADE')


@pytest.fixture()
def make(store_kwargs: dict[str, str]) -> Iterator[Callable[..., RequestService]]:
    made: list[RequestService] = []

    def build(now: datetime, store: Store | None = None) -> RequestService:
        svc = RequestService(
            store_url=store_kwargs["store_url"] or None,
            sqlite_path=store_kwargs["sqlite_path"],
            store=store,
            clock_fn=Clock(now),
        )
        made.append(svc)
        return svc

    yield build
    for s in made:
        s.shutdown()


REF = "ab" * 32


def test_refusal_without_a_reason_is_refused_and_records_nothing(make: Callable[..., RequestService]) -> None:
    """refuse without a reason (or a blank one): Refused, the request stays open with no new event;
    with a reason: refused, the reason kept, the clock stopped on time."""
    svc = make(MON + timedelta(days=1))
    ref = svc.open(kind="deletion", subject_ref=REF, by="inv", received_at="2026-11-02T09:30:00Z")["ref"]
    version = svc.get(ref).version
    for reason in ("", "  "):
        with pytest.raises(Refused, match="reason"):
            svc.refuse(ref, reason, by="inv")
    assert svc.get(ref).version == version and svc.view(ref)["status"] == "open"
    v = svc.refuse(ref, "the account was never ours: no data held", by="inv")
    assert v["status"] == "refused" and v["refusal"]["reason"].startswith("the account")
    assert v["clock"] == "answered_on_time"
    with pytest.raises(Refused):
        svc.close(ref, "done", "", by="inv")


def test_history_replays_in_a_new_process_with_flags(make: Callable[..., RequestService]) -> None:
    """A request opened by one process is read back whole by another; overdue and due-soon flags
    follow the clock; the documents given and the outcome are kept."""
    first = make(MON)
    a = first.open(kind="copy", subject_ref=REF, by="inv", received_at="2026-11-02T09:30:00Z")["ref"]
    b = first.open(kind="access", subject_ref=REF, by="inv", received_at="2026-11-02T09:30:00Z")["ref"]
    with pytest.raises(Refused, match="respond"):
        first.close(a, "done", "", by="inv")
    first.respond(a, "copy of the account data sent", ["copy-2026-11.zip"], by="inv")
    first.close(a, "done", "sent by registered mail", by="inv")
    later = make(datetime(2026, 11, 23, 9, 30, 0, 1, tzinfo=UTC))
    va, vb = later.view(a), later.view(b)
    assert va["status"] == "closed" and va["documents"] == ["copy-2026-11.zip"] and va["clock"] == "answered_on_time"
    assert va["outcome"]["outcome"] == "done" and va["expected_events"] is None
    assert vb["overdue"] and vb["clock"] == "overdue"
    assert [x["ref"] for x in later.list()] == [a, b]
    soon = make(datetime(2026, 11, 21, tzinfo=UTC))
    assert soon.view(b)["due_soon"] and not soon.view(b)["overdue"]
    with pytest.raises(ValidationError, match="kind"):
        later.open(kind="erasure", subject_ref=REF, by="inv")


# --------------------------------------------------------------------------- through the API
@pytest.fixture()
def api(tmp_path: Path, store: Store) -> Iterator[Api]:
    yield from make_api(tmp_path, store)


def post(api: Api, path: str, body: Any, who: str = "investigator") -> Any:
    return api.client.post(path, json=body, headers=api.as_(who))


@pytest.mark.clickhouse
def test_deletion_closed_as_done_expects_the_delete_event(api: Api) -> None:
    """Closing a deletion as done makes the trail expect the person's delete event: missing until a
    delete for that person is recorded, then seen; the raw id is never stored or logged."""
    person = subject(42)
    res = post(api, "/v1/requests", {"kind": "deletion", "subject_id": person, "channel": "web form"})
    assert res.status_code == 201, res.text
    ref = res.json()["request"]["ref"]
    assert post(api, f"/v1/requests/{ref}/refuse", {}).status_code == 400
    res = post(api, f"/v1/requests/{ref}/close", {"outcome": "done", "note": "erased in crm"})
    v = res.json()["request"]
    assert v["expected_events"]["state"] == "missing" and v["expected_events"]["actions"][0] == "delete"
    other = event(1, subject_ids=[subject(43)], action="delete")
    api.client.post("/v1/events", content=json.dumps(other).encode(), headers=api.as_("service"))
    assert api.client.get(f"/v1/requests/{ref}", headers=api.as_("auditor")).json()["request"][
        "expected_events"]["state"] == "missing"  # fmt: skip
    mine = event(2, subject_ids=[person], action="delete")
    api.client.post("/v1/events", content=json.dumps(mine).encode(), headers=api.as_("service"))
    seen = api.client.get(f"/v1/requests/{ref}", headers=api.as_("auditor")).json()["request"]["expected_events"]
    assert seen["state"] == "seen" and len(seen["events"]) == 1
    log = api.access_log()
    assert person not in json.dumps(log) and any(e["target"]["dataset"] == "requests" for e in log)
    assert person.encode() not in (Path(api.settings.data_dir) / "requests.db").read_bytes()
    # the compliance report counts it
    r = post(api, "/v1/compliance/report", {"from": "2026-01-01", "to": "2027-01-01"}, "auditor").json()
    assert r["requests"]["total"] == 1 and r["requests"]["on_time"] == 1


@pytest.mark.clickhouse
def test_withdrawal_and_refusal_through_the_api(api: Api) -> None:
    """A consent withdrawal closed as done expects consent_withdraw; a refusal needs its reason
    (400 naming it, nothing recorded); only investigators change requests, auditors read them."""
    ref = post(api, "/v1/requests", {"kind": "consent_withdrawal", "subject_id": subject(7)}).json()["request"]["ref"]
    v = post(api, f"/v1/requests/{ref}/close", {"outcome": "done"}).json()["request"]
    assert v["expected_events"]["actions"] == ["consent_withdraw"]
    ref2 = post(api, "/v1/requests", {"kind": "correction", "subject_id": subject(8)}).json()["request"]["ref"]
    res = post(api, f"/v1/requests/{ref2}/refuse", {"reason": ""})
    assert res.status_code == 400 and "reason" in res.json()["error"]
    assert api.client.get(f"/v1/requests/{ref2}", headers=api.as_("auditor")).json()["request"]["status"] == "open"
    assert post(api, f"/v1/requests/{ref2}/refuse", {"reason": "no"}, "auditor").status_code == 403
    res = post(api, f"/v1/requests/{ref2}/refuse", {"reason": "identity could not be verified"})
    assert res.json()["request"]["status"] == "refused"
    assert api.client.get("/v1/requests/REQ-00000000", headers=api.as_("auditor")).status_code == 404
    rows = api.client.get("/v1/requests?status=refused", headers=api.as_("auditor")).json()["requests"]
    assert [x["ref"] for x in rows] == [ref2]


@pytest.mark.clickhouse
def test_the_command_line_on_the_data_directory(tmp_path: Path) -> None:
    """`trail requests open|show|list|respond|refuse|close` on the data directory; refuse without
    --reason exits 2 and records nothing."""
    import subprocess

    from tests.conftest import TRAIL, trail_env
    from trail.testing import TEST_KEY

    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_REQUEST_DEADLINES="access=10")
    data = ["--data-dir", str(tmp_path / "data")]

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([TRAIL, "requests", *args, *data], env=env, capture_output=True, timeout=180)

    res = run("open", subject(5), "--kind", "access", "--format", "json")
    assert res.returncode == 0, res.stderr
    v = json.loads(res.stdout)
    assert v["deadline"]["days"] == 10 and v["deadline"]["source"] == "TRAIL_REQUEST_DEADLINES"
    ref = v["ref"]
    res = run("refuse", ref)
    assert res.returncode == 2 and b"reason" in res.stderr
    assert run("respond", ref, "--summary", "report sent", "--document", "report.pdf").returncode == 0
    res = run("show", ref)
    assert res.returncode == 0 and b"report.pdf" in res.stdout and b"working days" in res.stdout
    assert run("close", ref, "--outcome", "done").returncode == 0
    rows = [json.loads(line) for line in run("list", "--format", "json").stdout.splitlines()]
    assert [(r["ref"], r["status"], r["clock"]) for r in rows] == [(ref, "closed", "answered_on_time")]
    assert subject(5).encode() not in (tmp_path / "data" / "requests.db").read_bytes()


def test_a_bad_deadline_setting_is_refused_at_start() -> None:
    """TRAIL_REQUEST_DEADLINES is checked when the settings load, naming the variable."""
    from trail.config import load_settings
    from trail.errors import ConfigError

    with pytest.raises(ConfigError, match="TRAIL_REQUEST_DEADLINES: 'erasure=5'"):
        load_settings({"TRAIL_REQUEST_DEADLINES": "access=10,erasure=5"}, config_file=Path("/nonexistent.toml"))
    assert load_settings({"TRAIL_REQUEST_DEADLINES": "deletion=10"}, config_file=Path("/nonexistent.toml"))
