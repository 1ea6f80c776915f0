"""Waiting for events to be stored also waits for the sink to hand them to the sealer, so a
seal right after (what ``trail demo`` and ``trail verify --strict`` do) covers all of them.

The sink inserts a batch, commits its offsets and only then tells the sealer; under load the
rows are visible in the store a while before the sealer has them. A sealer slow to take them
stands in for that load here."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import SinkThread
from trail.ingest.sink import Sink, SinkConfig
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import generate
from trail.integrity.sealer import Sealer
from trail.local.broker import LocalBroker
from trail.local.stack import wait_stored
from trail.sdk.client import Client
from trail.sdk.transport import KafkaTransport
from trail.storage import integrity as sql
from trail.storage.store import Store
from trail.testing import TEST_KEY

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

EXTRA = {"purpose": "answer support ticket", "legal_basis": "contract", "target": {"system": "crm"}}


class SlowSealer(Sealer):
    """A real sealer that takes its time to accept what the sink stored."""

    taken = threading.Event()

    def add_positions(self, positions: Iterable[tuple[str, int, str, str]]) -> None:
        time.sleep(1.5)
        super().add_positions(positions)
        self.taken.set()


def test_wait_stored_returns_only_after_the_sealer_has_the_events(
    broker: LocalBroker, topics: dict[str, str], store: Store, tmp_path: Path
) -> None:
    sealer = SlowSealer(store, generate(), AppendOnlyLog(tmp_path / "checkpoints.jsonl"))
    cfg = SinkConfig(
        bootstrap=broker.bootstrap,
        topic=topics["events"],
        deadletter_topic=topics["deadletter"],
        group_id=f"{topics['events']}.sink",
        batch_size=5000,
        batch_seconds=0.2,
        seal_seconds=0,  # sealing only when asked, as `trail verify` asks
    )
    sink = SinkThread(Sink(cfg, store, sealer)).start()
    client = Client(
        service="svc", transport=KafkaTransport(broker.bootstrap, topics["events"], timeout_s=5),
        subject_key=TEST_KEY, spool_dir=tmp_path / "spool",
    )  # fmt: skip
    try:
        n = 200
        for i in range(n):
            client.record(
                actor={"kind": "staff", "id": "E1"},
                action="view",
                subject_ids=[f"S{i}"],
                data_categories=["phone"],
                **EXTRA,
            )
        assert client.flush(timeout=30)
        assert wait_stored(store, sink.sink, n, timeout=60) == n
        sealer.seal()
        assert sealer.sealed_events == n
        assert sql.unsealed_positions(store) == []
    finally:
        client.close(timeout=10)
        sink.stop()
