"""The API's access control, in the test process: every endpoint × every role × every token
state (one table), the access log of successes and denials, investigators' purposes, the
four-eyes rules on principals, retention by two admins over the floor and holds, and the SQL
guard. Real chDB store, real SQLite incident and access store; the access log is written
straight into the store (the broker path is exercised by the `trail up` tests)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.access_fixtures import Api, make_api
from tests.factories import event, subject
from trail.access.roles import ROLES
from trail.service import QueryFilters
from trail.storage.store import Store

pytestmark = [pytest.mark.clickhouse]

ANY_UUID = "00000000-0000-5000-8000-0000000000ff"
LINE = json.dumps(event(1)).encode()

# --------------------------------------------------------------------------- the RBAC table
#: (method, path, body, the roles allowed) — each expectation written once; the tests below run
#: every row for every role and every token state.
INV = frozenset({"analyst", "investigator"})
RBAC: list[tuple[str, str, Any, frozenset[str]]] = [
    ("POST", "/v1/events", LINE, frozenset({"service"})),
    ("GET", "/v1/events", None, frozenset({"analyst", "investigator"})),
    ("GET", "/v1/events/export?format=csv", None, frozenset({"analyst", "investigator"})),
    ("GET", "/v1/counts", None, frozenset({"analyst", "investigator"})),
    ("GET", "/v1/gaps", None, frozenset({"analyst", "investigator", "auditor"})),
    ("POST", "/v1/subjects/events", {"subject_id": subject(1), "purpose": "complaint C-1"},
     frozenset({"investigator"})),
    ("POST", "/v1/subjects/report", {"subject_id": subject(1), "purpose": "request R-1"},
     frozenset({"investigator"})),
    ("POST", "/v1/sql", {"query": "SELECT count() AS n FROM events"}, frozenset({"analyst", "investigator"})),
    ("GET", "/v1/alerts", None, frozenset({"analyst", "investigator"})),
    ("GET", f"/v1/alerts/{ANY_UUID}", None, frozenset({"analyst", "investigator"})),
    ("POST", f"/v1/alerts/{ANY_UUID}/review", {"decision": "ack", "reason": "r"}, INV),
    ("GET", "/v1/incidents", None, frozenset({"responder"})),
    ("POST", "/v1/incidents", {"title": "Lost laptop"}, frozenset({"responder"})),
    ("GET", "/v1/incidents/INC-FFFFFFFF", None, frozenset({"responder"})),
    ("GET", "/v1/incidents/INC-FFFFFFFF/timeline", None, frozenset({"responder"})),
    ("GET", "/v1/incidents/INC-FFFFFFFF/subjects", None, frozenset({"responder"})),
    ("POST", "/v1/incidents/INC-FFFFFFFF/fact", {"name": "cause", "value": "x", "source": "s"},
     frozenset({"responder"})),
    ("GET", "/v1/playbook", None, frozenset({"responder"})),
    ("GET", "/v1/verify", None, frozenset({"auditor"})),
    ("POST", "/v1/verifications", {}, frozenset({"auditor"})),
    ("GET", "/v1/verifications", None, frozenset({"auditor"})),
    ("GET", "/v1/verifications/0123456789abcdef", None, frozenset({"auditor"})),
    ("GET", f"/v1/proof/{ANY_UUID}", None, frozenset({"auditor"})),
    ("GET", "/v1/checkpoints", None, frozenset({"auditor"})),
    ("GET", "/v1/access-log", None, frozenset({"auditor"})),
    ("POST", "/v1/compliance/report", {"from": "2026-11-01", "to": "2026-11-02"}, frozenset({"auditor"})),
    ("POST", "/v1/requests", {"kind": "access", "subject_id": subject(1)}, frozenset({"investigator"})),
    ("GET", "/v1/requests", None, frozenset({"investigator", "auditor"})),
    ("GET", "/v1/requests/REQ-FFFFFFFF", None, frozenset({"investigator", "auditor"})),
    ("POST", "/v1/requests/REQ-FFFFFFFF/respond", {"summary": "sent"}, frozenset({"investigator"})),
    ("POST", "/v1/requests/REQ-FFFFFFFF/refuse", {"reason": "identity not verified"}, frozenset({"investigator"})),
    ("POST", "/v1/requests/REQ-FFFFFFFF/close", {"outcome": "done"}, frozenset({"investigator"})),
    ("GET", "/v1/holds", None, frozenset({"auditor", "admin"})),
    ("POST", "/v1/holds", {"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z", "reason": "case 7"},
     frozenset({"auditor"})),
    ("POST", "/v1/holds/hold_00000000/release", None, frozenset({"auditor"})),
    ("GET", "/v1/principals", None, frozenset({"admin"})),
    ("POST", "/v1/principals", {"name": "new-analyst", "roles": ["analyst"]}, frozenset({"admin"})),
    ("POST", "/v1/principals/nobody/disable", None, frozenset({"admin"})),
    ("GET", "/v1/tokens", None, frozenset({"admin"})),
    ("POST", "/v1/tokens", {"principal": "analyst", "expires": "1d"}, frozenset({"admin"})),
    ("POST", "/v1/tokens/tok_000000000000/revoke", None, frozenset({"admin"})),
    ("GET", "/v1/retention", None, frozenset({"admin", "auditor"})),
    ("POST", "/v1/retention", {"before": "2020-01-01T00:00:00Z", "reason": "policy R-7"}, frozenset({"admin"})),
    ("POST", "/v1/retention/ret_00000000/approve", None, frozenset({"admin"})),
    ("GET", "/v1/retention/plan", None, frozenset({"admin", "auditor"})),
    ("POST", "/v1/retention/check", {}, frozenset({"admin", "auditor"})),
]  # fmt: skip
STATES = [*ROLES, "no token", "bad token", "expired", "revoked"]


@pytest.fixture(scope="module")
def module_store(chdb_path: Path) -> Iterator[Store]:
    s = Store(f"chdb://{chdb_path}", f"t_{uuid.uuid4().hex[:12]}")
    s.migrate()
    yield s
    s.command("DROP DATABASE IF EXISTS {db}")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_store: Store) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("api"), module_store)


@pytest.fixture()
def fresh(tmp_path: Path, store: Store) -> Iterator[Api]:
    """An API of this test's own (its own store database and incident store)."""
    yield from make_api(tmp_path, store)


def call(api: Api, method: str, path: str, body: Any, who: str) -> Any:
    headers = {}
    if who == "bad token":
        headers["Authorization"] = "Bearer trail_not-a-token-anyone-was-given"
    elif who != "no token":
        headers = api.as_(who)
    if isinstance(body, bytes):
        return api.client.request(method, path, content=body, headers=headers)
    return api.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("who", STATES)
@pytest.mark.parametrize(("method", "path", "body", "allowed"), [pytest.param(*r, id=f"{r[0]} {r[1]}") for r in RBAC])
def test_rbac_matrix(api: Api, method: str, path: str, body: Any, allowed: frozenset[str], who: str) -> None:
    """No, bad, expired or revoked token: 401 with WWW-Authenticate; a role the table does not list:
    403; a role it lists: served (never 401/403, never 5xx); every answer in the one error shape."""
    res = call(api, method, path, body, who)
    if who in ("no token", "bad token", "expired", "revoked"):
        assert res.status_code == 401, res.text
        assert res.headers["www-authenticate"].startswith("Bearer")
    elif who in allowed:
        assert res.status_code not in (401, 403) and res.status_code < 500, res.text
    else:
        assert res.status_code == 403, res.text
    if res.status_code >= 400:
        doc = res.json()
        assert set(doc) <= {"error", "field"} and doc["error"], doc


def test_every_route_is_in_the_table_and_health_is_open(api: Api) -> None:
    """The table covers every route of the OpenAPI document; /v1/health needs no token."""
    import re

    doc = api.client.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(path)) + "$")
        for method in ops:
            rows = [r for r in RBAC if r[0] == method.upper() and pattern.match(r[1].split("?")[0])]
            assert path == "/v1/health" or rows, f"{method.upper()} {path} is not in the RBAC table"
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert path == "/v1/health" or op.get("x-permission"), path
    assert api.client.get("/v1/health").status_code == 200


# --------------------------------------------------------------------------- the access log
def test_success_and_denial_are_in_the_access_log(fresh: Api) -> None:
    """An analyst's read and an unauthenticated one each leave one event: principal (or
    system:unauthenticated with the address), endpoint template, rows, outcome; no raw URL."""
    api = fresh
    assert api.client.post("/v1/events", content=b"\n".join(json.dumps(event(i)).encode() for i in range(5)),
                           headers=api.as_("service")).json()["accepted"] == 5  # fmt: skip
    res = api.client.get("/v1/events?actor=E1002&limit=10", headers=api.as_("analyst"))
    assert res.status_code == 200 and len(res.json()["events"]) == 1
    assert api.client.get("/v1/events?actor=E1002").status_code == 401
    assert api.client.get("/v1/access-log", headers=api.as_("analyst")).status_code == 403
    log = api.access_log()
    reads = [e for e in log if e["target"]["resource"] == "GET /v1/events"]
    ok = next(e for e in reads if e["outcome"] == "success")
    assert ok["actor"] == {"kind": "staff", "id": "analyst", "role": "analyst"}
    assert ok["record_count"] == 1 and ok["action"] == "query" and ok["legal_basis"] == "law"
    assert ok["target"] == {"system": "trail", "dataset": "events", "resource": "GET /v1/events"}
    assert ok["purpose"] == "trail access" and ok["attributes"]["status"] == "200" and ok["attributes"]["token_id"]
    assert ok["source"]["service"] == "trail-access"
    denied = next(e for e in reads if e["outcome"] == "denied")
    assert denied["actor"] == {"kind": "system", "id": "unauthenticated"}
    assert denied["location"]["ip"] and denied["attributes"]["status"] == "401"
    forbidden = next(e for e in log if e["target"]["resource"] == "GET /v1/access-log")
    assert forbidden["outcome"] == "denied" and forbidden["actor"]["id"] == "analyst"
    assert forbidden["attributes"]["status"] == "403"
    recorded = next(e for e in log if e["target"]["resource"] == "POST /v1/events")
    assert (
        recorded["actor"] == {"kind": "service", "id": "service", "role": "service"} and recorded["record_count"] == 5
    )
    # the access log is its own producer chain, gapless, and the analyst's views leave it out
    assert {e["producer"]["id"] for e in log} == {api.services.recorder.client.producer_id}
    assert sorted(e["producer"]["seq"] for e in log) == list(range(1, len(log) + 1))
    events = api.client.get("/v1/events?limit=1000", headers=api.as_("analyst")).json()["events"]
    assert events and all(e["source"]["service"] != "trail-access" for e in events)
    # the auditor reads it, and that read is logged too
    seen = api.client.get("/v1/access-log?limit=1000", headers=api.as_("auditor")).json()["events"]
    assert {e["event_id"] for e in log} <= {e["event_id"] for e in seen}
    assert any(e["target"]["resource"] == "GET /v1/access-log" and e["actor"]["id"] == "auditor"
               for e in api.access_log())  # fmt: skip


def test_access_log_events_are_sealed_and_verify(fresh: Api) -> None:
    """The access log's events are sealed by a checkpoint like any other and verify intact."""
    api = fresh
    for _ in range(3):
        api.client.get("/v1/counts", headers=api.as_("analyst"))
    api.client.get("/v1/counts")
    api.access_log()
    res = api.client.get("/v1/verify?strict=1", headers=api.as_("auditor"))
    assert res.status_code == 200, res.text
    summary = res.json()["summary"]
    assert summary["intact"] and summary["events_checked"] >= 4 and summary["unsealed_events"] == 0
    huge = api.client.get(f"/v1/verify?since={2**64 + 5}", headers=api.as_("auditor"))
    assert huge.status_code == 400 and huge.json().get("field") == "since", huge.text


def test_a_second_verification_while_one_runs_is_refused_with_409(fresh: Api) -> None:
    """Each verification scans the whole trail: one asked for while another runs (a retry after a
    proxy gave up, a second click) gets 409 saying since when, not a second scan; afterwards a
    verification runs again."""
    import threading

    api, started, release = fresh, threading.Event(), threading.Event()
    backend = api.services.backend
    real_seal = backend.seal

    def held_seal() -> None:  # the first verification, held at its start (sealing what is stored)
        started.set()
        assert release.wait(30)
        real_seal()

    backend.seal = held_seal
    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(res=api.client.get("/v1/verify", headers=api.as_("auditor"))))
    runner.start()
    try:
        assert started.wait(30)
        backend.seal = real_seal  # the next verification would seal at once
        second = api.client.get("/v1/verify", headers=api.as_("auditor"))
        assert second.status_code == 409, second.text
        assert "a verification has been running since" in second.json()["error"]
    finally:
        release.set()
        runner.join(60)
        backend.seal = real_seal
    assert first["res"].status_code == 200 and first["res"].json()["summary"]["intact"]
    assert api.client.get("/v1/verify", headers=api.as_("auditor")).status_code == 200


def test_a_verification_job_answers_at_once_and_its_result_is_read_by_id(fresh: Api) -> None:
    """POST /v1/verifications answers 202 with the job's id while the verification is still
    running (held here at its start); a second one meanwhile is 409 naming the first; the job's
    page shows running, then done with the same summary /v1/verify gives; ids nobody started are
    404; the job's reads are in the access log under the auditor."""
    import threading
    import time

    api, started, release = fresh, threading.Event(), threading.Event()
    api.client.get("/v1/counts", headers=api.as_("analyst"))  # something to verify
    api.access_log()
    backend = api.services.backend
    real_seal = backend.seal

    def held_seal() -> None:
        started.set()
        assert release.wait(30)
        real_seal()

    backend.seal = held_seal
    try:
        res = api.client.post("/v1/verifications", json={"strict": False}, headers=api.as_("auditor"))
        assert res.status_code == 202, res.text
        job = res.json()
        assert job["status"] == "running" and job["by"] == "auditor" and job["strict"] is False
        assert res.headers["location"] == f"/v1/verifications/{job['id']}"
        assert started.wait(30)
        again = api.client.post("/v1/verifications", headers=api.as_("auditor"))
        assert again.status_code == 409 and job["id"] in again.json()["error"], again.text
        sync = api.client.get("/v1/verify", headers=api.as_("auditor"))
        assert sync.status_code == 409, sync.text  # one verification at a time, whichever way asked
        assert (
            api.client.get(f"/v1/verifications/{job['id']}", headers=api.as_("auditor")).json()["status"] == "running"
        )
    finally:
        release.set()
        backend.seal = real_seal
    deadline = time.monotonic() + 60
    while True:
        shown = api.client.get(f"/v1/verifications/{job['id']}", headers=api.as_("auditor")).json()
        if shown["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert shown["status"] == "done" and shown["finished_at"], shown
    assert shown["summary"]["intact"] and shown["summary"]["events_checked"] >= 1 and shown["findings"] == [], (
        json.dumps(shown)
    )
    direct = api.client.get("/v1/verify", headers=api.as_("auditor")).json()["summary"]
    assert direct["intact"] and direct["events_checked"] >= shown["summary"]["events_checked"]
    listed = api.client.get("/v1/verifications", headers=api.as_("auditor")).json()["verifications"]
    assert listed[0]["id"] == job["id"] and "findings" not in listed[0] and listed[0]["summary"]["intact"]
    missing = api.client.get("/v1/verifications/" + "0" * 32, headers=api.as_("auditor"))
    assert missing.status_code == 404 and "GET /v1/verifications" in missing.json()["error"]
    bad = api.client.post("/v1/verifications", json={"public_key": "/etc/passwd"}, headers=api.as_("auditor"))
    assert bad.status_code == 400 and bad.json().get("field") == "public_key", bad.text
    huge = api.client.post("/v1/verifications", json={"since": 2**64}, headers=api.as_("auditor"))
    assert huge.status_code == 400, huge.text
    logged = [e for e in api.access_log() if e["target"]["resource"].startswith(("POST /v1/verifications",
              "GET /v1/verifications/"))]  # fmt: skip
    assert logged and all(e["actor"]["id"] == "auditor" for e in logged)


def test_investigator_lookup_needs_a_purpose_and_names_the_person(fresh: Api) -> None:
    """Without a purpose: 400 naming it (recorded as an error); with one: the person's events, and
    the access event carries the purpose and the person's reference (never the raw id)."""
    from trail.sdk.pseudonymise import Pseudonymiser
    from trail.testing import TEST_KEY

    api = fresh
    api.client.post("/v1/events", content=b"\n".join(json.dumps(event(i)).encode() for i in range(5)),
                    headers=api.as_("service"))  # fmt: skip
    for body in ({"subject_id": subject(3)}, {"subject_id": subject(3), "purpose": " "}):
        res = api.client.post("/v1/subjects/events", json=body, headers=api.as_("investigator"))
        assert res.status_code == 400 and res.json()["field"] == "purpose", res.text
    res = api.client.post("/v1/subjects/events", json={"subject_id": subject(3), "purpose": "complaint C-17"},
                          headers=api.as_("investigator"))  # fmt: skip
    assert res.status_code == 200 and res.json()["events"]
    ref = Pseudonymiser(TEST_KEY).ref(subject(3))
    assert all(ref in e["subject_refs"] for e in res.json()["events"])
    lookups = [e for e in api.access_log() if e["target"]["dataset"] == "subjects"]
    assert [e["outcome"] for e in lookups] == ["error", "error", "success"]
    assert lookups[-1]["purpose"] == "complaint C-17" and lookups[-1]["subject_refs"] == [ref]
    assert subject(3) not in json.dumps(lookups)
    # an analyst may not look people up by raw id at all, nor pass a raw id as a reference
    assert api.client.post("/v1/subjects/events", json={"subject_id": subject(3), "purpose": "x" * 5},
                           headers=api.as_("analyst")).status_code == 403  # fmt: skip
    res = api.client.get(f"/v1/events?subject_ref={subject(3)}", headers=api.as_("analyst"))
    assert res.status_code == 400 and res.json()["field"] == "subject_ref"


# --------------------------------------------------------------------------- the actor is the principal
def test_a_notice_approved_by_its_drafter_under_another_spelling_is_refused(fresh: Api) -> None:
    """Responder E1002 drafts; approving as E1002 with `by` spelled e1002, Ｅ１００２ or naming
    someone else is refused and records nothing; a look-alike principal cannot be created; a
    second responder's approval passes and is recorded under that principal."""
    api = fresh
    drafter = api.token("E1002", ["responder"])
    api.token("E2001", ["responder"])
    me = {"Authorization": f"Bearer {drafter}"}
    res = api.client.post("/v1/incidents", json={"title": "Leaked export", "by": "somebody-else"}, headers=me)
    assert res.status_code == 400 and "recorded under your principal e1002" in res.json()["error"]
    view = api.client.post("/v1/incidents", json={"title": "Leaked export"}, headers=me).json()
    ref = view["ref"]
    assert view["opened_by"] == "e1002"
    res = api.client.post(f"/v1/incidents/{ref}/notices_drafted",
                          json={"subjects": 3, "subjects_digest": "d" * 64}, headers=me)  # fmt: skip
    assert res.status_code == 200 and res.json()["notices"]["drafted"]["by"] == "e1002"
    version = res.json()["version"]
    for by in (None, "E1002", "e1002", "Ｅ１００２", " E1002 "):
        res = api.client.post(f"/v1/incidents/{ref}/notices_approved", json={} if by is None else {"by": by},
                              headers=me)  # fmt: skip
        assert res.status_code == 400 and "four eyes" in res.json()["error"], (by, res.text)
    res = api.client.post(f"/v1/incidents/{ref}/notices_approved", json={"by": "E2001"}, headers=me)
    assert res.status_code == 400 and "recorded under your principal" in res.json()["error"]
    for lookalike in ("Ｅ１００２", "e1002", "E1002"):
        res = api.client.post("/v1/principals", json={"name": lookalike, "roles": ["responder"]},
                              headers=api.as_("admin"))  # fmt: skip
        assert res.status_code == 409, res.text
    res = api.client.post("/v1/principals", json={"name": "Е1002", "roles": ["responder"]},  # Cyrillic Е
                          headers=api.as_("admin"))  # fmt: skip
    assert res.status_code == 400 and res.json()["field"] == "name"
    tl = api.client.get(f"/v1/incidents/{ref}/timeline", headers=me).json()["timeline"]
    assert len(tl) == version, "refused approvals recorded nothing"
    res = api.client.post(f"/v1/incidents/{ref}/notices_approved", json={}, headers=api.as_("E2001"))
    assert res.status_code == 200 and res.json()["notices"]["approved"]["by"] == "e2001"


# --------------------------------------------------------------------------- retention
def _sealed_trail(api: Api, n: int = 20) -> None:
    from trail.sdk.client import Client
    from trail.sdk.transport import CallbackTransport
    from trail.storage.writer import store_writer
    from trail.testing import TEST_KEY

    c = Client(service="crm", transport=CallbackTransport(store_writer(api.store)), subject_key=TEST_KEY,
               spool_dir=api.settings.effective_spool_dir)  # fmt: skip
    for i in range(n):
        c.record(**event(i))
    assert c.close(timeout=30)
    api.seal()


def _events(api: Api) -> int:
    return len(api.store.find_events(service="crm", limit=100_000))


def test_retention_needs_two_admins_respects_the_floor_and_holds(fresh: Api) -> None:
    """Under the floor, by one admin alone, or over a legal hold or an open incident's evidence:
    refused and nothing deleted; a second admin's approval deletes, signed, and verify agrees."""
    api = fresh
    api.token("admin2", ["admin"])
    _sealed_trail(api)
    before_now = datetime.now(UTC).isoformat()
    res = api.client.post("/v1/retention", json={"before": before_now, "reason": "policy R-7"},
                          headers=api.as_("admin"))  # fmt: skip
    assert res.status_code == 400 and "retention floor of 183 days" in res.json()["error"]
    # a year later (the service's clock), the same events are past the floor
    later = datetime.now(UTC) + timedelta(days=400)
    api.services.retention.clock = lambda: later
    before = (later - timedelta(days=200)).isoformat()
    res = api.client.post("/v1/retention", json={"before": before, "reason": "policy R-7"}, headers=api.as_("admin"))
    assert res.status_code == 201, res.text
    rid = res.json()["request"]["id"]
    res = api.client.post(f"/v1/retention/{rid}/approve", headers=api.as_("admin"))
    assert res.status_code == 400 and "four eyes" in res.json()["error"]
    hold = api.client.post("/v1/holds", json={"from": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
                                              "to": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                                              "reason": "court order 2026-17"},
                           headers=api.as_("auditor")).json()  # fmt: skip
    res = api.client.post(f"/v1/retention/{rid}/approve", headers=api.as_("admin2"))
    assert res.status_code == 400 and "legal hold" in res.json()["error"], res.text
    assert _events(api) == 20, "nothing deleted"
    assert api.client.post("/v1/holds/" + hold["id"] + "/release", headers=api.as_("admin")).status_code == 403
    assert api.client.post("/v1/holds/" + hold["id"] + "/release", headers=api.as_("auditor")).status_code == 200
    res = api.client.post(f"/v1/retention/{rid}/approve", headers=api.as_("admin2"))
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["applied"] and out["events"] >= 20 and out["request"]["status"] == "executed"
    assert out["request"]["requested_by"] == "admin" and out["request"]["approved_by"] == "admin2"
    assert _events(api) == 0
    assert api.client.post(f"/v1/retention/{rid}/approve", headers=api.as_("admin2")).status_code == 400
    summary = api.client.get("/v1/verify", headers=api.as_("auditor")).json()["summary"]
    assert summary["intact"] and summary["expired_events"] >= 20
    kinds = [(e["target"]["resource"], e["outcome"]) for e in api.access_log() if e["target"]["dataset"] == "retention"]
    assert ("POST /v1/retention", "success") in kinds
    assert ("POST /v1/retention/{request_id}/approve", "success") in kinds
    deletion = next(e for e in api.access_log() if e["action"] == "delete")
    assert deletion["record_count"] == out["events"] and deletion["actor"]["id"] == "admin2"


def test_an_open_incidents_evidence_window_holds_its_events(fresh: Api) -> None:
    """An incident not yet closed holds the events of its evidence window against retention."""
    from trail.incidents.application import rfc3339

    api = fresh
    api.token("admin2", ["admin"])
    _sealed_trail(api)
    svc = api.services.incidents.service
    now = datetime.now(UTC)
    alert = {"alert_id": str(uuid.uuid4()), "rule": "bulk_export", "severity": "high", "actor": "E1003",
             "actor_kind": "staff", "window_start": rfc3339(now - timedelta(hours=1)),
             "window_end": rfc3339(now + timedelta(hours=1)), "count": 1, "records": 5000, "evidence": [],
             "articles": [], "summary": "test", "detected_at": rfc3339(now)}  # fmt: skip
    svc.open_from_alerts([alert])
    later = now + timedelta(days=400)
    api.services.retention.clock = lambda: later
    res = api.client.post("/v1/retention", json={"before": (later - timedelta(days=200)).isoformat(), "reason": "R-7"},
                          headers=api.as_("admin"))  # fmt: skip
    assert res.status_code == 400 and "open incident" in res.json()["error"], res.text
    assert _events(api) == 20


# --------------------------------------------------------------------------- SQL
REFUSED_SQL = [
    pytest.param("INSERT INTO events (event_id) VALUES (generateUUIDv4())", "only SELECT", id="insert"),
    pytest.param("ALTER TABLE events DELETE WHERE 1", "only SELECT", id="alter-delete"),
    pytest.param("DROP TABLE events", "only SELECT", id="drop"),
    pytest.param("CREATE TABLE x (a UInt8) ENGINE = Memory", "only SELECT", id="create"),
    pytest.param("SET readonly = 0", "only SELECT", id="set"),
    pytest.param("SYSTEM DROP DNS CACHE", "", id="system-statement"),
    pytest.param("SELECT 1; DROP TABLE events", "parse", id="two-statements"),
    pytest.param("SELECT 1;\nDROP TABLE events", "parse", id="two-statements-two-lines"),
    pytest.param("SELECT 'x; DROP TABLE events'", "';'", id="semicolon-in-a-literal"),
    pytest.param("EXPLAIN SELECT 1", "only SELECT", id="explain"),
    pytest.param("SELECT * FROM system.tables", "trail's tables", id="system-table"),
    pytest.param("SELECT * FROM system.processes", "trail's tables", id="system-processes"),
    pytest.param("SELECT * FROM INFORMATION_SCHEMA.tables", "trail's tables", id="information-schema"),
    pytest.param("SELECT * FROM other_db.events", "trail's tables", id="other-database"),
    pytest.param("SELECT * FROM schema_migrations", "trail's tables", id="internal-table"),
    pytest.param("SELECT * FROM detector_checkpoints", "trail's tables", id="detector-state"),
    pytest.param("SELECT * FROM file('/etc/passwd')", "table function", id="file"),
    pytest.param("SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')", "table function", id="url"),
    pytest.param("SELECT * FROM remote('127.0.0.1', system.one)", "table function", id="remote"),
    pytest.param("SELECT * FROM numbers(10)", "table function", id="numbers"),
    pytest.param("SELECT dictGet('d', 'a', toUInt64(1))", "function dictget", id="dictget"),
    pytest.param("SELECT count() FROM events SETTINGS readonly = 0", "SETTINGS", id="settings"),
    pytest.param("SELECT count() FROM events FORMAT JSON", "FORMAT", id="format"),
    pytest.param("SELECT * FROM events INTO OUTFILE '/tmp/out.csv'", "OUTFILE", id="outfile"),
    pytest.param("SELECT * FROM (SELECT * FROM system.users)", "trail's tables", id="nested-system"),
    pytest.param("WITH x AS (SELECT * FROM system.one) SELECT * FROM x", "trail's tables", id="cte-system"),
    pytest.param("SELECT * FROM events WHERE event_id IN (SELECT id FROM system.parts)", "trail's tables",
                 id="subquery-system"),
    pytest.param("SELECT 1 -- ; DROP TABLE events", None, id="comment-is-harmless"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "needle"), REFUSED_SQL)
def test_sql_refuses_writes_other_databases_and_system_tables(api: Api, query: str, needle: str | None) -> None:
    """Each refusal is a 400 naming the query field and why; nothing was changed."""
    res = api.client.post("/v1/sql", json={"query": query}, headers=api.as_("analyst"))
    if needle is None:
        assert res.status_code == 200 and res.json()["rows"] == [[1]], res.text
        return
    assert res.status_code == 400, res.text
    assert res.json()["field"] == "query" and needle in res.json()["error"], res.json()
    assert api.store.query("SELECT count() AS n FROM system.tables WHERE database = {d:String} AND name = 'events'",
                           {"d": api.store.db})[0]["n"] == 1  # fmt: skip


def test_pages_follow_the_cursor_to_the_end_and_exports_read_every_block(fresh: Api) -> None:
    """Page after page through ``next`` (and an export in blocks) shows every event once: the
    cursor compares the stored columns, as the order does."""
    api = fresh
    lines = [json.dumps(event(i, occurred_at=f"2026-03-01T00:00:{i % 7:02d}.000000Z")).encode() for i in range(25)]
    assert api.client.post("/v1/events", content=b"\n".join(lines), headers=api.as_("service")).json()["accepted"] == 25
    seen: list[str] = []
    url = "/v1/events?limit=10&action=view"
    while url:
        res = api.client.get(url, headers=api.as_("analyst"))
        assert res.status_code == 200, res.text
        doc = res.json()
        seen += [e["event_id"] for e in doc["events"]]
        url = f"/v1/events?limit=10&action=view&cursor={doc['next']}" if doc["next"] else ""
    assert len(seen) == len(set(seen)) == 25
    blocks = list(api.services.backend.export("events", None, QueryFilters(limit=1000, action="view"), block=4))
    assert [len(b) for b in blocks] == [4] * 6 + [1]
    assert [e["event_id"] for b in blocks for e in b] == seen


def test_sql_answers_selects_with_limits_and_logs_the_text(fresh: Api) -> None:
    """A SELECT over trail's tables (WITH, joins, unqualified or qualified names) answers rows,
    cut at TRAIL_SQL_MAX_ROWS; the access log keeps the query text; ClickHouse runs it readonly."""
    api = fresh
    api.client.post("/v1/events", content=b"\n".join(json.dumps(event(i)).encode() for i in range(30)),
                    headers=api.as_("service"))  # fmt: skip
    q = (f"WITH a AS (SELECT actor_id, count() AS n FROM {api.store.db}.events GROUP BY actor_id) "
         "SELECT actor_id, n FROM a ORDER BY actor_id")  # fmt: skip
    res = api.client.post("/v1/sql", json={"query": q}, headers=api.as_("analyst"))
    assert res.status_code == 200, res.text
    doc = res.json()
    assert doc["columns"] == ["actor_id", "n"] and sum(r[1] for r in doc["rows"]) >= 30 and not doc["truncated"]
    api.services.sql.max_rows = 5
    doc = api.client.post("/v1/sql", json={"query": "SELECT event_id FROM events"}, headers=api.as_("analyst")).json()
    assert doc["rows_returned"] == 5 and doc["truncated"]
    logged = [e for e in api.access_log() if e["target"]["dataset"] == "sql"]
    assert logged[0]["attributes"]["sql"] == q and len(logged[0]["attributes"]["sql_sha256"]) == 64
    runner = api.services.sql
    runner.check = lambda text: text  # past the parser: ClickHouse itself still runs it readonly
    assert runner.run("SELECT getSetting('readonly') AS r").rows == [[1]]


# --------------------------------------------------------------------------- limits
def test_bodies_over_the_limit_are_413_and_repeated_failures_429(tmp_path: Path, store: Store) -> None:
    """A body over its limit is 413 (announced: unread); an address that keeps failing to
    authenticate gets 429 with Retry-After, and so does a principal over its request rate."""
    gen = make_api(tmp_path, store, TRAIL_API_MAX_BODY_BYTES="2048", TRAIL_API_AUTH_FAILURES_PER_MINUTE="5",
                   TRAIL_API_RATE_PER_PRINCIPAL="3")  # fmt: skip
    api = next(gen)
    try:
        res = api.client.post("/v1/events", content=b"x" * 4096, headers=api.as_("service"))
        assert res.status_code == 413 and "2048" in res.json()["error"]
        res = api.client.post("/v1/sql", content=b'{"query": "' + b"x" * (2 << 20) + b'"}', headers=api.as_("analyst"))
        assert res.status_code == 413
        codes = [api.client.get("/v1/counts", headers={"Authorization": "Bearer trail_wrong"}).status_code
                 for _ in range(8)]  # fmt: skip
        assert codes[:5] == [401] * 5 and codes[-1] == 429
        res = api.client.get("/v1/counts", headers=api.as_("analyst"))
        assert res.status_code == 429 and int(res.headers["retry-after"]) >= 1, "the address is held, token or not"
        # 0.5 requests/s (a burst of one): the second of ten requests is refused however slow the machine
        other = make_api(tmp_path / "b", store, TRAIL_API_RATE_PER_PRINCIPAL="0.5")
        api2 = next(other)
        try:
            codes = [api2.client.get("/v1/counts", headers=api2.as_("analyst")).status_code for _ in range(10)]
            assert codes[0] == 200 and 429 in codes
        finally:
            other.close()
        denied = [e for e in api.access_log() if e["outcome"] == "denied"]
        assert {e["attributes"]["status"] for e in denied} >= {"401", "429"}
    finally:
        gen.close()


# --------------------------------------------------------------------------- the team's own reads
def test_an_analyst_who_looks_up_600_people_in_an_hour_is_caught_by_enumeration(fresh: Api) -> None:
    """Each look-up by reference is in the access log with the person's reference as its subject,
    so the enumeration rule counts an analyst's look-ups as it counts anyone's handling."""
    from trail.detect.engine import Engine
    from trail.detect.rules import load_rules
    from trail.sdk.pseudonymise import Pseudonymiser
    from trail.testing import TEST_KEY

    api = fresh
    pseudo = Pseudonymiser(TEST_KEY)
    refs = [pseudo.ref(subject(i)) for i in range(600)]
    for r in refs:
        res = api.client.get(f"/v1/events?subject_ref={r}", headers=api.as_("analyst"))
        assert res.status_code == 200, res.text
    lookups = [e for e in api.access_log() if e["actor"]["id"] == "analyst" and e["target"]["dataset"] == "events"]
    assert sorted(r for e in lookups for r in e["subject_refs"]) == sorted(refs)
    alerts = Engine(load_rules()).feed_many(sorted(lookups, key=lambda e: e["occurred_at"]))
    assert [(a.rule, a.actor) for a in alerts if a.rule == "enumeration"] == [("enumeration", "analyst")]
