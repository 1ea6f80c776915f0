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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from trail.api.server import make_server, serve_in_thread
from trail.config import Settings
from trail.detect.runtime import DetectionHandle, start_detection
from trail.errors import ConfigError, TrailError
from trail.ingest.sink import Sink, SinkConfig
from trail.integrity.sealer import make_sealer
from trail.local.broker import LocalBroker, ensure_topics
from trail.logging import get_logger
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport, KafkaTransport
from trail.service import QueryFilters, emit_lines, gaps_as_dicts, query, store_writer
from trail.storage.store import Store, open_store

log = get_logger("trail.stack")
EVENTS_PARTITIONS = 4


def server_file(settings: Settings) -> Path:
    return settings.data_dir / "server.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_server(settings: Settings) -> dict[str, Any] | None:
    """The ``server.json`` of a live ``trail up`` on this data directory, else None."""
    path = server_file(settings)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not _pid_alive(int(info.get("pid", -1))):
        return None
    return info


def resolve_bootstrap(settings: Settings) -> str:
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    info = running_server(settings)
    if info and info.get("kafka"):
        return str(info["kafka"])
    raise ConfigError(
        f"no broker: set TRAIL_KAFKA_BOOTSTRAP, or start the local stack with `trail up --data-dir {settings.data_dir}`"
    )


class StoreBackend:
    """The API's operations over a store and an SDK client (used by the stack and the CLI)."""

    def __init__(
        self,
        store: Store,
        client: Client,
        extra_health: Any = None,
        *,
        settings: Settings,
        seal: Any = None,
    ) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self.incidents: Any = None
        self.seal = seal
        self._extra_health = extra_health
        self._emit_lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "store": self.store.ping()}
        s = self.client.stats
        out["sdk"] = {"recorded": s.recorded, "sent": s.sent, "spooled": s.spooled, "last_error": s.last_error}
        if self._extra_health:
            out.update(self._extra_health())
        return out

    def emit(self, lines: list[bytes]) -> dict[str, Any]:
        with self._emit_lock:
            return emit_lines(self.client, lines).as_dict()

    def query(self, kind: str, key: str | None, filters: QueryFilters) -> list[dict[str, Any]]:
        return query(self.store, kind, key, filters)

    def gaps(self, producer: str | None) -> list[dict[str, Any]]:
        return gaps_as_dicts(self.store.gaps(producer))

    def counts(self) -> dict[str, Any]:
        return self.store.counts()

    # -- integrity --------------------------------------------------------------------
    def verify(self, since: int | None, strict: bool, public_key: str | None = None) -> dict[str, Any]:
        from trail.integrity.checkpoint import AppendOnlyLog
        from trail.integrity.keys import load_public_key
        from trail.integrity.verify import Verifier

        s = self.settings
        if self.seal is not None:
            self.seal()  # seal what is stored so far, so the report covers it
        report = Verifier(
            self.store,
            load_public_key(public_key or s.public_key_path),
            AppendOnlyLog(s.checkpoint_log_path),
            strict=strict,
        ).run(since)
        return {"summary": report.summary(), "findings": [f.as_dict() for f in report.findings]}

    def proof(self, event_id: str) -> dict[str, Any]:
        from trail.integrity.proof import build_proof

        if self.seal is not None:
            self.seal()
        return build_proof(self.store, event_id)

    def retention(self, before: str, reason: str) -> dict[str, Any]:
        from trail.events.model import parse_timestamp
        from trail.integrity.checkpoint import AppendOnlyLog
        from trail.integrity.proof import apply_retention

        s = self.settings
        rec = apply_retention(
            self.store,
            s.signing_key(),
            AppendOnlyLog(s.checkpoint_log_path),
            parse_timestamp("--before", before),
            reason,
        )
        return {"applied": rec is not None, "record": rec.record() if rec else None}


def direct_backend(settings: Settings, service: str = "trail-cli") -> StoreBackend:
    """Open the data directory in-process: the store, and an SDK client writing straight to it."""
    store = open_store(settings.store_dsn, settings.clickhouse_database)
    client = Client(
        service=service,
        transport=CallbackTransport(store_writer(store)),
        subject_key=settings.require_subject_key(),
        spool_dir=settings.effective_spool_dir,
        spool_max_bytes=settings.spool_max_bytes,
        environment=settings.mode,
    )
    return StoreBackend(store, client, settings=settings, seal=_direct_sealer(settings, store))


def _direct_sealer(settings: Settings, store: Store) -> Any:
    """Without a running sink, direct writes are sealed by this process (if sealing is on)."""
    sealer = make_sealer(settings, store, None)
    if sealer is None:
        return None

    def seal() -> None:
        sealer.refresh_from_store()  # everything stored beyond the sealed tips
        sealer.seal()

    return seal


class LocalStack:
    """Broker + sink + store + API, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: LocalBroker | None = None
        self.store: Store | None = None
        self.sink: Sink | None = None
        self.client: Client | None = None
        self._sink_thread: threading.Thread | None = None
        self.detection: DetectionHandle | None = None
        self.incidents: Any = None
        self.trigger: Any = None
        self._trigger_thread: threading.Thread | None = None
        self._trigger_error: BaseException | None = None
        self._sink_error: BaseException | None = None
        self._server: Any = None
        self.api_url = ""

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap

    def start(self) -> LocalStack:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        other = running_server(s)
        if other:
            raise TrailError(f"trail up already runs on {s.data_dir} (pid {other['pid']}); stop it first")
        server_file(s).unlink(missing_ok=True)
        try:
            self.store = open_store(s.store_dsn, s.clickhouse_database)
            self.broker = LocalBroker(log_path=s.data_dir / "broker.log").start()
            ensure_topics(
                self.bootstrap,
                {
                    s.topic("events"): EVENTS_PARTITIONS,
                    s.topic("deadletter"): 1,
                    s.topic("alerts"): 1,
                    s.topic("checkpoints"): 1,
                },
            )
            self.sink = Sink(
                SinkConfig(
                    bootstrap=self.bootstrap,
                    topic=s.topic("events"),
                    deadletter_topic=s.topic("deadletter"),
                    group_id=f"{s.namespace}trail-sink",
                    batch_size=s.sink_batch_size,
                    batch_seconds=s.sink_batch_seconds,
                    max_deadletter_ratio=s.sink_max_deadletter_ratio,
                    seal_seconds=s.checkpoint_seconds,
                ),
                self.store,
                make_sealer(s, self.store, self.bootstrap),
            )
            self._sink_thread = threading.Thread(target=self._run_sink, name="trail-sink", daemon=True)
            self._sink_thread.start()
            # The broker's log is new at every start: the detector's checkpoint of an earlier log
            # keeps its windows and published ids, not its offsets.
            assert self.broker is not None
            self.detection = start_detection(
                s, self.store, self.bootstrap, detector_overrides={"log_id": self.broker.log_id}
            )
            self._start_incidents()
            self.client = Client(
                service="trail-api",
                transport=KafkaTransport(self.bootstrap, s.topic("events")),
                subject_key=s.require_subject_key(),
                spool_dir=s.effective_spool_dir,
                spool_max_bytes=s.spool_max_bytes,
                environment=s.mode,
            )
            backend = StoreBackend(self.store, self.client, self._health, settings=s, seal=self._seal_now)
            backend.incidents = self.incidents
            self._server = make_server(backend, s.api_host, s.api_port)
            serve_in_thread(self._server)
            host, port = self._server.server_address[:2]
            self.api_url = f"http://{host}:{port}"
            if not self.sink.ready.wait(timeout=30):
                raise TrailError("the sink did not start within 30 s")
            self._write_server_file()
        except BaseException:
            self.stop()
            raise
        log.info("stack.ready", api=self.api_url, kafka=self.bootstrap, data_dir=str(s.data_dir))
        return self

    def _start_incidents(self) -> None:
        """The incident service over this store, and the trigger on trail.alerts in a thread."""
        from trail.incidents.commands import LocalIncidents
        from trail.incidents.trigger import IncidentTrigger, incident_service, trigger_config

        service = incident_service(self.settings, self.store)
        self.incidents = LocalIncidents(service)
        self.trigger = IncidentTrigger(trigger_config(self.settings, self.bootstrap), service, self.store)

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

    def _seal_now(self) -> None:
        if self.sink is not None and self.sink.sealer is not None:
            self.sink.sealer.seal()

    def _health(self) -> dict[str, Any]:
        sink = self.sink
        return {
            **(self.detection.health() if self.detection else {}),
            "kafka": self.bootstrap if self.broker else None,
            "sink": {
                "running": bool(self._sink_thread and self._sink_thread.is_alive()),
                "stored": sink.stats.stored if sink else 0,
                "deadlettered": sink.stats.deadlettered if sink else 0,
                "error": str(self._sink_error) if self._sink_error else None,
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
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"api": self.api_url, "kafka": self.bootstrap, "pid": os.getpid()}))
        os.replace(tmp, path)

    def wait_stored(self, count: int, timeout: float = 60.0) -> int:
        """Wait until the store holds at least ``count`` distinct events; returns the count."""
        assert self.store is not None
        deadline = time.monotonic() + timeout
        n = self.store.count_events()
        while n < count and time.monotonic() < deadline:
            time.sleep(0.2)
            n = self.store.count_events()
        return n

    def stop(self) -> None:
        """Flush and stop, in order: API, SDK client, sink (flush + commit), broker, store."""
        server_file(self.settings).unlink(missing_ok=True)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.client is not None:
            self.client.close(timeout=10)
            self.client = None
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
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.store is not None:
            self.store.close()
            self.store = None
        log.info("stack.stopped", data_dir=str(self.settings.data_dir))


class ApiClient:
    """What the CLI uses while ``trail up`` runs."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310  # local API URL
        if body is not None:
            req.add_header("Content-Type", "application/x-ndjson")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                msg = exc.reason
            raise TrailError(f"trail up answered {exc.code}: {msg}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TrailError(f"cannot reach trail up at {self.url}: {exc}") from None

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/health"))

    def emit(self, lines: list[bytes]) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/events", b"\n".join(lines)))

    def query(self, kind: str, key: str | None, filters: QueryFilters) -> list[dict[str, Any]]:
        from urllib.parse import urlencode

        params = filters.as_params()
        if kind == "actor" and key:
            params["actor"] = key
        elif kind == "subject" and key:
            params["subject_ref"] = key
        return list(self._call("GET", "/v1/events?" + urlencode(params))["events"])

    def gaps(self, producer: str | None) -> list[dict[str, Any]]:
        from urllib.parse import urlencode

        suffix = "?" + urlencode({"producer": producer}) if producer else ""
        return list(self._call("GET", "/v1/gaps" + suffix)["gaps"])

    def counts(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/counts"))

    def verify(self, since: int | None, strict: bool, public_key: str | None = None) -> dict[str, Any]:
        from urllib.parse import urlencode

        params = {"strict": "1" if strict else "0"}
        if public_key:
            params["public_key"] = public_key
        if since is not None:
            params["since"] = str(since)
        return dict(self._call("GET", "/v1/verify?" + urlencode(params)))

    def proof(self, event_id: str) -> dict[str, Any]:
        from urllib.parse import quote

        return dict(self._call("GET", "/v1/proof/" + quote(event_id)))

    def retention(self, before: str, reason: str) -> dict[str, Any]:
        body = json.dumps({"before": before, "reason": reason}).encode()
        return dict(self._call("POST", "/v1/retention", body))
