"""Serving the ASGI application with uvicorn: in a thread of ``trail up``, or as ``trail serve``.

Limits (``TRAIL_API_*``): a listen backlog fit for hundreds of clients, a cap on open
connections (beyond it: 503), a deadline for a request's headers (a client that trickles them
byte by byte is cut off) and for its body (408), an idle keep-alive timeout. uvicorn has no
header deadline of its own: :class:`GuardedH11Protocol` adds one.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from trail.config import Settings
from trail.errors import TrailError
from trail.logging import get_logger

log = get_logger("trail.api")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.info("api.headers_timeout", client=str(self.client[0]) if self.client else "")
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        if before is None or before.response_complete:
            self._arm()  # between requests: the next one's headers are on the clock
        super().data_received(data)
        if self.cycle is not None and self.cycle is not before:
            self._disarm()  # a request's headers arrived whole

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class ApiServer:
    """The API on a socket of its own, served by uvicorn in a thread (no signal handlers)."""

    def __init__(self, app: Any, settings: Settings, host: str | None = None, port: int | None = None) -> None:
        self.settings = settings
        host = host if host is not None else settings.api_host
        port = port if port is not None else settings.api_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise TrailError(f"the API cannot listen on {host}:{port} ({exc.strerror})") from None
        self.sock.listen(settings.api_backlog)
        protocol = type("Protocol", (GuardedH11Protocol,), {"header_timeout": settings.api_header_timeout})
        config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            limit_concurrency=settings.api_max_connections,
            backlog=settings.api_backlog,
            timeout_keep_alive=max(1, int(settings.api_keepalive_timeout)),
            h11_max_incomplete_event_size=64 * 1024,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # reported by start() and health
            self.error = exc
            log.exception("api.server_failed", internal=True)

    def start(self, timeout: float = 30.0) -> ApiServer:
        self._thread = threading.Thread(target=self._run, name="trail-api", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self.server.started and waited < timeout:
            if self.error is not None or not self._thread.is_alive():
                raise TrailError(f"the API did not start: {self.error}")
            threading.Event().wait(0.05)
            waited += 0.05
        if not self.server.started:
            raise TrailError(f"the API did not start within {timeout:.0f} s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(5)
        self.sock.close()

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())
