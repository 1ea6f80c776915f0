"""The client of trail's HTTP API, as the command line uses it (``trail up``'s, or a remote
``trail serve`` at ``TRAIL_API_URL``), with the bearer token of ``TRAIL_TOKEN`` or the local
token file. Only the server turns raw subject ids into references."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from trail.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    StoreError,
    TooLarge,
    TrailError,
    Unauthorized,
    UsageError,
    ValidationError,
)
from trail.service import MAX_ERRORS_REPORTED, QueryFilters

#: ``trail emit`` through the API sends a file in requests of at most this many lines and bytes.
EMIT_CHUNK_LINES = 5_000
EMIT_CHUNK_BYTES = 8 << 20


#: How long `trail verify` waits for a running API's verification (a day: in effect, as long as it takes).
VERIFY_TIMEOUT_S = 86_400.0


class ApiClient:
    """What the CLI uses while an API runs."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        *,
        timeout: float | None = None,
    ) -> Any:
        """``timeout``: seconds to wait for this call's answer (None: the client's own)."""
        req = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310  # the configured API URL
        if body is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout) as resp:  # noqa: S310
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                doc = json.loads(exc.read())
                msg, field = str(doc.get("error", exc.reason)), doc.get("field")
            except ValueError:
                msg, field = str(exc.reason), None
            raise _error(exc.code, msg, field, exc.headers.get("Retry-After")) from None
        except (urllib.error.URLError, OSError) as exc:
            raise TrailError(f"cannot reach the trail API at {self.url}: {exc}") from None

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        return self._call(method, path, data)

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/health"))

    def emit(self, lines: list[bytes]) -> dict[str, Any]:
        """Send the lines in requests of at most EMIT_CHUNK_LINES lines and EMIT_CHUNK_BYTES bytes
        (a file of any size stays under the server's body limit); one answer, lines numbered in
        the whole file."""
        out: dict[str, Any] = {"accepted": 0, "rejected": 0, "errors": []}
        first = 0
        while first < len(lines):
            last, size = first, 0
            while (
                last < len(lines)
                and last - first < EMIT_CHUNK_LINES
                and (last == first or size + len(lines[last]) + 1 <= EMIT_CHUNK_BYTES)
            ):
                size += len(lines[last]) + 1
                last += 1
            part = dict(self._call("POST", "/v1/events", b"\n".join(lines[first:last]), "application/x-ndjson"))
            out["accepted"] += int(part.get("accepted", 0))
            out["rejected"] += int(part.get("rejected", 0))
            for err in part.get("errors", []):
                if len(out["errors"]) < MAX_ERRORS_REPORTED:
                    out["errors"].append({**err, "line": int(err.get("line", 0)) + first})
            if "pending" in part:
                out["pending"] = part["pending"]
            first = last
        return out

    def query(self, kind: str, key: str | None, filters: QueryFilters) -> list[dict[str, Any]]:
        """Every matching event up to the limit, following the server's cursor page by page."""
        params = filters.as_params()
        if kind == "actor" and key:
            params["actor"] = key
        elif kind == "subject" and key:
            params["subject_ref"] = key
        path = "/v1/access-log" if kind == "access" else "/v1/events"
        if kind == "access" and key:
            params = {k: v for k, v in params.items() if k in ("since", "until", "limit")}
            params["principal"] = key
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(out) < filters.limit:
            params["limit"] = str(filters.limit - len(out))
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", f"{path}?{urlencode(params)}")
            out.extend(page["events"])
            cursor = page.get("next")
            if not cursor:
                break
        return out

    def subject_events(self, subject_id: str, purpose: str | None, filters: QueryFilters) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"subject_id": subject_id, "purpose": purpose, "limit": min(filters.limit, 10_000)}
        for k, v in filters.as_params().items():
            if k != "limit":
                body[k] = v
        return list(self._json("POST", "/v1/subjects/events", body)["events"])

    def post(self, path: str, body: Any) -> Any:
        """A JSON request to one of the API's POST endpoints (reports, requests)."""
        return self._json("POST", path, body)

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def gaps(self, producer: str | None) -> list[dict[str, Any]]:
        suffix = "?" + urlencode({"producer": producer}) if producer else ""
        return list(self._call("GET", "/v1/gaps" + suffix)["gaps"])

    def counts(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/counts"))

    def verify(self, since: int | None, strict: bool, public_key: str | None = None) -> dict[str, Any]:
        params = {"strict": "1" if strict else "0"}
        if public_key:
            params["public_key"] = public_key
        if since is not None:
            params["since"] = str(since)
        # A full verification takes as long as the trail is big (about 100 s at 10 M events, a
        # quarter of an hour at 100 M): the command waits for it, however long, rather than give
        # up at the client's usual timeout. (HTTP clients behind proxies use POST /v1/verifications.)
        return dict(self._call("GET", "/v1/verify?" + urlencode(params), timeout=VERIFY_TIMEOUT_S))

    def proof(self, event_id: str) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/proof/" + quote(event_id)))

    def sql(self, query: str) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/sql", {"query": query}))

    # -- access administration --------------------------------------------------------
    def principals(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/principals")["principals"])

    def add_principal(self, name: str, roles: list[str], kind: str) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/principals", {"name": name, "roles": roles, "kind": kind}))

    def change_principal(self, name: str, change: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/principals/{quote(name)}/{change}", b""))

    def tokens(self, principal: str | None) -> list[dict[str, Any]]:
        suffix = "?" + urlencode({"principal": principal}) if principal else ""
        return list(self._call("GET", "/v1/tokens" + suffix)["tokens"])

    def create_token(self, principal: str, expires: str | None) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/tokens", {"principal": principal, "expires": expires}))

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/tokens/{quote(token_id)}/revoke", b""))

    def holds(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/holds")["holds"])

    def add_hold(self, start: str, end: str, reason: str) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/holds", {"from": start, "to": end, "reason": reason}))

    def release_hold(self, hold_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/holds/{quote(hold_id)}/release", b""))

    def retention_requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/retention")["requests"])

    def request_retention(self, before: str, reason: str) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/retention", {"before": before, "reason": reason}))

    def approve_retention(self, request_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/retention/{quote(request_id)}/approve", b""))

    # -- alerts -------------------------------------------------------------------------
    def alerts(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/alerts?" + urlencode(params))["alerts"])

    def alert(self, alert_id: str) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/alerts/" + quote(alert_id)))

    def review(self, alert_id: str, decision: str, reason: str, reviewer: str | None) -> dict[str, Any]:
        body = {"decision": decision, "reason": reason, "reviewer": reviewer}
        return dict(self._json("POST", f"/v1/alerts/{quote(alert_id)}/review", body))


def _error(status: int, message: str, field: Any, retry_after: str | None) -> TrailError:
    """The exception of an API answer; the message is the server's one line."""
    if status == 400:
        return ValidationError(str(field), message.removeprefix(f"{field}: ")) if field else UsageError(message)
    if status == 401:
        return Unauthorized(message)
    if status == 403:
        return Forbidden(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 413:
        return TooLarge(message)
    if status == 429:
        return RateLimited(message, int(retry_after) if retry_after and retry_after.isdigit() else 1)
    if status == 503:
        return StoreError(message)
    return TrailError(f"the trail API answered {status}: {message}")
