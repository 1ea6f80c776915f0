"""A SIGKILLed service's lost tail is visible: `trail gaps` reports "producer P claimed up to N, the
trail holds up to M" from the producers' progress claims on trail.producers. In durable mode the
service loses nothing: the next client on its spool directory records the tail again.

The service is a real process recording through the real broker into `trail up`; its transport
stops acknowledging after the first events (a broker that stalls), so the tail is in its memory
when it is killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TRAIL, trail_env, wait_for
from tests.integration.test_restart import Up
from trail.testing import TEST_KEY

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

SERVICE = r"""
import sys, time
from pathlib import Path
from trail.sdk import Client, KafkaTransport

kafka, spool, mode, first, total = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])


class Stalling(KafkaTransport):
    sent = 0

    def send(self, key, values):
        if mode != "replay" and self.sent >= first:
            time.sleep(3600)  # the broker stopped acknowledging
        super().send(key, values)
        self.sent += len(values)


client = Client(service="svc-tail", transport=Stalling(kafka, "trail.events"), subject_key=sys.argv[6].encode(),
                spool_dir=spool, heartbeat_s=0.2, durable=mode != "plain", batch_max=first)
if mode == "replay":
    assert client.close(timeout=60)
    print("replayed", flush=True)
    sys.exit(0)
extra = {"purpose": "answer support ticket", "legal_basis": "contract", "target": {"system": "crm"}}
for i in range(total):
    client.record(actor={"kind": "staff", "id": "E1"}, action="view", subject_ids=[f"S{i}"],
                  data_categories=["phone"], **extra)
    if i + 1 == first:
        assert client.flush(timeout=30)
while client._announced != (total, False):
    time.sleep(0.05)
print(client.producer_id, flush=True)
time.sleep(3600)
"""


def service(up: Up, spool: Path, mode: str, first: int, total: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVICE, up.kafka, str(spool), mode, str(first), str(total), TEST_KEY.decode()],
        stdout=subprocess.PIPE, text=True, env=trail_env(TRAIL_LOG_LEVEL="error"),
    )  # fmt: skip


def gaps(data: Path) -> tuple[int, list[dict[str, object]]]:
    res = subprocess.run([TRAIL, "gaps", "--format", "json", "--data-dir", str(data)], capture_output=True,
                         text=True, timeout=120, env=trail_env(), check=False)  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def stored(up: Up) -> int:
    return int(up.health()["sink"]["stored"])


def kill_when_announced(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    producer = proc.stdout.readline().strip()
    assert producer.startswith("svc-tail/"), producer
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return producer


@pytest.fixture()
def up(tmp_path: Path) -> Iterator[Up]:
    env = trail_env(TRAIL_SUBJECT_KEY=TEST_KEY.decode(), TRAIL_SINK_BATCH_SECONDS="0.2", TRAIL_LOG_FORMAT="json")
    u = Up(tmp_path / "data", env, tmp_path / "up.log")
    yield u
    u.stop()


def test_a_killed_services_tail_is_reported_by_gaps(up: Up, tmp_path: Path) -> None:
    proc = service(up, tmp_path / "spool", "plain", 200, 500)
    producer = kill_when_announced(proc)
    wait_for(lambda: stored(up) >= 200, 60, what="the delivered events stored")
    code, rows = gaps(up.data)
    assert code == 1
    tail = [r for r in rows if r["producer_id"] == producer]
    assert [(r["first_missing"], r["last_missing"], r["missing"]) for r in tail] == [(201, 500, 300)]
    assert tail[0]["detail"] == f"producer {producer} claimed up to 500, the trail holds up to 200"


def test_in_durable_mode_the_next_client_records_the_tail_again(up: Up, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    producer = kill_when_announced(service(up, spool, "durable", 200, 500))
    wait_for(lambda: stored(up) >= 200, 60, what="the delivered events stored")
    replay = service(up, spool, "replay", 100, 0)
    assert replay.communicate(timeout=120)[0].strip() == "replayed" and replay.returncode == 0
    wait_for(lambda: stored(up) >= 500, 60, what="the tail stored again")
    res = subprocess.run([TRAIL, "counts", "--format", "json", "--data-dir", str(up.data)], capture_output=True,
                         text=True, timeout=120, env=trail_env(), check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["events"] == 500, res.stdout  # every event once, none lost
    code, rows = gaps(up.data)
    assert (code, rows) == (0, []), (producer, rows)
