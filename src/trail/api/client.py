"""The client of trail's HTTP API, as the command line uses it while ``trail up`` runs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from trail.errors import TrailError
from trail.service import QueryFilters


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
