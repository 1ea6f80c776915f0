"""`trail up` restarted on the same data directory: its broker starts empty while the
detector's checkpoint in the store still holds the old log's offsets. Every consumer of `trail up`
goes on over the new log: the sink stores every new event, the detector detects with the old
windows and raises nothing old again, the alert sink stores each alert once, and the incident
trigger opens the new alert's incident and no second one for the old."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import TRAIL, read_topic, trail_env, wait_for
from tests.integration.conftest_detect import at, ev
from trail.detect.alerts import Alert
from trail.testing import TEST_KEY, RecordingTransport, test_client

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]
PARTITIONS = 4  # of trail.events in the local stack
DETECT_CLI = [sys.executable, "-m", "trail.cli.detect_commands"]


class Up:
    """`trail up` as a subprocess on ``data``."""

    def __init__(self, data: Path, env: dict[str, str], log: Path) -> None:
        self.data = data
        self.log = log
        self.fh = open(log, "ab")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            [TRAIL, "up", "--data-dir", str(data)], env=env, stdout=subprocess.DEVNULL, stderr=self.fh
        )
        server = wait_for(lambda: _server(data, self.proc.pid), 90, what="server.json")
        self.kafka: str = server["kafka"]
        self.api: str = server["api"]

    def health(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(self.api + "/v1/health", timeout=30) as resp:  # noqa: S310  # local API
            return dict(json.loads(resp.read()))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.fh.close()

    def log_events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == name:
                out.append(e)
        return out


def _server(data: Path, pid: int) -> dict[str, Any] | None:
    try:
        info = json.loads((data / "server.json").read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("pid") == pid else None


def wire(tmp: Path, events: list[dict[str, Any]]) -> list[bytes]:
    """The events as the SDK sends them (pseudonymised with the data directory's key, chained)."""
    rec = RecordingTransport()
    client = test_client(tmp, rec, service="crm")
    for e in events:
        client.record(**e)
    assert client.close(timeout=30)
    return [v for _, values in rec.batches for v in values]


def produce_spread(bootstrap: str, values: list[bytes]) -> None:
    """Round-robin over every partition of trail.events (each partition stays in event-time order)."""
    p = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", linger_ms=5)
    for i, v in enumerate(values):
        p.send("trail.events", v, partition=i % PARTITIONS)
    p.flush(30)
    p.close()


def alerts_on(bootstrap: str, expect: int, timeout: float = 5.0) -> list[Alert]:
    return [Alert.from_bytes(r.value) for r in read_topic(bootstrap, "trail.alerts", expect, timeout=timeout)]


def test_restarted_stack_detects_on_its_new_log_without_raising_old_alerts(tmp_path: Path) -> None:
    """Events before and after a restart of `trail up` on one data directory: the alert that needs
    both halves is raised after the restart, the alert raised before it is not raised again."""
    data = tmp_path / "data"
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_SINK_BATCH_SECONDS="0.2", TRAIL_LOG_FORMAT="json")
    export = ev("E-EXP-R", at(15), action="export", record_count=3000, subject_ids=[])
    burst = [ev("E-DEN-R", at(16, seconds=s * 10), outcome="denied") for s in range(24)]
    filler = [ev("E-FILL-R", at(14, m)) for m in range(27)]
    before = wire(tmp_path / "w1", sorted([export, *burst[:12], *filler], key=lambda e: e["occurred_at"]))
    after = wire(tmp_path / "w2", burst[12:])
    assert len(before) // PARTITIONS > len(after) // PARTITIONS + 1  # the old offsets lie beyond the new log

    up = Up(data, env, tmp_path / "up1.log")
    try:
        produce_spread(up.kafka, before)
        [first] = wait_for(lambda: alerts_on(up.kafka, 1), 60, what="the export alert")
        assert (first.rule, first.actor) == ("bulk_export", "E-EXP-R")
        wait_for(lambda: up.health()["detector"]["consumed"] >= len(before), 30, what="the first log consumed")
        wait_for(lambda: up.health()["incident_trigger"]["opened"] == 1, 60, what="the export's incident")
        wait_for(lambda: up.health()["sink"]["stored"] >= len(before), 60, what="the first log stored")
    finally:
        assert up.stop() == 0  # the detector checkpoints its windows and the old log's offsets

    up = Up(data, env, tmp_path / "up2.log")
    try:
        produce_spread(up.kafka, [*after, *wire(tmp_path / "w3", [export])])  # the export again, as a replay would
        [second] = wait_for(lambda: alerts_on(up.kafka, 1), 60, what="the burst alert after the restart")
        assert (second.rule, second.actor) == ("denied_burst", "E-DEN-R")
        health = up.health()
        assert health["detector"]["running"] and health["detector"]["error"] is None
        assert [a.alert_id for a in alerts_on(up.kafka, 2, 3.0)] == [second.alert_id]  # nothing old raised again
        assert up.log_events("detector.new_log")
        wait_for(lambda: up.health()["incident_trigger"]["opened"] == 1, 60, what="the burst's incident")
        wait_for(lambda: up.health()["sink"]["stored"] >= len(after) + 1, 60, what="the new log stored")
    finally:
        assert up.stop() == 0

    def cli(*args: str) -> list[dict[str, Any]]:
        res = subprocess.run([TRAIL, *args, "--format", "json", "--data-dir", str(data)], capture_output=True,
                             text=True, timeout=120, env=trail_env(TRAIL_LOG_LEVEL="error"), check=False)  # fmt: skip
        assert res.returncode == 0, res.stderr
        text = res.stdout.strip()
        try:
            return [json.loads(text)]  # one document (counts, show)
        except ValueError:
            return [json.loads(line) for line in text.splitlines()]  # JSON lines (list)

    # the sink: every event of both logs stored once (the replayed export is the same event)
    assert cli("counts")[0]["events"] == len(before) + len(after)
    # the incident trigger: one incident per alert, none opened twice for the old alert
    incidents = cli("incidents", "list")
    assert len(incidents) == 2, incidents
    views = [cli("incidents", "show", i["ref"])[0] for i in incidents]
    rules = sorted(a["rule"] for v in views for a in v["alerts"])
    assert rules == ["bulk_export", "denied_burst"], rules

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "trail.cli.detect_commands",
            "alerts",
            "list",
            "--format",
            "json",
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=trail_env(TRAIL_LOG_LEVEL="error"),
        check=False,
    )
    assert res.returncode == 0, res.stderr
    stored = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted((a["rule"], a["actor"]) for a in stored) == [("bulk_export", "E-EXP-R"), ("denied_burst", "E-DEN-R")]
