"""/metrics of the API: open and unaudited, counts requests by route template and status, and
reports open incidents by grade from the real incident store."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.access_fixtures import Api, make_api
from tests.factories import event
from trail.storage.store import Store

pytestmark = [pytest.mark.clickhouse]


@pytest.fixture
def api(tmp_path: Path, store: Store) -> Iterator[Api]:
    yield from make_api(tmp_path, store)


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_and_status(api: Api) -> None:
    before = api.client.get("/metrics").text
    assert api.client.get("/v1/counts").status_code == 401
    assert api.client.get("/v1/counts", headers=api.as_("analyst")).status_code == 200
    assert api.client.get("/v1/counts", headers=api.as_("responder")).status_code == 403
    resp = api.client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    after = resp.text
    for status in ("200", "401", "403"):
        key = {"method": "GET", "route": "/v1/counts", "status": status}
        assert _value(after, "trail_api_requests_total", **key) == _value(before, "trail_api_requests_total", **key) + 1
    # no trail data in the metrics: route templates, not paths with ids
    assert "/v1/incidents/INC-" not in after


def test_metrics_are_not_in_the_access_log(api: Api) -> None:
    api.client.get("/metrics")
    assert all(e["target"].get("resource") != "/metrics" for e in api.access_log())


def _open_incidents(api: Api) -> float:
    text = api.client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("trail_incidents_open{"))


def test_open_incidents_by_grade_are_read_from_the_incident_store(api: Api) -> None:
    before = _open_incidents(api)
    resp = api.client.post("/v1/incidents", json={"title": "Lost laptop"}, headers=api.as_("responder"))
    assert resp.status_code in (200, 201), resp.text
    assert _open_incidents(api) == before + 1


def test_the_spool_of_the_api_clients_is_reported(api: Api) -> None:
    text = api.client.get("/metrics").text
    services = {line.split('service="', 1)[1].split('"', 1)[0] for line in text.splitlines()
                if line.startswith("trail_spool_bytes{")}  # fmt: skip
    assert services, text


def _plain(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_verification_counts_its_result_and_its_findings_by_kind(api: Api) -> None:
    """After each verification: the count by result, every kind's findings (0 when intact), when
    it finished and how long it took; so Prometheus can alert on findings and on a stale check."""
    from trail.integrity import drill

    before = api.client.get("/metrics").text
    assert api.client.get("/v1/verify", headers=api.as_("auditor")).json()["summary"]["intact"]
    after = api.client.get("/metrics").text
    assert _value(after, "trail_verifications_total", result="intact") == (
        _value(before, "trail_verifications_total", result="intact") + 1
    )
    assert _value(after, "trail_verify_findings", kind="copy_missing") == 0
    assert 'trail_verify_findings{kind="reordered"} 0.0' in after
    assert _plain(after, "trail_verify_last_run_timestamp_seconds") > 1.7e9
    assert _plain(after, "trail_verify_last_duration_seconds") > 0
    body = b"\n".join(json.dumps(event(i)).encode() for i in range(5))
    assert api.client.post("/v1/events", content=body, headers=api.as_("service")).status_code == 200
    events = api.client.get("/v1/events?limit=10", headers=api.as_("analyst")).json()["events"]
    assert events
    drill.delete_copy(api.store, events[0]["event_id"], "pages_by_actor")
    assert not api.client.get("/v1/verify", headers=api.as_("auditor")).json()["summary"]["intact"]
    text = api.client.get("/metrics").text
    assert _value(text, "trail_verify_findings", kind="copy_missing") == 1
    assert _value(text, "trail_verifications_total", result="findings") >= 1


def test_a_scheduled_verification_runs_unasked_and_reports_findings(tmp_path: Path, store: Store) -> None:
    """With TRAIL_VERIFY_EVERY the API's process verifies by itself: the metrics and the log show
    each run, a change to the trail becomes a finding at the next run, and closing stops it."""
    import time

    from trail.integrity import drill
    from trail.testing import capture_logs

    gen = make_api(tmp_path, store, TRAIL_VERIFY_EVERY="0.2")
    api = next(gen)
    try:
        body = b"\n".join(json.dumps(event(i)).encode() for i in range(5))
        assert api.client.post("/v1/events", content=body, headers=api.as_("service")).status_code == 200
        scheduled = api.services.scheduled
        assert scheduled is not None
        victim = api.client.get("/v1/events?limit=1", headers=api.as_("analyst")).json()["events"][0]["event_id"]
        with capture_logs("info") as logs:
            runs = scheduled.runs
            deadline = time.monotonic() + 30
            while scheduled.runs < runs + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            drill.delete_copy(api.store, victim, "pages_by_subject")
            runs = scheduled.runs
            while scheduled.runs < runs + 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
        assert any(x["event"] == "verify.intact" for x in lines)
        found = [x for x in lines if x["event"] == "verify.findings"]
        assert found and found[-1]["findings"] == {"copy_missing": 1} and found[-1]["level"] == "error"
        text = api.client.get("/metrics").text
        assert _value(text, "trail_verify_findings", kind="copy_missing") == 1
    finally:
        api.services.close()
        with contextlib.suppress(StopIteration):
            next(gen)
    stopped = scheduled.runs
    time.sleep(0.5)
    assert scheduled.runs == stopped  # closing the services stopped the schedule
