"""Helpers for testing your own SDK wiring (as ``structlog.testing`` does for logs).

    from trail.testing import RecordingTransport, test_client

    def test_view_is_audited(tmp_path):
        transport = RecordingTransport()
        client = test_client(tmp_path, transport, service="crm")
        handle_view(client, customer_id="C1")          # your code
        client.flush()
        [event] = transport.events
        assert event["action"] == "view"
        assert event["subject_refs"] == [client_ref(client, "C1")]

``RecordingTransport`` keeps what the SDK would have sent to the broker, decoded and checked
exactly as the sink checks it, so a test sees the real wire events (pseudonymised, sequenced,
hashed). ``fail()``/``recover()`` let a test see how its service behaves while the broker is
unreachable.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trail.errors import TransportUnavailable
from trail.events.wire import Rejected, decode
from trail.logging import configure
from trail.sdk.client import Client

TEST_KEY = b"trail-testing-key-not-for-production-use-0123456789"


class RecordingTransport:
    """A transport that records what it is given; thread-safe."""

    def __init__(self) -> None:
        self.batches: list[tuple[bytes, list[bytes]]] = []
        self.events: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self._failing = False
        self._lock = threading.Lock()
        self.closed = False

    def fail(self) -> None:
        """From now on every send raises TransportUnavailable (the broker is 'down')."""
        self._failing = True

    def recover(self) -> None:
        self._failing = False

    def send(self, key: bytes, values: list[bytes]) -> None:
        if self._failing:
            raise TransportUnavailable("recording transport set to fail")
        with self._lock:
            self.batches.append((key, list(values)))
            for v in values:
                d = decode(v)
                if isinstance(d, Rejected):
                    self.rejected.append(d.reason)
                else:
                    self.events.append(d)

    def close(self) -> None:
        self.closed = True

    @property
    def raw(self) -> list[bytes]:
        return [v for _, vs in self.batches for v in vs]


def test_client(tmp_path: Path, transport: Any, *, service: str = "test-service", **options: Any) -> Client:
    """A Client with a throw-away spool directory and a fixed test key."""
    options.setdefault("subject_key", TEST_KEY)
    return Client(service=service, transport=transport, spool_dir=Path(tmp_path) / "spool", **options)


test_client.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def client_ref(client: Client, subject_id: str) -> str:
    """The subject reference ``client`` would store for ``subject_id``."""
    return client._pseudo.ref(subject_id)


@contextmanager
def capture_logs(level: str = "debug") -> Iterator[io.StringIO]:
    """Route trail's logs (JSON lines) into a buffer for the duration of the block."""

    buf = io.StringIO()
    configure(level, "json", stream=buf)
    try:
        yield buf
    finally:
        configure("info", "auto")
