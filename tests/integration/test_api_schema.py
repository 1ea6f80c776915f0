"""schemathesis against the API's own OpenAPI document, in process, with a principal that holds
every role: whatever it generates, the API answers without a server error (no 5xx), and every
error is in the one shape. Bounded: a few examples per operation (about a minute)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.access_fixtures import Api, make_api
from trail.storage.store import Store

pytestmark = [pytest.mark.clickhouse]

TOKEN: dict[str, str] = {}


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: Any, value: Any) -> bytes:
    """POST /v1/events takes JSON lines; schemathesis sends the generated string as the body."""
    return value.encode("utf-8", "replace") if isinstance(value, str) else str(value).encode()


@pytest.fixture(scope="module")
def schema_api(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Api]:
    store = Store(f"chdb://{chdb_path}", f"t_{uuid.uuid4().hex[:12]}")
    store.migrate()
    for api in make_api(tmp_path_factory.mktemp("schema"), store):
        api.access.ensure_local()
        _tok, TOKEN["local"] = api.access.create_token("local", by="test", expires_at=None)
        yield api
    store.command("DROP DATABASE IF EXISTS {db}")


def test_no_server_errors(schema_api: Api) -> None:
    """Generated requests (authenticated with every role) never get a 5xx; errors have one shape."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", schema_api.client.app)
    headers = {"Authorization": f"Bearer {TOKEN['local']}"}
    seen = 0
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
            if response.status_code >= 400:
                doc = response.json()
                assert isinstance(doc, dict) and set(doc) <= {"error", "field"} and doc.get("error"), doc

        check()
        seen += 1
    assert seen >= 30, "every operation of the document was exercised"
    assert 401 not in statuses and sum(1 for c in statuses if c < 300) >= 20, sorted(set(statuses))
