"""Retention classes: the plan respects each class's period (audit events 6 months, provision and
entrusted processing 3 years), the floor, legal holds and open incidents' evidence; an approval
that would break a class is refused; retention_overdue fires per dataset with the count of people
on its case and stays silent on its look-alikes. Real chDB store, the API in the test process."""

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
from trail.access.retention_classes import load_policy
from trail.errors import ConfigError
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport
from trail.storage.store import Store
from trail.storage.writer import store_writer
from trail.testing import TEST_KEY

pytestmark = [pytest.mark.clickhouse]

POLICY = """
datasets:
  - {system: crm, dataset: customers, days: 30, source: "privacy notice §4: 30 days after collection"}
  - {system: crm, dataset: orders, days: 30, source: "privacy notice §5"}
"""


@pytest.fixture()
def api(tmp_path: Path, store: Store) -> Iterator[Api]:
    policy = tmp_path / "retention.yaml"
    policy.write_text(POLICY)
    yield from make_api(tmp_path, store, TRAIL_RETENTION_POLICY=str(policy))


def record(api: Api, events: list[dict[str, Any]], service: str = "crm") -> None:
    c = Client(service=service, transport=CallbackTransport(store_writer(api.store)), subject_key=TEST_KEY,
               spool_dir=api.settings.effective_spool_dir)  # fmt: skip
    for ev in events:
        c.record(**ev)
    assert c.close(timeout=30)


def sealed_batches(api: Api) -> None:
    """Three checkpoints: plain views; provision to a third party; an entrusted party's use."""
    record(api, [event(i) for i in range(5)])
    api.seal()
    record(api, [event(10 + i, action="provide", destination={"kind": "third_party", "name": "Courier Co"})
                 for i in range(3)])  # fmt: skip
    api.seal()
    record(api, [event(20 + i, action="use", actor={"kind": "agent", "id": "vendor-7"}) for i in range(2)])
    api.seal()


def plan(api: Api, before: datetime | None = None) -> dict[str, Any]:
    q = f"?before={before.strftime('%Y-%m-%dT%H:%M:%SZ')}" if before else ""
    res = api.client.get("/v1/retention/plan" + q, headers=api.as_("auditor"))
    assert res.status_code == 200, res.text
    doc: dict[str, Any] = res.json()
    return doc


def test_the_plan_respects_classes_and_the_floor(api: Api) -> None:
    """400 days on: plain events expire, provision and entrusted records are kept by their 3-year
    classes (with their sources); 1100 days on, everything expires; before the floor nothing does;
    a retention approval that would break a class is refused and deletes nothing."""
    sealed_batches(api)
    assert plan(api)["checkpoints"] == []  # now: everything is within the floor
    later = datetime.now(UTC) + timedelta(days=400)
    api.services.retention.clock = lambda: later
    p = plan(api)
    assert {c["name"]: c["days"] for c in p["policy"]["classes"]} == {
        "audit_events": 183, "provision_records": 1095, "entrusted_processing": 1095}  # fmt: skip
    assert all(c["source"] for c in p["policy"]["classes"])
    rows = {e["seq"]: e for e in p["checkpoints"]}
    kept = {seq: [k["class"] for k in e["kept_by"]] for seq, e in rows.items()}
    provide = next(s for s, e in rows.items() if e["by_class"].get("provision_records"))
    agent = next(s for s, e in rows.items() if e["by_class"].get("entrusted_processing"))
    plain = [s for s, e in rows.items() if set(e["by_class"]) == {"audit_events"}]
    assert kept[provide] == ["provision_records"] and kept[agent] == ["entrusted_processing"]
    assert plain and all(rows[s]["expires"] for s in plain)
    assert p["would_expire"]["events"] == sum(rows[s]["events"] for s in plain)
    # the approval path enforces the same classes
    api.token("admin2", ["admin"])
    res = api.client.post("/v1/retention", json={"before": (later - timedelta(days=200)).isoformat(), "reason": "R-7"},
                          headers=api.as_("admin"))  # fmt: skip
    assert res.status_code == 400 and "retention class" in res.json()["error"], res.text
    n = len(api.store.find_events(service="crm", limit=1000))
    assert n == 10
    much_later = datetime.now(UTC) + timedelta(days=1100)
    api.services.retention.clock = lambda: much_later
    assert all(e["expires"] for e in plan(api)["checkpoints"])
    # a --before inside the floor is planned only up to the floor, and says so
    p = plan(api, much_later)
    assert "floor" in p["note"]


def test_the_plan_respects_holds_and_open_incidents(api: Api) -> None:
    """An explicit legal hold and an open incident's evidence window each keep the checkpoints
    they cover, named in the plan."""
    from trail.incidents.application import rfc3339

    sealed_batches(api)
    now = datetime.now(UTC)
    hold = api.client.post("/v1/holds", json={"from": (now - timedelta(days=1)).isoformat(),
                                              "to": (now + timedelta(days=1)).isoformat(), "reason": "court order 17"},
                           headers=api.as_("auditor")).json()  # fmt: skip
    much_later = now + timedelta(days=1100)
    api.services.retention.clock = lambda: much_later
    p = plan(api)
    assert p["checkpoints"] and all(not e["expires"] for e in p["checkpoints"])
    assert all(any("court order 17" in k.get("hold", "") for k in e["kept_by"]) for e in p["checkpoints"])
    api.client.post(f"/v1/holds/{hold['id']}/release", headers=api.as_("auditor"))
    assert all(e["expires"] for e in plan(api)["checkpoints"])
    alert = {"alert_id": str(uuid.uuid4()), "rule": "bulk_export", "severity": "high", "actor": "E1003",
             "actor_kind": "staff", "window_start": rfc3339(now - timedelta(hours=1)),
             "window_end": rfc3339(now + timedelta(hours=1)), "count": 1, "records": 5000, "evidence": [],
             "articles": [], "summary": "test", "detected_at": rfc3339(now)}  # fmt: skip
    api.services.incidents.service.open_from_alerts([alert])
    p = plan(api)
    assert all(any("open incident" in k.get("hold", "") for k in e["kept_by"]) for e in p["checkpoints"])


def test_a_policy_may_raise_a_class_but_never_lower_it(tmp_path: Path) -> None:
    """A class of a default's name may lengthen it; shortening it, an unknown action or a dataset
    without a source is refused naming the place in the file."""
    f = tmp_path / "p.yaml"
    f.write_text("classes:\n  - {name: provision_records, days: 2000, source: 'group policy G-2'}\n")
    assert {c.name: c.days for c in load_policy(f).classes}["provision_records"] == 2000
    for text, needle in (
        ("classes:\n  - {name: provision_records, days: 400, source: x}\n", "at least 1095"),
        ("classes:\n  - {name: marketing, days: 400, source: x, actions: [sell]}\n", "unknown sell"),
        ("classes:\n  - {name: marketing, days: 30, source: x}\n", "at least 183"),
        ("datasets:\n  - {system: crm, dataset: c, days: 30}\n", r"datasets\[0\]"),
    ):
        f.write_text(text)
        with pytest.raises(ConfigError, match=needle):
            load_policy(f)


def test_retention_overdue_fires_per_dataset_and_not_on_look_alikes(api: Api) -> None:
    """Collected into crm/customers 60 days ago and never deleted there (two people, one of them
    deleted only elsewhere): one alert for the dataset with count 2. Silent: deleted in time,
    collected recently, an undeclared dataset, anonymised in a declared one."""
    now = datetime.now(UTC)

    def at(days: int) -> str:
        return (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def ev(i: int, who: int, action: str, days: int, dataset: str) -> dict[str, Any]:
        return event(i, subject_ids=[subject(who)], action=action, occurred_at=at(days),
                     target={"system": "crm", "dataset": dataset})  # fmt: skip

    record(api, [
        ev(1, 1, "collect", 60, "customers"),                                    # overdue
        ev(2, 2, "collect", 60, "customers"), ev(3, 2, "delete", 10, "customers"),  # deleted in time
        ev(4, 3, "collect", 5, "customers"),                                     # recent
        ev(5, 4, "collect", 60, "customers"), ev(6, 4, "delete", 10, "archive"),   # deleted elsewhere: overdue
        ev(7, 5, "collect", 90, "leads"),                                        # undeclared dataset
        ev(8, 6, "collect", 60, "orders"), ev(9, 6, "anonymize", 40, "orders"),   # anonymised
        ev(10, 7, "collect", 90, "customers"), ev(11, 7, "delete", 80, "customers"),
        ev(12, 7, "collect", 20, "customers"),                                   # collected again, recently
    ])  # fmt: skip
    res = api.client.post("/v1/retention/check", json={}, headers=api.as_("auditor"))
    assert res.status_code == 200, res.text
    alerts = res.json()["alerts"]
    assert [(a["rule"], a["key"], a["count"]) for a in alerts] == [("retention_overdue", "crm/customers", 2)]
    a = alerts[0]
    assert a["articles"] == ["Shenzhen Art. 25"] and "30 days" in a["summary"] and len(a["evidence"]) == 2
    assert subject(1) not in json.dumps(alerts)
    again = api.client.post("/v1/retention/check", json={}, headers=api.as_("auditor")).json()["alerts"]
    assert [x["alert_id"] for x in again] == [a["alert_id"]]
    stored = api.client.get("/v1/alerts?rule=retention_overdue", headers=api.as_("analyst")).json()["alerts"]
    assert [x["alert_id"] for x in stored if x["rule"] == "retention_overdue"] == [a["alert_id"]]
    assert api.client.post("/v1/retention/check", json={}, headers=api.as_("analyst")).status_code == 403


def test_the_command_line_on_the_data_directory(tmp_path: Path) -> None:
    """`trail retention plan` shows the classes with their sources; `trail retention check` exits 1
    with the dataset's alert when data is kept beyond its declared retention."""
    import subprocess

    from tests.conftest import TRAIL, trail_env

    policy = tmp_path / "retention.yaml"
    policy.write_text(POLICY)
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_RETENTION_POLICY=str(policy))
    data = ["--data-dir", str(tmp_path / "data")]
    old = (datetime.now(UTC) - timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    f = tmp_path / "e.jsonl"
    collected = event(1, action="collect", occurred_at=old, target={"system": "crm", "dataset": "customers"})
    f.write_text(json.dumps(collected) + "\n")
    assert subprocess.run([TRAIL, "emit", "--file", str(f), *data], env=env, capture_output=True).returncode == 0
    res = subprocess.run([TRAIL, "retention", "plan", *data], env=env, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert b"provision_records: >= 1095 days" in res.stdout and b"Art. 12" in res.stdout
    res = subprocess.run([TRAIL, "retention", "check", *data], env=env, capture_output=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert [(a["key"], a["count"]) for a in json.loads(res.stdout)["alerts"]] == [("crm/customers", 2)]
