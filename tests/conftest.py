"""Shared fixtures: the real local broker (Tansu), real chDB, and an internal-error guard."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trail import logging as trail_logging
from trail.ingest.sink import Sink, SinkConfig
from trail.local.broker import LocalBroker, ensure_topics
from trail.storage.store import Store

BIN = Path(sys.executable).parent
TRAIL = str(BIN / "trail")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test whose code under test logged an internal error it swallowed."""
    before = len(trail_logging.internal_errors)
    yield
    new = trail_logging.internal_errors[before:]
    if new and not request.node.get_closest_marker("allow_internal_errors"):
        pytest.fail(f"code under test logged internal errors: {new}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_internal_errors: the test provokes internal errors on purpose")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One Tansu broker for the session, on a free port."""
    b = LocalBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log").start()
    yield b
    b.stop()


@pytest.fixture()
def namespace() -> str:
    """A topic prefix of this test's own, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture()
def topics(broker: LocalBroker, namespace: str) -> dict[str, str]:
    names = {k: f"{namespace}trail.{k}" for k in ("events", "deadletter", "alerts")}
    ensure_topics(broker.bootstrap, {names["events"]: 2, names["deadletter"]: 1, names["alerts"]: 1})
    return names


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("chdb")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def store(chdb_path: Path) -> Iterator[Store]:
    """A real chDB store with a database of this test's own, migrated."""
    s = Store(f"chdb://{chdb_path}", f"t_{uuid.uuid4().hex[:12]}")
    s.migrate()
    yield s
    s.command("DROP DATABASE IF EXISTS {db}")


class SinkThread:
    """A real Sink running in a thread of the test process (sharing its chDB session)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.sink.run()
        except BaseException as exc:  # noqa: BLE001  # surfaced to the test through .error
            self.error = exc

    def start(self) -> SinkThread:
        self.thread.start()
        assert self.sink.ready.wait(30), "sink did not start"
        return self

    def stop(self) -> None:
        self.sink.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "sink did not stop"


@pytest.fixture()
def make_sink(broker: LocalBroker, topics: dict[str, str], store: Store) -> Iterator[Any]:
    started: list[SinkThread] = []

    def make(**overrides: Any) -> SinkThread:
        cfg = SinkConfig(
            bootstrap=broker.bootstrap,
            topic=topics["events"],
            deadletter_topic=topics["deadletter"],
            group_id=f"{topics['events']}.sink",
            batch_size=overrides.pop("batch_size", 5000),
            batch_seconds=overrides.pop("batch_seconds", 0.3),
            **overrides,
        )
        st = SinkThread(Sink(cfg, store)).start()
        started.append(st)
        return st

    yield make
    for st in started:
        if st.thread.is_alive():
            st.stop()


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    assert value, f"timed out after {timeout}s waiting for {what}"
    return value


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:
    """Read every record of ``topic`` from the beginning until ``expect`` arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, bootstrap_timeout_ms=10000)
    try:
        parts = wait_for(lambda: consumer.partitions_for_topic(topic), 10, what=f"partitions of {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                out.extend(recs)
        # a short extra poll: more than expected is a finding too
        for recs in consumer.poll(timeout_ms=300).values():
            out.extend(recs)
        return out
    finally:
        consumer.close()


def trail_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAIL_")}
    env.update(extra)
    return env


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=group, enable_auto_commit=False)
    try:
        parts = c.partitions_for_topic(topic) or set()
        out = {}
        for p in parts:
            off = c.committed(TopicPartition(topic, p))
            out[p] = off or 0
        return out
    finally:
        c.close()
