"""The subject report through the API (investigator, raw id only in the body) and on the data
directory: exactly the person's events across monthly partitions, recipients, who holds the data
now, the lookups from the access log, in both languages and every format. Real chDB store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access_fixtures import Api, make_api
from tests.conftest import TRAIL, trail_env
from tests.factories import event, subject
from trail.rights.render import render_report
from trail.sdk.pseudonymise import Pseudonymiser
from trail.storage.store import Store
from trail.testing import TEST_KEY

pytestmark = [pytest.mark.clickhouse]

ALICE, BOB, CAROL = subject(101), subject(202), subject(303)
MONTHS = ["2026-01-15", "2026-02-10", "2026-03-05", "2026-04-20", "2026-05-30"]


def scripted() -> list[dict[str, Any]]:
    """Events over five monthly partitions; Alice is in some (alone or with others), never all."""
    out: list[dict[str, Any]] = []
    for m, day in enumerate(MONTHS):
        for i in range(6):
            people = [[ALICE], [BOB], [ALICE, BOB], [CAROL], [BOB, CAROL], [ALICE, CAROL]][(i + m) % 6]
            ev = event(i, subject_ids=people, event_id=str(uuid.uuid4()), occurred_at=f"{day}T0{i}:00:00.000000Z")
            ev["actor"] = {"kind": "staff", "id": f"E{2000 + i}", "role": "support", "department": "care"}
            out.append(ev)
    extra = [
        event(90, subject_ids=[ALICE], action="collect", data_categories=["name", "health"],
              legal_basis="consent", consent_ref="C-77", occurred_at="2025-12-31T23:59:59.000000Z",
              target={"system": "crm", "dataset": "patients"}),
        event(91, subject_ids=[ALICE], action="provide", data_categories=["name", "phone"],
              destination={"kind": "third_party", "name": "Courier Co", "region": "CN-GD"},
              purpose="deliver parcel", occurred_at="2026-02-01T08:00:00.000000Z"),
        event(92, subject_ids=[ALICE], action="transfer", data_categories=["name"],
              destination={"kind": "abroad", "name": "Group HQ", "region": "SG"},
              purpose="group reporting", occurred_at="2026-03-01T08:00:00.000000Z"),
        event(93, subject_ids=[ALICE], action="delete", data_categories=["name", "health"],
              occurred_at="2026-06-01T00:00:00.000000Z", target={"system": "crm", "dataset": "patients"}),
        event(94, subject_ids=[BOB], action="provide", data_categories=["name"],
              destination={"kind": "third_party", "name": "Bob's Insurer"}, occurred_at="2026-02-02T08:00:00.000000Z"),
    ]  # fmt: skip
    for ev in extra:
        ev["event_id"] = str(uuid.uuid4())
        out.append(ev)
    return out


@pytest.fixture()
def api(tmp_path: Path, store: Store) -> Iterator[Api]:
    yield from make_api(tmp_path, store)


def load(api: Api, events: list[dict[str, Any]]) -> None:
    body = b"\n".join(json.dumps(e).encode() for e in events)
    res = api.client.post("/v1/events", content=body, headers=api.as_("service"))
    assert res.json()["accepted"] == len(events), res.text


def expected_ids(events: list[dict[str, Any]], who: str) -> list[str]:
    mine = [e for e in events if who in e["subject_ids"]]
    return [e["event_id"] for e in sorted(mine, key=lambda e: e["occurred_at"])]


def report(api: Api, who: str, **extra: Any) -> Any:
    res = api.client.post(
        "/v1/subjects/report", json={"subject_id": who, "purpose": "PIPL Art. 45 request R-1", **extra},
        headers=api.as_("investigator"),
    )  # fmt: skip
    assert res.status_code == 200, res.text
    return res.json()


def test_exactly_the_persons_events_across_months_oldest_first(api: Api) -> None:
    """Alice's report lists every event that names her, across five monthly partitions, oldest
    first, and none of Bob's or Carol's alone; the contract's keys are there."""
    events = scripted()
    load(api, events)
    r = report(api, ALICE)
    assert {"subject_ref", "period", "events", "recipients", "lookups"} <= set(r)
    assert r["subject_ref"] == Pseudonymiser(TEST_KEY).ref(ALICE)
    assert [e["event_id"] for e in r["events"]] == expected_ids(events, ALICE)
    months = {e["occurred_at"][:7] for e in r["events"]}
    assert len(months) >= 6  # 2025-12 to 2026-06
    assert [e["event_id"] for e in report(api, BOB)["events"]] == expected_ids(events, BOB)
    # a period cuts at its bounds
    part = report(api, ALICE, **{"from": "2026-02-01", "to": "2026-04-01"})
    inside = [e for e in events if ALICE in e["subject_ids"] and "2026-02-01" <= e["occurred_at"] < "2026-04-01"]
    assert {e["event_id"] for e in part["events"]} == {e["event_id"] for e in inside}
    assert part["period"] == {"from": "2026-02-01T00:00:00.000000Z", "to": "2026-04-01T00:00:00.000000Z"}


def test_recipients_holders_sensitive_and_deletion(api: Api) -> None:
    """Third parties and abroad are listed with categories; the deleted dataset is no longer held;
    sensitive categories are marked; staff ids hidden unless the organisation allows them."""
    load(api, scripted())
    r = report(api, ALICE)
    kinds = {(x["kind"], x["name"]) for x in r["recipients"]}
    assert kinds == {("third_party", "Courier Co"), ("abroad", "Group HQ")}  # never Bob's insurer
    collect = next(e for e in r["events"] if e["action"] == "collect")
    assert collect["sensitive"] == ["health"] and collect["consent_ref"] == "C-77"
    assert collect["legal_basis"] == "consent"
    held = {(h["system"], h["dataset"]) for h in r["summary"]["held_by"]}
    gone = {(h["system"], h["dataset"]) for h in r["summary"]["no_longer_held_by"]}
    assert ("crm", "patients") in gone and ("crm", "patients") not in held and ("crm", "customers") in held
    assert r["summary"]["deletions"] == 1
    staff = [e["actor"] for e in r["events"] if e["actor"]["kind"] == "staff"]
    assert staff and all("id" not in a for a in staff) and all(a.get("role") for a in staff)


def test_lookups_are_listed_and_the_report_itself_is_audited(api: Api) -> None:
    """An investigator's lookup and the report itself appear in the person's next report (from the
    access log), with the purpose; the raw id is never in the access log."""
    load(api, scripted())
    res = api.client.post("/v1/subjects/events", json={"subject_id": ALICE, "purpose": "complaint C-9"},
                          headers=api.as_("investigator"))  # fmt: skip
    assert res.status_code == 200
    report(api, ALICE)
    api.access_log()  # delivered
    r = report(api, ALICE)
    purposes = [lk["purpose"] for lk in r["lookups"]]
    assert purposes == ["complaint C-9", "PIPL Art. 45 request R-1"]
    assert all(lk["outcome"] == "success" and lk["by"] == {"kind": "staff", "role": "investigator"}
               for lk in r["lookups"])  # fmt: skip
    assert not any(lk["purpose"] == "complaint C-9" for lk in report(api, CAROL)["lookups"])
    assert ALICE not in json.dumps(api.access_log())


def test_purpose_required_and_only_investigators(api: Api) -> None:
    """Without a purpose: 400 naming it; an analyst or auditor: 403."""
    res = api.client.post("/v1/subjects/report", json={"subject_id": ALICE}, headers=api.as_("investigator"))
    assert res.status_code == 400 and res.json()["field"] == "purpose"
    for who in ("analyst", "auditor"):
        res = api.client.post("/v1/subjects/report", json={"subject_id": ALICE, "purpose": "look"},
                              headers=api.as_(who))  # fmt: skip
        assert res.status_code == 403


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("fmt", ["md", "html", "pdf", "json"])
def test_every_language_and_format(api: Api, lang: str, fmt: str) -> None:
    """Each language and format renders the report: the events, recipients and lookups are there."""
    load(api, scripted())
    api.client.post("/v1/subjects/events", json={"subject_id": ALICE, "purpose": "complaint C-9"},
                    headers=api.as_("investigator"))  # fmt: skip
    api.access_log()
    r = report(api, ALICE)
    data = render_report("subject_report", r, lang=lang, fmt=fmt)
    if fmt == "pdf":
        assert data.startswith(b"%PDF")
        from io import BytesIO

        from pypdf import PdfReader

        text = "".join(p.extract_text() or "" for p in PdfReader(BytesIO(data)).pages)
        assert "Courier" in text and ("个人信息处理情况报告" if lang == "zh" else "Report on the processing") in text
        return
    text = data.decode()
    if fmt == "json":
        assert json.loads(text)["events"] == r["events"]
        return
    assert "Courier Co" in text and "Group HQ" in text and "complaint C-9" in text
    assert ("个人信息处理情况报告" if lang == "zh" else "Report on the processing of your personal information") in text
    assert text.count("2026-0") >= len(r["events"])
    assert ("健康" if lang == "zh" else "health") in text


def test_on_the_data_directory_the_report_is_audited(tmp_path: Path) -> None:
    """Without an API, `trail subject report` reads the data directory and records the read in
    the access log, so the person's next report lists it; the raw id is nowhere in the output."""
    import subprocess

    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode())
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(json.dumps(e) for e in scripted()) + "\n")

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([TRAIL, *args, "--data-dir", str(data)], env=env, capture_output=True, timeout=180)

    assert run("emit", "--file", str(f)).returncode == 0
    res = run("subject", "report", ALICE, "--purpose", "request R-2", "--format", "json")
    assert res.returncode == 0, res.stderr
    first = json.loads(res.stdout)
    assert len(first["events"]) == len([e for e in scripted() if ALICE in e["subject_ids"]])
    res = run("subject", "report", ALICE, "--purpose", "request R-3", "--format", "json")
    second = json.loads(res.stdout)
    assert [lk["purpose"] for lk in second["lookups"]] == ["request R-2"]
    assert ALICE.encode() not in res.stdout
    res = run("subject", "report", ALICE, "--format", "md")
    assert res.returncode == 2 and b"--purpose" in res.stderr
    out = tmp_path / "r.pdf"
    res = run("subject", "report", ALICE, "--purpose", "request R-4", "--format", "pdf", "--lang", "en", "--out",
              str(out))  # fmt: skip
    assert res.returncode == 0 and out.read_bytes().startswith(b"%PDF")


def test_expired_events_leave_the_report(api: Api) -> None:
    """Events deleted by retention (whole producer ranges) are gone from the person's report too:
    the report's by-person copy is deleted with them."""
    from trail.storage import integrity

    events = scripted()
    load(api, events)
    before = report(api, ALICE)["events"]
    producer = api.store.find_events(subject_ref=Pseudonymiser(TEST_KEY).ref(ALICE), limit=1)[0]["producer"]["id"]
    integrity.delete_range(api.store, producer, 1, 10)
    after = report(api, ALICE)["events"]
    gone = {e["event_id"] for e in events} - {e["event_id"] for e in api.store.find_events(limit=1000)}
    assert len(after) < len(before)
    assert not {e["event_id"] for e in after} & gone
    assert {e["event_id"] for e in after} == {e["event_id"] for e in before} - gone
