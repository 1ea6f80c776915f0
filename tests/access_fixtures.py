"""The API in the test process, over the real chDB store and a real incident store (SQLite),
with the access log written straight into the store so a test can read it back at once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from trail.access.roles import ROLES
from trail.access.store import AccessStore, open_access_store
from trail.api.app import create_app
from trail.config import Settings, load_settings
from trail.incidents.commands import LocalIncidents
from trail.integrity.keys import checkpoint_signing_key
from trail.integrity.sealer import make_sealer
from trail.service import ACCESS_LOG_SERVICE, ApiServices, build_api_services
from trail.storage.store import Store
from trail.storage.writer import store_writer
from trail.testing import TEST_KEY
from trail.wiring import incident_service


@dataclass
class Api:
    """An API with one principal per role (``analyst`` has the role analyst, ...) and a token each."""

    client: TestClient
    services: ApiServices
    settings: Settings
    store: Store
    access: AccessStore
    tokens: dict[str, str] = field(default_factory=dict)

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def token(self, principal: str, roles: list[str], kind: str = "staff", **kw: Any) -> str:
        self.access.add_principal(principal, roles, kind=kind, by="test")
        _tok, secret = self.access.create_token(principal, by="test", expires_at=kw.get("expires_at"))
        self.tokens[principal] = secret
        return secret

    def access_log(self) -> list[dict[str, Any]]:
        """The access-log events stored so far (after the SDK delivered them)."""
        assert self.services.recorder.client.flush(timeout=30)
        return self.store.find_events(service=ACCESS_LOG_SERVICE, limit=100_000)

    def seal(self) -> None:
        assert self.services.backend.seal is not None
        self.services.backend.seal()


def make_api(tmp_path: Path, store: Store, **env: str) -> Iterator[Api]:
    data = tmp_path / "data"
    settings = load_settings(
        {
            "TRAIL_DATA_DIR": str(data),
            "TRAIL_SUBJECT_KEY": TEST_KEY.decode(),
            "TRAIL_CLICKHOUSE_DSN": store.dsn,
            "TRAIL_CLICKHOUSE_DATABASE": store.db,
            "TRAIL_API_AUTH_FAILURES_PER_MINUTE": "100000",
            "TRAIL_API_RATE_PER_PRINCIPAL": "100000",
            **env,
        },
        config_file=tmp_path / "none.toml",
    )
    access = open_access_store(settings)
    checkpoint_signing_key(settings)  # the key pair verify and retention use (local mode makes it)
    incidents = LocalIncidents(incident_service(settings, store))

    def transport() -> Any:
        from trail.sdk.transport import CallbackTransport

        return CallbackTransport(store_writer(store))

    sealer = make_sealer(settings, store, None)
    assert sealer is not None

    def seal() -> None:
        sealer.refresh_from_store()
        sealer.seal()

    services = build_api_services(
        settings, store, "127.0.0.1:1", incidents=incidents, access=access, transport=transport, seal=seal
    )
    api = Api(TestClient(create_app(services), raise_server_exceptions=False), services, settings, store, access)
    for role in ROLES:
        api.token(role, [role], kind="service" if role == "service" else "staff")
    now = datetime.now(UTC)
    api.token("expired", ["analyst", "responder"], expires_at=now - timedelta(seconds=1))
    api.token("revoked", ["analyst", "responder"])
    api.access.revoke_token(api.access.tokens("revoked")[0].id, by="test")
    try:
        yield api
    finally:
        api.client.close()
        services.close()
        incidents.service.shutdown()
