"""The compliance report: every figure against the same fixture counted independently here in
Python, each with its query (rerun against the store it gives the same rows), the signature
checked offline, and a tampered report refused. Real chDB store, the API in the test process."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.access_fixtures import Api, make_api
from tests.conftest import TRAIL, trail_env
from tests.factories import event, subject
from trail.detect.alerts import Alert, alert_row
from trail.events.model import SENSITIVE_CATEGORIES
from trail.integrity.keys import checkpoint_signing_key
from trail.rights.compliance import check
from trail.rights.render import render_report
from trail.storage.alerts import insert_alerts
from trail.storage.store import Store

pytestmark = [pytest.mark.clickhouse]

#: November 2026, the fixture's month, and on to today at least: the access log and the incidents the
#: tests make are stamped with the time they run, which must stay inside the period.
UNTIL = max(date(2026, 12, 1), datetime.now(UTC).date() + timedelta(days=1)).isoformat()
PERIOD = {"from": "2026-11-01", "to": UNTIL}
ACTIONS = ["collect", "view", "export", "provide", "transfer", "delete", "use"]
BASES = ["consent", "contract", "law", "hr"]
CATS = [["name", "phone"], ["health"], ["name", "id_number"], ["email"], ["financial", "name"]]


def fixture_events() -> list[dict[str, Any]]:
    """60 events in November (and 4 just outside it), mixing every dimension the report counts."""
    out = []
    for i in range(64):
        day = 1 + i % 28
        at = f"2026-11-{day:02d}T{i % 24:02d}:{i % 60:02d}:00.000000Z"
        if i >= 60:
            at = ["2026-10-31T23:59:59.999999Z", "2026-10-15T00:00:00.000000Z"][i % 2]
        action = ACTIONS[i % len(ACTIONS)]
        ev = event(
            i,
            event_id=str(uuid.uuid4()),
            occurred_at=at,
            action=action,
            legal_basis=BASES[i % len(BASES)],
            data_categories=CATS[i % len(CATS)],
            record_count=1 + i % 9,
            purpose=["support", "billing", "marketing"][i % 3],
        )
        if ev["legal_basis"] == "consent" and i % 8 != 0:
            ev["consent_ref"] = f"C-{i}"
        if action == "provide":
            ev["destination"] = {"kind": "third_party", "name": f"Partner {i % 2}", "region": "CN-GD"}
        if action == "transfer":
            ev["destination"] = {"kind": "abroad", "name": "Group HQ", "region": "SG"}
        if i % 11 == 0:
            ev["outcome"] = "denied"
        out.append(ev)
    return out


def in_period(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in evs if e["occurred_at"].startswith("2026-11")]


def alert(rule: str, status: str, day: int, reviewed_after_s: int = 0) -> Alert:
    start = f"2026-11-{day:02d}T10:00:00.000000Z"
    raw = {
        "alert_id": str(uuid.uuid4()), "rule": rule, "severity": "high", "actor": "E1001", "actor_kind": "staff",
        "window_start": start, "window_end": f"2026-11-{day:02d}T11:00:00.000000Z", "count": 3,
        "detected_at": f"2026-11-{day:02d}T11:00:00.000000Z", "status": status,
        "reviewer": "lead" if status != "open" else "",
        "reviewed_at": f"2026-11-{day:02d}T11:{reviewed_after_s // 60:02d}:00.000000Z" if status != "open" else "",
        "version": 1 if status != "open" else 0,
    }  # fmt: skip
    return Alert.from_dict(raw)


ALERTS = [
    alert("bulk_export", "acked", 3, 600),
    alert("bulk_export", "open", 4),
    alert("bulk_destruction", "dismissed", 5, 1200),
    alert("off_hours", "open", 6),
    alert("bulk_export", "acked", 30 - 29, 60),  # 2026-11-01, inside
]


@pytest.fixture()
def api(tmp_path: Path, store: Store) -> Iterator[Api]:
    yield from make_api(tmp_path, store)


def load(api: Api) -> list[dict[str, Any]]:
    evs = fixture_events()
    body = b"\n".join(json.dumps(e).encode() for e in evs)
    assert api.client.post("/v1/events", content=body, headers=api.as_("service")).json()["accepted"] == len(evs)
    insert_alerts(api.store, [alert_row(a) for a in ALERTS])
    # an alert outside the period is not counted
    insert_alerts(api.store, [alert_row(alert("bulk_export", "open", 1).__class__.from_dict(
        {**alert("bulk_export", "open", 1).to_dict(), "window_start": "2026-10-01T10:00:00.000000Z"}))])  # fmt: skip
    res = api.client.post("/v1/subjects/events", json={"subject_id": subject(1), "purpose": "complaint C-3"},
                          headers=api.as_("investigator"))  # fmt: skip
    assert res.status_code == 200
    assert api.client.get("/v1/access-log", headers=api.as_("analyst")).status_code == 403
    for title, found in (("Lost laptop", "2026-11-20T08:00:00Z"), ("Old case", "2026-09-01T08:00:00Z")):
        res = api.client.post("/v1/incidents", json={"title": title, "discovered_at": found},
                              headers=api.as_("responder"))  # fmt: skip
        assert res.status_code == 201, res.text
    api.access_log()
    return evs


def report(api: Api) -> dict[str, Any]:
    res = api.client.post("/v1/compliance/report", json=PERIOD, headers=api.as_("auditor"))
    assert res.status_code == 200, res.text
    doc: dict[str, Any] = res.json()
    return doc


def test_every_figure_matches_an_independent_count(api: Api) -> None:
    """Totals, by action, by legal basis, sensitive without consent, bulk operations and reviews,
    provision to third parties and abroad, alerts by rule: each equals the fixture counted here."""
    evs = in_period(load(api))
    r = report(api)
    for key in ("period", "events_total", "by_action", "by_legal_basis", "sensitive_without_consent",
                "bulk_operations", "provisions", "alerts_by_rule", "incidents", "requests", "access",
                "integrity", "signature"):  # fmt: skip
        assert key in r, key
    assert r["events_total"]["events"] == len(evs) == 60
    assert r["events_total"]["records"] == sum(e["record_count"] for e in evs)
    assert {k: v["events"] for k, v in r["by_action"]["items"].items()} == Counter(e["action"] for e in evs)
    assert {k: v["records"] for k, v in r["by_legal_basis"]["items"].items()} == {
        b: sum(e["record_count"] for e in evs if e["legal_basis"] == b) for b in {e["legal_basis"] for e in evs}
    }

    def without_consent(e: dict[str, Any]) -> bool:
        sensitive = bool(SENSITIVE_CATEGORIES & set(e["data_categories"])) and e.get("outcome") != "denied"
        b = e["legal_basis"]
        return sensitive and (b not in ("consent", "law") or (b == "consent" and not e.get("consent_ref")))

    expected = [e for e in evs if without_consent(e)]
    assert expected and r["sensitive_without_consent"]["events"] == len(expected)
    assert r["sensitive_without_consent"]["records"] == sum(e["record_count"] for e in expected)
    assert r["bulk_operations"]["total"] == 4 and r["bulk_operations"]["reviewed"] == 3
    assert r["bulk_operations"]["max_review_seconds"] == 1200
    ok = [e for e in evs if e.get("outcome") != "denied"]
    third = [e for e in ok if e.get("destination", {}).get("kind") == "third_party"]
    abroad = [e for e in ok if e.get("destination", {}).get("kind") == "abroad"]
    assert third and r["provisions"]["third_party"]["events"] == len(third)
    assert r["provisions"]["third_party"]["recipients"] == len({e["destination"]["name"] for e in third})
    assert abroad and r["provisions"]["abroad"]["records"] == sum(e["record_count"] for e in abroad)
    rules = {k: (v["total"], v["open"], v["acked"], v["dismissed"]) for k, v in r["alerts_by_rule"]["items"].items()}
    assert rules == {"bulk_export": (3, 1, 2, 0), "bulk_destruction": (1, 0, 0, 1), "off_hours": (1, 1, 0, 0)}
    assert r["access"]["person_lookups"] == 1 and r["access"]["denied"] >= 1
    assert r["integrity"]["verify"]["intact"] is True
    cats = Counter(c for e in evs for c in e["data_categories"])
    assert {x["category"]: x["events"] for x in r["by_category"]["rows"]} == cats
    assert {x["purpose"]: x["events"] for x in r["by_purpose"]["rows"]} == Counter(e["purpose"] for e in evs)
    assert [(x["system"], x["dataset"], x["events"]) for x in r["by_system"]["rows"]] == [("crm", "customers", 60)]
    deleted = [e for e in ok if e["action"] == "delete"]
    assert [(x["action"], x["events"], x["records"]) for x in r["deletion"]["by_action"]["rows"]] == [
        ("delete", len(deleted), sum(e["record_count"] for e in deleted))
    ]
    # incidents open in the period: the one discovered in November, and the September one still open
    assert r["incidents"]["total"] == 2 and {i["title"] for i in r["incidents"]["items"]} == {"Lost laptop", "Old case"}
    # every section names the articles it evidences
    assert {a["article"] for a in r["articles"]["bulk_operations"]} >= {"Art. 13(3)"}
    assert any(a["source"].startswith("Shenzhen") and a["article"] == "Art. 83" for a in r["articles"]["alerts"])


def test_each_query_reruns_to_the_same_figure(api: Api) -> None:
    """The query printed beside a figure, run as printed, gives that figure (from the result
    columns, or the grouping, the figure names)."""
    load(api)
    r = report(api)
    figures = (r["events_total"], r["sensitive_without_consent"], r["sensitive"], r["provisions"]["abroad"],
               r["provisions"]["third_party"])  # fmt: skip
    for figure in figures:
        row = api.store.query(figure["query"])[0]
        for k, column in figure["columns"].items():
            assert figure[k] == row[column], (k, figure["query"])
    bulk = api.store.query(r["bulk_operations"]["query"])[0]
    assert (bulk["total"], bulk["reviewed"]) == (r["bulk_operations"]["total"], r["bulk_operations"]["reviewed"])
    rows = api.store.query(r["by_action"]["query"])
    assert {x["action"]: x["events"] for x in rows if x["dimension"] == "action"} == {
        k: v["events"] for k, v in r["by_action"]["items"].items()
    }
    assert {x["legal_basis"]: x["records"] for x in rows if x["dimension"] == "legal_basis"} == {
        k: v["records"] for k, v in r["by_legal_basis"]["items"].items()
    }
    assert sum(x["events"] for x in rows if x["dimension"] == "purpose") == r["events_total"]["events"]


def test_signed_report_checks_offline_and_a_tampered_one_fails(api: Api, tmp_path: Path) -> None:
    """`trail compliance check` accepts the report as signed (exit 0) and refuses it with one
    figure changed, with another key, or without a signature (exit 1)."""
    load(api)
    r = report(api)
    pub = checkpoint_signing_key(api.settings).public
    assert check(r, pub)["valid"] is True
    good = tmp_path / "report.json"
    good.write_text(json.dumps(r))
    env = trail_env()
    res = subprocess.run([TRAIL, "compliance", "check", str(good), "--public-key", pub.raw_hex], env=env,
                         capture_output=True, timeout=120)  # fmt: skip
    assert res.returncode == 0 and json.loads(res.stdout)["valid"] is True, res.stderr
    tampered = json.loads(json.dumps(r))
    tampered["sensitive_without_consent"]["events"] -= 1
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    res = subprocess.run([TRAIL, "compliance", "check", str(bad), "--public-key", pub.raw_hex], env=env,
                         capture_output=True, timeout=120)  # fmt: skip
    assert res.returncode == 1 and "changed" in json.loads(res.stdout)["reason"]
    from trail.integrity.keys import generate

    assert check(r, generate().public)["valid"] is False
    assert check({k: v for k, v in r.items() if k != "signature"}, pub)["valid"] is False


def test_only_auditors_and_the_period_is_required(api: Api) -> None:
    """An analyst or investigator gets 403; without --to, 400 naming it."""
    for who in ("analyst", "investigator", "admin"):
        res = api.client.post("/v1/compliance/report", json=PERIOD, headers=api.as_(who))
        assert res.status_code == 403
    res = api.client.post("/v1/compliance/report", json={"from": "2026-11-01"}, headers=api.as_("auditor"))
    assert res.status_code == 400 and "to" in res.text


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("fmt", ["md", "html", "pdf"])
def test_every_language_and_format(api: Api, lang: str, fmt: str) -> None:
    """The document shows each section, the figures and their queries, and the signature."""
    load(api)
    r = report(api)
    data = render_report("compliance_report", r, lang=lang, fmt=fmt)
    if fmt == "pdf":
        from io import BytesIO

        from pypdf import PdfReader

        assert data.startswith(b"%PDF")
        text = "".join(p.extract_text() or "" for p in PdfReader(BytesIO(data)).pages)
        assert r["signature"]["key_id"] in text.replace("\n", "")
        return
    text = data.decode()
    assert ("个人信息保护合规审计报告" if lang == "zh" else "Personal information compliance report") in text
    assert "SELECT count() AS events" in text and r["signature"]["sha256"] in text
    assert "Art. 13(3)" in text and "Art. 83" in text and "7.2.2" in text
    assert str(r["events_total"]["events"]) in text


def test_on_the_data_directory(tmp_path: Path) -> None:
    """Without an API, `trail compliance report` reads the data directory, signs with its key
    (checked by `trail compliance check` with checkpoint.pub), renders every format, and the
    read is in the access log."""
    from trail.testing import TEST_KEY

    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode())
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(json.dumps(e) for e in fixture_events()) + "\n")

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([TRAIL, *args], env=env, capture_output=True, timeout=180)

    assert run("emit", "--data-dir", str(data), "--file", str(f)).returncode == 0
    out = tmp_path / "c.json"
    res = run("compliance", "report", "--data-dir", str(data), "--from", "2026-11-01", "--to", "2026-12-01",
              "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    r = json.loads(out.read_text())
    assert r["events_total"]["events"] == 60
    res = run("compliance", "check", str(out), "--public-key", str(data / "keys" / "checkpoint.pub"))
    assert res.returncode == 0, res.stdout
    res = run("compliance", "report", "--data-dir", str(data), "--from", "2026-11-01", "--to", "2026-12-01",
              "--format", "md", "--lang", "en")  # fmt: skip
    assert res.returncode == 0 and b"Personal information compliance report" in res.stdout
    res = run("compliance", "report", "--data-dir", str(data), "--from", "2026-11-01", "--to", max(UNTIL, "2027-01-01"))
    reads = json.loads(res.stdout)["access"]["by_principal"]["rows"]
    assert [(x["principal"], x["role"]) for x in reads] == [("local", "auditor")] and reads[0]["requests"] == 2
    res = run("compliance", "report", "--data-dir", str(data), "--from", "2026-12-01", "--to", "2026-11-01")
    assert res.returncode == 2 and b"to" in res.stderr
