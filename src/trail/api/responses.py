"""JSON responses encoded with orjson (datetimes as RFC 3339), and the one error shape."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson
from starlette.responses import Response


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse(body, status_code=status, headers=headers)


def error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JsonResponse:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return JsonResponse(body, status_code=status, headers=headers)
