"""Fixtures and helpers for the detection tests (imported by tests/integration/test_detect*.py).

Incidents and look-alikes are synthetic events (synthetic ids only), all on Wednesday
2026-11-18 (Asia/Shanghai, UTC+8), each under an actor of its own so an alert names its case.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from tests.conftest import read_topic
from trail.config import Settings
from trail.detect.alerts import Alert
from trail.detect.consumer import Detector, DetectorConfig
from trail.detect.rules import RuleSet, load_rules
from trail.local.broker import ensure_topics
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport, KafkaTransport
from trail.storage.store import Store
from trail.storage.writer import store_writer
from trail.testing import TEST_KEY

DAY = datetime(2026, 11, 18, tzinfo=UTC)  # a Wednesday
APPROVED = ("svc-nightly-export", "svc-retention")


def at(local_hour: float, minutes: float = 0, seconds: float = 0) -> str:
    """RFC 3339 UTC for a local (UTC+8) time on the scenario day."""
    t = DAY + timedelta(hours=local_hour - 8, minutes=minutes, seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ev(actor: str, when: str, *, kind: str = "staff", role: str = "support", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": when,
        "actor": {"kind": kind, "id": actor, "role": role, "department": "care"},
        "action": "view",
        "subject_ids": ["SUBJ-TEST-000001"],
        "data_categories": ["name", "phone"],
        "purpose": "answer support ticket",
        "legal_basis": "contract",
        "target": {"system": "crm", "dataset": "customers"},
        "location": {"site": "test-site", "region": "CN-GD"},
    }
    base.update(over)
    return base


def bulk(**over: Any) -> dict[str, Any]:
    return {"subject_ids": [], **over}


def subjects(prefix: str, start: int, n: int) -> list[str]:
    return [f"SUBJ-TEST-{prefix}-{i:06d}" for i in range(start, start + n)]


#: (rule, actor) → events; the rule must fire for the actor.
def incidents() -> dict[tuple[str, str], list[dict[str, Any]]]:
    return {
        ("bulk_export", "E-EXP-1"): [
            ev("E-EXP-1", at(10), action="export", record_count=1500, destination={"kind": "file"}, **bulk())
        ],
        ("bulk_export", "E-EXP-2"): [
            ev("E-EXP-2", at(9 + h), action="copy", record_count=900, destination={"kind": "media"}, **bulk())
            for h in range(6)
        ],
        ("bulk_destruction", "E-DEL-1"): [ev("E-DEL-1", at(11), action="delete", record_count=5000, **bulk())],
        ("enumeration", "E-ENUM-1"): [
            ev("E-ENUM-1", at(14, m * 2), subject_ids=subjects("EN1", m * 20, 20)) for m in range(26)
        ],
        ("volume_anomaly", "E-VOL-1"): [
            ev("E-VOL-1", at(15, seconds=s * 20), role="analyst", data_categories=["account"]) for s in range(150)
        ],
        ("off_hours", "E-NIGHT-1"): [
            ev("E-NIGHT-1", at(23), data_categories=["health"], legal_basis="consent", consent_ref="C-TEST-1")
        ],
        ("sensitive_without_consent", "E-SENS-1"): [ev("E-SENS-1", at(10, 30), data_categories=["biometric"])],
        ("after_withdrawal", "E-AW-1"): [
            ev(
                "S-TEST-W",
                at(10),
                kind="subject",
                action="consent_withdraw",
                subject_ids=["SUBJ-TEST-W1"],
                legal_basis="consent",
                consent_ref="C-TEST-W",
            ),
            ev("E-AW-1", at(10, 30), subject_ids=["SUBJ-TEST-W1"]),
        ],
        ("cross_border", "E-XB-1"): [
            ev(
                "E-XB-1",
                at(12),
                action="transfer",
                record_count=10,
                destination={"kind": "abroad", "name": "partner", "region": "SG"},
                **bulk(),
            )
        ],
        ("denied_burst", "E-DEN-1"): [ev("E-DEN-1", at(16, seconds=s * 12), outcome="denied") for s in range(25)],
    }


#: name → events that must raise no alert.
def lookalikes() -> dict[str, list[dict[str, Any]]]:
    return {
        "approved-nightly-export": [
            ev(
                "svc-nightly-export",
                at(23, m),
                kind="service",
                role="batch",
                action="export",
                record_count=20_000,
                destination={"kind": "file"},
                **bulk(),
            )
            for m in (0, 20)
        ],
        "export-4500-a-day": [
            ev("E-EXP-3", at(9 + h), action="export", record_count=900, destination={"kind": "file"}, **bulk())
            for h in range(5)
        ],
        "approved-retention-run": [
            ev("svc-retention", at(13), kind="service", role="batch", action="destroy", record_count=50_000, **bulk())
        ],
        "busy-support-agent": [
            ev("E-ENUM-2", at(14, m * 2), subject_ids=subjects("EN2", m * 10, 10)) for m in range(30)
        ],
        "busy-analyst-hour": [
            ev("E-VOL-2", at(15, seconds=s * 100), role="analyst", data_categories=["account"]) for s in range(30)
        ],
        "evening-small-batch": [ev("E-NIGHT-2", at(21), record_count=50, **bulk())],
        "sensitive-with-consent": [
            ev("E-SENS-2", at(10), data_categories=["health"], legal_basis="consent", consent_ref="C-TEST-2")
        ],
        "erasure-after-withdrawal": [
            ev("E-AW-2", at(11), action="delete", subject_ids=["SUBJ-TEST-W1"], purpose="erase on withdrawal")
        ],
        "domestic-transfer": [
            ev(
                "E-XB-2",
                at(12),
                action="transfer",
                record_count=10,
                destination={"kind": "third_party", "region": "CN-SH"},
                **bulk(),
            )
        ],
        "few-denied": [ev("E-DEN-2", at(16, seconds=s * 12), outcome="denied") for s in range(15)],
    }


def history() -> list[dict[str, Any]]:
    """What the store already holds: two analysts' usual week (10 events an hour, 09-18)."""
    out = []
    for d in range(9, 14):  # Mon 9 .. Fri 13 November 2026
        for h in range(9, 18):
            for actor in ("E-VOL-1", "E-VOL-2"):
                for s in range(10):
                    t = datetime(2026, 11, d, h - 8, s * 5, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    out.append(ev(actor, t, role="analyst", data_categories=["account"]))
    return out


def scenario() -> list[dict[str, Any]]:
    """Incidents and look-alikes, in event-time order."""
    evs = [e for group in incidents().values() for e in group]
    evs += [e for group in lookalikes().values() for e in group]
    return sorted(evs, key=lambda e: e["occurred_at"])


def rules() -> RuleSet:
    return load_rules(approved_jobs=APPROVED)


def make_topics(bootstrap: str, namespace: str) -> dict[str, str]:
    names = {k: f"{namespace}trail.{k}" for k in ("events", "deadletter", "alerts")}
    ensure_topics(bootstrap, {names["events"]: 2, names["deadletter"]: 1, names["alerts"]: 1})
    return names


def seed_store(store: Store, tmp: Path, events: list[dict[str, Any]]) -> None:
    """Write events straight into the store through the SDK (what an earlier sink stored)."""
    client = Client(
        service="history",
        transport=CallbackTransport(store_writer(store)),
        subject_key=TEST_KEY,
        spool_dir=tmp / "spool-history",
    )
    for e in events:
        client.record(**e)
    assert client.close(timeout=60)


def kafka_client(tmp: Path, bootstrap: str, topic: str, service: str) -> Client:
    return Client(
        service=service,
        transport=KafkaTransport(bootstrap, topic, timeout_s=5),
        subject_key=TEST_KEY,
        spool_dir=tmp / f"spool-{service}",
    )


class WorkerThread:
    """A real consumer (detector, incident trigger, ...) in a thread of the test process, sharing
    its chDB session; anything with ``run()``, ``stop()`` and a ``ready`` event."""

    name = "worker"

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001  # surfaced to the test through .error
            self.error = exc

    def start(self) -> Self:
        self.thread.start()
        for _ in range(300):
            if self.worker.ready.wait(0.1) or self.error is not None:
                break
        assert self.error is None, f"{self.name} failed to start: {self.error!r}"
        assert self.worker.ready.is_set(), f"{self.name} did not start"
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), f"{self.name} did not stop"


class DetectorThread(WorkerThread):
    name = "detector"

    @property
    def detector(self) -> Detector:
        detector: Detector = self.worker
        return detector


def make_detector(
    bootstrap: str, names: dict[str, str], store: Store, detector_cls: type[Detector] = Detector, **cfg: Any
) -> DetectorThread:
    config = DetectorConfig(
        bootstrap=bootstrap,
        topic=names["events"],
        alerts_topic=names["alerts"],
        group_id=f"{names['events']}.detector",
        **cfg,
    )
    return DetectorThread(detector_cls(config, store, rules())).start()


def published(bootstrap: str, alerts_topic: str, expect: int, timeout: float = 30.0) -> list[Alert]:
    return [Alert.from_bytes(r.value) for r in read_topic(bootstrap, alerts_topic, expect, timeout)]


def settings_for(namespace: str) -> Settings:
    return Settings(namespace=namespace)


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return path
