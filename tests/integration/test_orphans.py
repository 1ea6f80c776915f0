"""A SIGKILLed `trail up` leaves no broker behind, and a later `trail up` on the same data
directory stops a broker an earlier one left (the pid file), without touching other processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TRAIL, trail_env, wait_for
from trail.local.broker import broker_binary, free_port, kill_stale_broker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_sigkilled_trail_up_leaves_no_broker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = open(tmp_path / "up.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([TRAIL, "up", "--data-dir", str(data)], env=trail_env(), stdout=log, stderr=log)
    try:
        wait_for(lambda: (data / "server.json").exists(), 120, what="server.json")
        broker_pid = int(json.loads((data / "broker.pid").read_text())["pid"])
        assert alive(broker_pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        wait_for(lambda: not alive(broker_pid), 30, what="the broker to die with its parent")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()


def test_a_stale_broker_named_in_the_pid_file_is_stopped(tmp_path: Path) -> None:
    """A broker outliving its `trail up` (started without the parent-death signal, as on a system
    without it) is found through the pid file and stopped; a pid file naming any other process
    leaves that process alone."""
    log_id = "trail-local-stale-test"
    port = f"127.0.0.1:{free_port()}"
    stale = subprocess.Popen(
        [
            broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://{port}",
            "--advertised-listener-url",
            f"tcp://{port}",
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            log_id,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        pid_file = tmp_path / "broker.pid"
        pid_file.write_text(json.dumps({"pid": bystander.pid, "log_id": log_id}))
        assert kill_stale_broker(pid_file) is None
        assert bystander.poll() is None and not pid_file.exists()

        pid_file.write_text(json.dumps({"pid": stale.pid, "log_id": log_id}))
        assert kill_stale_broker(pid_file) == stale.pid
        stale.wait(30)
        assert not pid_file.exists()
    finally:
        for p in (stale, bystander):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(30)
