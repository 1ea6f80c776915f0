"""``trail up``: the whole local stack in one process, and how other commands find it.

One process owns the chDB directory (chDB allows one process per directory), so the
broker subprocess, the sink, the store and the HTTP API live together here, and other
commands reach the store through the API while this runs. ``DIR/server.json`` says where:
``{"api": URL, "kafka": "host:port", "pid": N}``; it is written once everything is ready
and removed on a clean stop.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from trail import wiring
from trail.config import Settings, running_server, server_file
from trail.config import resolve_bootstrap as resolve_bootstrap
from trail.errors import TrailError
from trail.files import private_dir, private_umask, write_private
from trail.incidents.commands import LocalIncidents
from trail.ingest.sink import Sink
from trail.integrity.sealer_role import SealerRole
from trail.local.broker import LocalBroker, ensure_topics
from trail.logging import get_logger
from trail.storage.store import Store

log = get_logger("trail.stack")
EVENTS_PARTITIONS = 4


class LocalStack:
    """Broker + sink + store + API, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: LocalBroker | None = None
        self.store: Store | None = None
        self.sink: Sink | None = None
        self.services: Any = None
        self._sink_thread: threading.Thread | None = None
        self.detection: wiring.DetectionHandle | None = None
        self.incidents: Any = None
        self.trigger: Any = None
        self._trigger_thread: threading.Thread | None = None
        self._trigger_error: BaseException | None = None
        self._sink_error: BaseException | None = None
        self.sealer: SealerRole | None = None
        self._sealer_thread: threading.Thread | None = None
        self._sealer_error: BaseException | None = None
        self._server: Any = None
        self.api_url = ""

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap

    def start(self) -> LocalStack:
        s = self.settings
        private_umask()  # the stack's own files and those chDB and SQLite create are private
        private_dir(s.data_dir)
        other = running_server(s)
        if other:
            raise TrailError(f"trail up already runs on {s.data_dir} (pid {other['pid']}); stop it first")
        server_file(s).unlink(missing_ok=True)
        try:
            self.store = wiring.open_trail_store(s)
            self.broker = LocalBroker(log_path=s.data_dir / "broker.log", pid_file=s.data_dir / "broker.pid").start()
            ensure_topics(
                self.bootstrap,
                {
                    s.topic("events"): EVENTS_PARTITIONS,
                    s.topic("deadletter"): 1,
                    s.topic("alerts"): 1,
                    s.topic("checkpoints"): 1,
                    s.topic("producers"): 1,
                },
            )
            self.sink = wiring.build_sink(s, self.store, self.bootstrap, sealing=False)
            self._sink_thread = threading.Thread(target=self._run_sink, name="trail-sink", daemon=True)
            self._sink_thread.start()
            self._start_sealer()
            # The broker's log is new at every start: the detector's checkpoint of an earlier log
            # keeps its windows and published ids, not its offsets.
            assert self.broker is not None
            self.detection = wiring.start_detection(
                s, self.store, self.bootstrap, detector_overrides={"log_id": self.broker.log_id}
            )
            self._start_incidents()
            self._start_api()
            if not self.sink.ready.wait(timeout=30):
                raise TrailError("the sink did not start within 30 s")
            self._write_server_file()
        except BaseException:
            self.stop()
            raise
        log.info("stack.ready", api=self.api_url, kafka=self.bootstrap, data_dir=str(s.data_dir))
        return self

    def _start_api(self) -> None:
        """The API (its own thread), and in local mode the local principal and its token file."""
        from trail.access.store import open_access_store
        from trail.api.app import create_app
        from trail.api.server import ApiServer
        from trail.service import build_api_services

        s = self.settings
        access = open_access_store(s)
        if s.mode == "local":
            ensure_local_token(access, s)
        self.services = build_api_services(
            s,
            self.store,  # type: ignore[arg-type]
            self.bootstrap,
            incidents=self.incidents,
            seal=self._seal_now,
            extra_health=self._health,
            access=access,
        )
        self._server = ApiServer(create_app(self.services), s).start()
        self.api_url = self._server.url

    @property
    def client(self) -> Any:
        """The SDK client of the events recorded through the API."""
        return self.services.backend.client if self.services is not None else None

    def _start_incidents(self) -> None:
        """The incident service over this store, and the trigger on trail.alerts in a thread."""
        service = wiring.incident_service(self.settings, self.store)
        self.incidents = LocalIncidents(service)
        self.trigger = wiring.build_trigger(self.settings, service, self.store, self.bootstrap)

        def run() -> None:
            try:
                self.trigger.run()
            except BaseException as exc:  # reported through health and on stop
                self._trigger_error = exc
                log.exception("stack.trigger_failed", internal=True)

        self._trigger_thread = threading.Thread(target=run, name="trail-incident-trigger", daemon=True)
        self._trigger_thread.start()
        if not self.trigger.ready.wait(timeout=30):
            raise TrailError(f"the incident trigger did not start within 30 s: {self._trigger_error or 'no error'}")

    def _run_sink(self) -> None:
        assert self.sink is not None
        try:
            self.sink.run()
        except BaseException as exc:  # reported through health and on stop
            self._sink_error = exc
            log.exception("stack.sink_failed", internal=True)

    def _start_sealer(self) -> None:
        """The sealer role in a thread (``TRAIL_CHECKPOINT_SECONDS=0`` turns sealing off): it
        seals from the events topic what the sink has stored, as a deployment's sealer does."""
        if self.settings.checkpoint_seconds <= 0:
            return
        assert self.store is not None
        role = self.sealer = wiring.build_sealer_role(self.settings, self.store, self.bootstrap)

        def run() -> None:
            try:
                role.run()
            except BaseException as exc:  # reported through health and on stop
                self._sealer_error = exc
                log.exception("stack.sealer_failed", internal=True)

        self._sealer_thread = threading.Thread(target=run, name="trail-sealer", daemon=True)
        self._sealer_thread.start()

    def _seal_now(self, timeout_s: float = 30.0) -> None:
        """Seal what the sink committed (before a verify, a proof, a list of checkpoints). A sealer
        that is down or slow is logged, not raised: what it did not seal is reported as unsealed."""
        sealer, thread = self.sealer, self._sealer_thread
        if sealer is None or thread is None or not thread.is_alive():
            if self.settings.checkpoint_seconds > 0:
                log.warning("stack.sealer_not_running", error=str(self._sealer_error) if self._sealer_error else None)
            return
        try:
            sealer.seal_now(timeout_s=timeout_s)
        except TrailError as exc:
            log.warning("stack.seal_failed", error=str(exc))

    def _health(self) -> dict[str, Any]:
        sink, sealer = self.sink, self.sealer
        sealer_error = str(self._sealer_error) if self._sealer_error else (sealer.error if sealer else None)
        return {
            **(self.detection.health() if self.detection else {}),
            "kafka": self.bootstrap if self.broker else None,
            "sink": {
                "running": bool(self._sink_thread and self._sink_thread.is_alive()),
                "stored": sink.stats.stored if sink else 0,
                "deadlettered": sink.stats.deadlettered if sink else 0,
                "error": str(self._sink_error) if self._sink_error else None,
            },
            "sealer": {
                "running": bool(self._sealer_thread and self._sealer_thread.is_alive()),
                "leading": bool(sealer and sealer.leading),
                "checkpoints": sealer.checkpoints if sealer else 0,
                "error": sealer_error,
            },
            "incident_trigger": {
                "running": bool(self._trigger_thread and self._trigger_thread.is_alive()),
                "opened": self.trigger.stats.opened if self.trigger else 0,
                "attached": self.trigger.stats.attached if self.trigger else 0,
                "error": str(self._trigger_error) if self._trigger_error else None,
            },
        }

    def _write_server_file(self) -> None:
        path = server_file(self.settings)
        write_private(path, json.dumps({"api": self.api_url, "kafka": self.bootstrap, "pid": os.getpid()}).encode())

    def wait_stored(self, count: int, timeout: float = 60.0) -> int:
        """Wait until the store holds at least ``count`` distinct events and the sink has
        committed them (so a seal now covers them); returns the count."""
        assert self.store is not None
        return wait_stored(self.store, self.sink, count, timeout)

    def stop(self) -> None:
        """Flush and stop, in order: API, SDK client, sink (flush + commit), broker, store."""
        server_file(self.settings).unlink(missing_ok=True)
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.services is not None:
            self.services.close()
            self.services = None
        if self.trigger is not None:
            self.trigger.stop()
            if self._trigger_thread is not None:
                self._trigger_thread.join(timeout=30)
            self.trigger = None
        if self.incidents is not None:
            self.incidents.service.shutdown()
            self.incidents = None
        if self.detection is not None:
            self.detection.stop()
            self.detection = None
        if self.sink is not None:
            self.sink.stop()
            if self._sink_thread is not None:
                self._sink_thread.join(timeout=30)
            self.sink = None
        if self.sealer is not None:
            self._seal_now(timeout_s=15)  # everything the sink committed, before the broker goes
            self.sealer.stop()
            if self._sealer_thread is not None:
                self._sealer_thread.join(timeout=30)
            self.sealer = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.store is not None:
            self.store.close()
            self.store = None
        log.info("stack.stopped", data_dir=str(self.settings.data_dir))


def wait_stored(store: Store, sink: Sink | None, count: int, timeout: float = 60.0) -> int:
    """Wait until ``store`` holds at least ``count`` distinct events and ``sink`` has committed
    every insert the store showed; returns the count. Rows become visible when the insert
    returns, a moment before the sink commits their offsets (and tells a sealer of its own): the
    sealer seals only what the sink committed, so a seal in between would leave them out."""
    deadline = time.monotonic() + timeout
    n = store.count_events()
    while n < count and time.monotonic() < deadline:
        time.sleep(0.2)
        n = store.count_events()
    if sink is not None:
        mark = sink.inserts_begun  # read after the rows were seen: their insert is at most this one
        while not sink.handed_to_sealer(mark) and time.monotonic() < deadline:
            time.sleep(0.05)
    return n


def ensure_local_token(access: Any, settings: Settings) -> None:
    """The local principal (every role) and a valid token of it in ``DATA_DIR/keys/local.token``
    (0600), which the command line on this machine uses when ``TRAIL_TOKEN`` is unset."""
    principal = access.ensure_local()
    path = settings.local_token_path
    try:
        current = path.read_text().strip()
    except OSError:
        current = ""
    if current:
        auth = access.authenticate(current)
        if auth.state == "active" and auth.principal is not None and auth.principal.name == principal.name:
            return
    if principal.disabled:
        access.set_disabled(principal.name, False)
    _tok, secret = access.create_token(principal.name, by="trail up", expires_at=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.replace(tmp, path)
