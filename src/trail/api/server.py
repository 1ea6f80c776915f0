"""The small HTTP API of ``trail up`` (JSON; bound to 127.0.0.1 by default).

| method | path | body / query | answer |
|---|---|---|---|
| GET | /v1/health | | broker, sink and SDK state |
| POST | /v1/events | JSON lines (one event each) | ``{"accepted", "rejected", "errors"}`` |
| GET | /v1/events | since, until, action, category, actor, subject_ref, limit | ``{"events": [...]}`` |
| GET | /v1/gaps | producer | ``{"gaps": [...]}`` |
| GET | /v1/counts | | counts read from the store |
| GET | /v1/incidents | status | ``{"incidents": [...]}`` with clocks (due soon, overdue) |
| POST | /v1/incidents | ``{"title", "by", "description"?, "discovered_at"?, "facts"?}`` | the incident |
| GET | /v1/incidents/{ref} | | the incident: grade, facts, evidence, steps, obligations with time left |
| GET | /v1/incidents/{ref}/timeline | | its own history, one entry per recorded event |
| GET | /v1/incidents/{ref}/subjects | | the subject refs in its evidence (for notices) |
| POST | /v1/incidents/{ref}/{command} | JSON arguments; ``If-Match: <version>`` optional | the incident after |
| GET | /v1/playbook | | the graded emergency plan in force |

Incident commands (``fact``, ``grade``, ``step``, ``meet``, ``waive``, ``measure``, ``update``,
``contain``, ``resolve``, ``review``, ``close``, ``evidence``, ...) are those of
``trail.incidents.commands``. A refused command answers 400 and records nothing; a change
that lost a race with another responder (or a stale ``If-Match``) answers 409.

Subjects are addressed by their reference (HMAC), never by the raw id: the command line
computes the reference with the organisation's key before it asks.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

from trail.errors import Conflict, NotFound, Refused, StoreError, TrailError, UsageError, ValidationError
from trail.events.model import parse_timestamp
from trail.logging import get_logger
from trail.service import QueryFilters

log = get_logger("trail.api")
MAX_BODY = 256 * 1024 * 1024


class Backend(Protocol):
    def health(self) -> dict[str, Any]: ...
    def emit(self, lines: list[bytes]) -> dict[str, Any]: ...
    def query(self, kind: str, key: str | None, filters: QueryFilters) -> list[dict[str, Any]]: ...
    def gaps(self, producer: str | None) -> list[dict[str, Any]]: ...
    def counts(self) -> dict[str, Any]: ...
    def verify(self, since: int | None, strict: bool, public_key: str | None = None) -> dict[str, Any]: ...
    def proof(self, event_id: str) -> dict[str, Any]: ...
    def retention(self, before: str, reason: str) -> dict[str, Any]: ...


def _one(q: dict[str, list[str]], name: str) -> str | None:
    vals = q.get(name)
    return vals[-1] if vals else None


def _filters(q: dict[str, list[str]]) -> QueryFilters:
    def one(name: str) -> str | None:
        vals = q.get(name)
        return vals[-1] if vals else None

    f = QueryFilters(action=one("action"), category=one("category"))
    since, until, limit = one("since"), one("until"), one("limit")
    f.since = parse_timestamp("since", since) if since else None
    f.until = parse_timestamp("until", until) if until else None
    if limit is not None:
        if not limit.isdigit() or not 0 < int(limit) <= 1_000_000:
            raise ValidationError("limit", "must be a whole number from 1 to 1000000")
        f.limit = int(limit)
    return f


def make_server(backend: Backend, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "trail"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # one canonical line per request is written below instead

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body, default=_json_default, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            q = parse_qs(url.query)
            try:
                if method == "GET" and url.path == "/v1/health":
                    self._send(200, backend.health())
                elif method == "POST" and url.path == "/v1/events":
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > MAX_BODY:
                        self._send(413, {"error": f"body over {MAX_BODY} bytes; send the file in parts"})
                        return
                    body = self.rfile.read(length)
                    self._send(200, backend.emit(body.splitlines()))
                elif method == "GET" and url.path == "/v1/events":
                    f = _filters(q)
                    actor = _one(q, "actor")
                    ref = _one(q, "subject_ref")
                    if actor:
                        rows = backend.query("actor", actor, f)
                    elif ref:
                        rows = backend.query("subject", ref, f)
                    else:
                        rows = backend.query("events", None, f)
                    self._send(200, {"events": rows})
                elif method == "GET" and url.path == "/v1/gaps":
                    self._send(200, {"gaps": backend.gaps(_one(q, "producer"))})
                elif method == "GET" and url.path == "/v1/counts":
                    self._send(200, backend.counts())
                elif method == "GET" and url.path == "/v1/verify":
                    since = _one(q, "since")
                    if since is not None and not since.isdigit():
                        raise ValidationError("since", "must be a checkpoint number")
                    self._send(
                        200,
                        backend.verify(int(since) if since else None, _one(q, "strict") == "1", _one(q, "public_key")),
                    )
                elif method == "GET" and url.path.startswith("/v1/proof/"):
                    self._send(200, backend.proof(url.path.rsplit("/", 1)[1]))
                elif url.path == "/v1/incidents" or url.path.startswith(("/v1/incidents/", "/v1/playbook")):
                    self._incidents(method, url.path, q)
                elif method == "POST" and url.path == "/v1/retention":
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(min(length, 65536)) or b"{}")
                    self._send(200, backend.retention(str(body.get("before", "")), str(body.get("reason", ""))))
                else:
                    self._send(404, {"error": f"no such endpoint: {method} {url.path}"})
            except NotFound as exc:
                self._send(404, {"error": str(exc)})
            except Conflict as exc:
                self._send(409, {"error": str(exc)})
            except (ValidationError, UsageError, Refused, ValueError) as exc:
                self._send(400, {"error": str(exc)})
            except StoreError as exc:
                self._send(503, {"error": str(exc)})
            except TrailError as exc:
                self._send(500, {"error": str(exc)})
            except Exception as exc:  # the API answers; it does not die with one request
                log.exception("api.internal_error", path=url.path, internal=True)
                self._send(500, {"error": f"internal error ({type(exc).__name__}); see the trail up log"})

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            if length > 1 << 20:
                raise UsageError("request body over 1 MiB")
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise UsageError("the request body must be a JSON object") from None
            if not isinstance(body, dict):
                raise UsageError("the request body must be a JSON object")
            return body

        def _incidents(self, method: str, path: str, q: dict[str, list[str]]) -> None:
            from trail.incidents.commands import dispatch, open_incident

            incidents = getattr(backend, "incidents", None)
            if incidents is None:
                self._send(503, {"error": "incidents are not available in this process"})
                return
            svc = incidents.service
            parts = [unquote(p) for p in path.split("/")[2:]]  # ["incidents", ref?, command?]
            if parts == ["playbook"] and method == "GET":
                self._send(200, incidents.playbook_plan())
            elif parts == ["incidents"] and method == "GET":
                self._send(200, {"incidents": incidents.summaries(_one(q, "status"))})
            elif parts == ["incidents"] and method == "POST":
                self._send(201, open_incident(svc, self._body()))
            elif len(parts) == 2 and method == "GET":
                self._send(200, incidents.show(parts[1]))
            elif len(parts) == 3 and method == "GET" and parts[2] == "timeline":
                self._send(200, {"timeline": incidents.timeline(parts[1])})
            elif len(parts) == 3 and method == "GET" and parts[2] == "subjects":
                self._send(200, {"subject_refs": incidents.subject_refs(parts[1])})
            elif len(parts) == 3 and method == "POST":
                args = self._body()
                if_match = self.headers.get("If-Match")
                if if_match:
                    if not if_match.strip('"').isdigit():
                        raise UsageError("If-Match: the incident version you read (a whole number)")
                    args["expected_version"] = int(if_match.strip('"'))
                self._send(200, dispatch(svc, parts[2], parts[1], args))
            else:
                self._send(404, {"error": f"no such endpoint: {method} {path}"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="trail-api", daemon=True)
    t.start()
    return t


def _json_default(obj: object) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)
