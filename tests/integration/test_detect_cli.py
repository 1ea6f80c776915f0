"""`trail alerts` and `trail rules` as a user runs them, on a data directory of their own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import trail_env

pytestmark = [pytest.mark.clickhouse]

CLI = [sys.executable, "-m", "trail.cli.detect_commands"]
SEED = textwrap.dedent(
    """
    import sys
    from trail.detect.alerts import Alert
    from trail.detect.review import StoreAlerts
    from trail.storage.store import open_store
    store = open_store(f"chdb://{sys.argv[1]}/store")
    for i, rule in enumerate(["bulk_export", "cross_border"]):
        StoreAlerts(store).put(Alert(
            alert_id=f"00000000-0000-5000-8000-00000000000{i}", rule=rule, severity="high", actor=f"E-TEST-{i}",
            actor_kind="staff", key=f"actor:E-TEST-{i}", window_start="2026-11-18T02:00:00.000000Z",
            window_end="2026-11-18T03:00:00.000000Z", count=1500, records=1500,
            evidence=["0190d5c4-0000-7000-8000-000000000001"], articles=["MIIT Order 24 Art. 13(3)"],
            summary="test", trigger_event_id="0190d5c4-0000-7000-8000-000000000001"))
    store.close()
    """
)


def run(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=trail_env(TRAIL_LOG_LEVEL="error", **env),
        check=False,
    )


def test_alerts_list_ack_show(tmp_path: Path) -> None:
    """list --format json prints one object per alert with the contract fields; ack changes the
    status and records an audit event with the reviewer as actor."""
    subprocess.run([sys.executable, "-c", SEED, str(tmp_path)], check=True, timeout=120, env=trail_env())
    listed = run("alerts", "list", "--format", "json", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 2
    for key in (
        "alert_id",
        "rule",
        "severity",
        "actor",
        "window_start",
        "window_end",
        "count",
        "evidence",
        "articles",
        "status",
    ):
        assert key in rows[0]
    target = rows[0]["alert_id"]
    acked = run(
        "alerts",
        "ack",
        target,
        "--reason",
        "export agreed with the DPO",
        data_dir=tmp_path,
        TRAIL_REVIEWER="E-TEST-REVIEWER",
    )
    assert acked.returncode == 0, acked.stderr
    shown = run("alerts", "show", target, "--format", "json", data_dir=tmp_path)
    assert json.loads(shown.stdout)["status"] == "acked"
    audit = subprocess.run(
        [
            sys.executable,
            "-m",
            "trail.cli.main",
            "query",
            "actor",
            "E-TEST-REVIEWER",
            "--format",
            "json",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=trail_env(),
        check=True,
    )
    [event] = [json.loads(line) for line in audit.stdout.splitlines()]
    assert event["attributes"]["alert_id"] == target
    assert event["purpose"] == "alert review (MIIT Art. 13(3))"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["alerts", "show", "not-a-uuid"], 2, id="bad-id"),
        pytest.param(
            ["alerts", "dismiss", "00000000-0000-5000-8000-0000000000ff", "--reason", "x", "--reviewer", "E-1"],
            2,
            id="unknown-alert",
        ),
        pytest.param(
            ["alerts", "ack", "00000000-0000-5000-8000-0000000000ff", "--reviewer", "E-1"], 2, id="missing-reason"
        ),
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str], code: int) -> None:
    """Bad input gets exit status 2 and one line on stderr."""
    res = run(*args, data_dir=tmp_path)
    assert res.returncode == code
    assert res.stderr.strip()


def test_rules_show_json_lists_every_rule_with_articles(tmp_path: Path) -> None:
    """rules show --format json prints the globals, then one rule per line with its articles."""
    res = run("rules", "show", "--format", "json", data_dir=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[0]["globals"]["timezone"] == "Asia/Shanghai"
    assert {r["rule"] for r in lines[1:]} >= {"bulk_export", "denied_burst", "cross_border"}
    assert all(r["articles"] for r in lines[1:])


def test_rules_show_reports_a_bad_file(tmp_path: Path) -> None:
    """A bad rules file is refused with its path and key, exit status 2."""
    bad = tmp_path / "rules.toml"
    bad.write_text("[rules.bulk_export]\nsingle_records = -1\n")
    res = run("rules", "show", "--file", str(bad), data_dir=tmp_path)
    assert res.returncode == 2
    assert "rules.bulk_export.single_records" in res.stderr
