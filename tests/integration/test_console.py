"""The console over HTTP in the test process (the browser tests are in test_console_browser.py):
login with a token, the session cookie and its binding to the token, CSRF, the pages each
role may see, the language and the access log of console requests. Real chDB store, real
SQLite access and incident store."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.access_fixtures import Api, make_api
from tests.factories import event
from trail.access.roles import granting_role
from trail.console.core import NAV
from trail.storage.store import Store

pytestmark = [pytest.mark.clickhouse]


@pytest.fixture(scope="module")
def module_store(chdb_path: Path) -> Iterator[Store]:
    s = Store(f"chdb://{chdb_path}", f"t_{uuid.uuid4().hex[:12]}")
    s.migrate()
    yield s
    s.command("DROP DATABASE IF EXISTS {db}")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_store: Store) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("console"), module_store)


def record(api: Api, events: list[dict[str, object]]) -> None:
    from trail.sdk.client import Client
    from trail.sdk.transport import CallbackTransport
    from trail.storage.writer import store_writer
    from trail.testing import TEST_KEY

    c = Client(service="crm", transport=CallbackTransport(store_writer(api.store)), subject_key=TEST_KEY,
               spool_dir=api.settings.effective_spool_dir)  # fmt: skip
    for ev in events:
        c.record(**ev)  # type: ignore[arg-type]
    assert c.close(timeout=30)


def browser(api: Api) -> TestClient:
    """A client of its own (its own cookie jar), on the same application."""
    return TestClient(api.client.app, raise_server_exceptions=False, base_url="http://testserver")


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "a form without its CSRF token"
    return m.group(1)


def login(api: Api, who: str, c: TestClient | None = None) -> TestClient:
    c = c or browser(api)
    page = c.get("/console/login")
    assert page.status_code == 200
    res = c.post("/console/login", data={"csrf": csrf_of(page.text), "token": api.tokens[who]}, follow_redirects=False)
    assert res.status_code == 303, res.text
    return c


def test_login_sets_a_strict_httponly_session_cookie_and_logout_ends_it(api: Api) -> None:
    c = browser(api)
    page = c.get("/console/login")
    res = c.post("/console/login", data={"csrf": csrf_of(page.text), "token": api.tokens["analyst"]},
                 follow_redirects=False)  # fmt: skip
    cookie = next(h for h in res.headers.get_list("set-cookie") if h.startswith("trail_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; behind TLS it is Secure (next test)
    events = c.get("/console/events")
    assert events.status_code == 200 and 'id="events"' in events.text
    out = c.post("/console/logout", data={"csrf": csrf_of(events.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    after = c.get("/console/events", follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/console/login")


def test_the_cookie_is_secure_behind_tls(api: Api) -> None:
    c = TestClient(api.client.app, raise_server_exceptions=False, base_url="https://testserver")
    page = c.get("/console/login")
    res = c.post("/console/login", data={"csrf": csrf_of(page.text), "token": api.tokens["analyst"]},
                 follow_redirects=False)  # fmt: skip
    cookie = next(h for h in res.headers.get_list("set-cookie") if h.startswith("trail_session="))
    assert "Secure" in cookie


@pytest.mark.parametrize("who", ["expired", "revoked"])
def test_an_expired_or_revoked_token_does_not_log_in(api: Api, who: str) -> None:
    c = browser(api)
    page = c.get("/console/login")
    res = c.post("/console/login", data={"csrf": csrf_of(page.text), "token": api.tokens[who]})
    assert res.status_code == 401
    assert "trail_session" not in c.cookies


def test_a_form_without_its_csrf_token_is_refused(api: Api) -> None:
    c = browser(api)
    c.get("/console/login")
    refused = c.post("/console/login", data={"token": api.tokens["analyst"]}, follow_redirects=False)
    assert refused.status_code == 403 and "trail_session" not in c.cookies
    c = login(api, "analyst")
    page = c.get("/console/alerts")
    stale = c.post("/console/alerts/review", data={"csrf": "not-the-token", "decision": "ack", "reason": "r",
                                                   "alert_id": str(uuid.uuid4())})  # fmt: skip
    assert stale.status_code == 403
    assert "CSRF" in stale.text or "安全令牌" in stale.text
    assert csrf_of(page.text)


def test_revoking_the_token_ends_the_session(api: Api) -> None:
    api.token("short-lived", ["analyst"])
    c = login(api, "short-lived")
    assert c.get("/console/events").status_code == 200
    tok = api.access.tokens("short-lived")[0]
    api.access.revoke_token(tok.id, by="test")
    res = c.get("/console/events", follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("/console/login")


def test_an_idle_session_expires(api: Api) -> None:
    c = login(api, "auditor")
    console = next(r for r in api.client.app.routes if getattr(r, "path", "") == "/console").app
    for s in list(console.state.sessions._by_key.values()):
        if s.principal == "auditor":
            console.state.sessions.age(s)
    res = c.get("/console/integrity", follow_redirects=False)
    assert res.status_code == 303


@pytest.mark.parametrize("who", ["analyst", "investigator", "responder", "auditor", "admin"])
def test_each_role_sees_only_its_pages_and_is_refused_the_others(api: Api, who: str) -> None:
    c = login(api, who)
    roles = api.access.get_principal(who).roles
    home = c.get("/console/")
    for key, path, perm in NAV:
        shown = f'data-page="{key}"' in home.text
        may = granting_role(roles, perm) is not None
        assert shown == may, (who, key)
        res = c.get("/console" + path)
        assert res.status_code == (200 if may else 403), (who, path, res.status_code)


def test_the_language_is_switched_and_remembered(api: Api) -> None:
    c = login(api, "analyst")
    page = c.get("/console/events", headers={"Accept-Language": "en"})
    assert "Events" in page.text
    res = c.post("/console/lang", data={"csrf": csrf_of(page.text), "lang": "zh", "next": "/console/events"},
                 follow_redirects=False)  # fmt: skip
    assert res.headers["location"] == "/console/events"
    assert "审计事件" in c.get("/console/events").text
    nowhere = c.post("/console/lang", data={"csrf": csrf_of(page.text), "lang": "en", "next": "https://elsewhere.example/"},
                     follow_redirects=False)  # fmt: skip
    assert nowhere.headers["location"] == "/console/"


def test_console_requests_are_in_the_access_log(api: Api) -> None:
    record(api, [event(i) for i in range(3)])
    c = login(api, "analyst")
    assert c.get("/console/events").status_code == 200
    c2 = login(api, "admin")
    assert c2.get("/console/events").status_code == 403
    log = api.access_log()
    mine = [e for e in log if e["target"]["resource"] == "GET /console/events"]
    ok = [e for e in mine if e["actor"]["id"] == "analyst" and e["outcome"] == "success"]
    denied = [e for e in mine if e["actor"]["id"] == "admin" and e["outcome"] == "denied"]
    assert ok and ok[-1]["record_count"] >= 3 and ok[-1]["actor"]["role"] == "analyst"
    assert denied


def test_a_person_is_looked_up_by_a_posted_id_with_a_purpose(api: Api) -> None:
    c = login(api, "investigator")
    page = c.get("/console/person")
    no_purpose = c.post("/console/person", data={"csrf": csrf_of(page.text), "subject_id": "person-7", "purpose": ""})
    assert no_purpose.status_code == 400 and "purpose" in no_purpose.text
    res = c.post("/console/person", data={"csrf": csrf_of(page.text), "subject_id": "person-7",
                                          "purpose": "complaint C-7"})  # fmt: skip
    assert res.status_code == 200
    log = api.access_log()
    looked = [e for e in log if e["target"]["resource"] == "POST /console/person" and e["purpose"] == "complaint C-7"]
    assert looked and looked[-1]["subject_refs"]
    assert not any("person-7" in str(e) for e in log)


def test_the_csv_export_is_streamed_and_audited_with_its_row_count(api: Api) -> None:
    record(api, [event(100 + i, action="export", destination={"kind": "file"}) for i in range(7)])
    c = login(api, "analyst")
    res = c.get("/console/events/export.csv?action=export")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    lines = res.text.strip().splitlines()
    assert lines[0].startswith("occurred_at,event_id,actor_kind") and len(lines) == 1 + 7
    logged = [e for e in api.access_log() if e["target"]["resource"] == "GET /console/events/export.csv"]
    assert logged and logged[-1]["record_count"] == 7 and logged[-1]["actor"]["id"] == "analyst"


def test_an_event_shows_its_seal_and_only_an_auditor_downloads_the_proof(api: Api) -> None:
    record(api, [event(200)])
    api.seal()
    ev = api.store.find_events(service="crm", limit=100_000, newest_first=True)[0]
    c = login(api, "analyst")
    page = c.get(f"/console/events/{ev['event_id']}")
    assert page.status_code == 200 and '<span class="ok">' in page.text and "proof.json" not in page.text
    assert c.get(f"/console/events/{ev['event_id']}/proof.json").status_code == 403
    aud = login(api, "auditor")
    proof = aud.get(f"/console/events/{ev['event_id']}/proof.json")
    assert proof.status_code == 200 and proof.json()["event"]["event_id"] == ev["event_id"]


def test_an_admin_revoking_a_token_in_the_console_ends_its_sessions(api: Api) -> None:
    api.token("to-revoke", ["analyst"])
    user = login(api, "to-revoke")
    assert user.get("/console/events").status_code == 200
    admin = login(api, "admin")
    page = admin.get("/console/principals")
    tok = api.access.tokens("to-revoke")[0]
    assert tok.id in page.text
    res = admin.post(f"/console/tokens/{tok.id}/revoke", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert res.status_code == 303
    assert user.get("/console/events", follow_redirects=False).status_code == 303
    made = admin.post("/console/tokens", data={"csrf": csrf_of(page.text), "principal": "analyst", "expires": "1d"})
    secret = re.search(r'id="new-token">([^<]+)<', made.text)
    assert made.status_code == 200 and secret and api.access.authenticate(secret.group(1)).state == "active"


def test_failed_logins_from_one_address_are_slowed_down(tmp_path: Path, store: Store) -> None:
    for fresh in make_api(tmp_path, store, TRAIL_API_AUTH_FAILURES_PER_MINUTE="3"):
        c = browser(fresh)
        page = c.get("/console/login")
        statuses = [
            c.post("/console/login", data={"csrf": csrf_of(page.text), "token": "trail_wrong"}).status_code
            for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]
        log = fresh.access_log()
        refused = [e for e in log if e["target"]["resource"] == "POST /console/login"]
        assert {e["outcome"] for e in refused} == {"denied"}


def test_the_raw_id_never_reaches_an_address_or_the_access_log(api: Api) -> None:
    c = login(api, "investigator")
    page = c.get("/console/person")
    assert 'method="post"' in page.text
    res = c.post("/console/person", data={"csrf": csrf_of(page.text), "subject_id": "SUBJ-TEST-000001",
                                          "purpose": "complaint C-9"})  # fmt: skip
    assert res.status_code == 200 and "SUBJ-TEST-000001" not in res.text
    assert not any("SUBJ-TEST-000001" in str(e) for e in api.access_log())


def test_the_plan_is_a_document_for_responders(api: Api) -> None:
    c = login(api, "responder")
    pdf = c.get("/console/plan.zh.pdf")
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    md = c.get("/console/plan.en.md")
    assert md.status_code == 200 and "Grade" in md.text
    assert login(api, "analyst").get("/console/plan.zh.md").status_code == 403


def test_disabling_a_principal_ends_its_sessions_and_the_last_admin_stays(api: Api) -> None:
    api.token("to-disable", ["analyst"])
    user = login(api, "to-disable")
    admin = login(api, "admin")
    page = admin.get("/console/principals")
    assert admin.post("/console/principals/to-disable/disable", data={"csrf": csrf_of(page.text)},
                      follow_redirects=False).status_code == 303  # fmt: skip
    assert user.get("/console/events", follow_redirects=False).status_code == 303
    last = admin.post("/console/principals/admin/disable", data={"csrf": csrf_of(page.text)})
    assert last.status_code == 400 and "last active admin" in last.text
    assert admin.post("/console/principals/to-disable/enable", data={"csrf": csrf_of(page.text)},
                      follow_redirects=False).status_code == 303  # fmt: skip
