"""``trail serve``: the API as its own production role, against Kafka, a ClickHouse server and
the PostgreSQL incident store (each opened once for the process and shared by its threads).

SIGTERM or SIGINT: stop taking requests, finish those in flight, flush the SDK clients (the
access log and recorded events), close. Exit 2 on configuration errors, 3 when the store or
the broker is unreachable at start.
"""

from __future__ import annotations

import threading
from typing import Any

from trail.config import Settings, resolve_bootstrap
from trail.errors import ConfigError, StoreError, TrailError
from trail.files import private_umask
from trail.logging import get_logger
from trail.wiring import incident_service, run_until_signal, stop_on_signal

log = get_logger("trail.serve")


class _Serving:
    def __init__(self) -> None:
        self.server: Any = None
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.5):
            if self.server is not None and not self.server.running:
                raise TrailError(f"the API stopped: {self.server.error}")

    def stop(self) -> None:
        self._stop.set()


def check_production(settings: Settings) -> None:
    if settings.mode == "production":
        if not settings.clickhouse_dsn or settings.clickhouse_dsn.startswith("chdb://"):
            raise ConfigError("TRAIL_CLICKHOUSE_DSN: trail serve in production needs a ClickHouse server (http(s)://)")
        if not settings.incident_store or settings.incident_store.startswith("sqlite://"):
            raise ConfigError("TRAIL_INCIDENT_STORE: trail serve in production needs PostgreSQL (postgresql://...)")


def run_serve(settings: Settings) -> int:
    from trail.api.app import create_app
    from trail.api.server import ApiServer
    from trail.incidents.commands import LocalIncidents
    from trail.service import build_api_services
    from trail.storage.store import open_store

    private_umask()

    try:
        check_production(settings)
        bootstrap = resolve_bootstrap(settings)
        store = open_store(settings.store_dsn, settings.clickhouse_database)
    except ConfigError as exc:
        log.error("serve.config", reason=str(exc))
        return 2
    except StoreError as exc:
        log.error("serve.store_failed", reason=str(exc))
        return 3
    incidents = LocalIncidents(incident_service(settings, store))
    services = build_api_services(settings, store, bootstrap, incidents=incidents)
    serving = _Serving()
    # The socket takes connections as soon as it is bound: a SIGTERM from then on is a clean stop.
    stop_on_signal(serving, "serve")
    server = serving.server = ApiServer(create_app(services), settings).start()
    log.info("serve.ready", api=server.url, kafka=bootstrap)

    def cleanup() -> None:
        server.stop()
        services.close()
        incidents.service.shutdown()
        store.close()
        log.info("serve.stopped")

    return run_until_signal(serving, "serve", errors=((TrailError, 3, "failed"),), cleanup=cleanup)
