"""The access store's behaviour, written once and run on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trail.access.store import AccessStore, open_access_store
from trail.config import load_settings
from trail.errors import Conflict, NotFound, Refused

PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres",
                                                                            marks=pytest.mark.postgres)])  # fmt: skip
def access(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AccessStore]:
    env = {"TRAIL_DATA_DIR": str(tmp_path)}
    schema = f"acc_{uuid.uuid4().hex[:10]}"
    if request.param == "postgres":
        env["TRAIL_INCIDENT_STORE"] = f"{PG}?schema={schema}"
    store = open_access_store(load_settings(env, config_file=tmp_path / "none.toml"))
    yield store
    if request.param == "postgres":
        store.db.execute(f'DROP SCHEMA "{schema}" CASCADE')
    store.close()


def test_principals_tokens_expiry_and_revocation(access: AccessStore) -> None:
    """A token authenticates its principal until it expires, is revoked, or its principal is
    disabled — each at once; look-alike names collide; only the hash is stored."""
    access.add_principal("E1002", ["responder"], by="admin")
    with pytest.raises(Conflict):
        access.add_principal("Ｅ１００２", ["analyst"], by="admin")
    tok, secret = access.create_token("e1002", by="admin", expires_at=None)
    auth = access.authenticate(secret)
    assert auth.state == "active" and auth.principal is not None and auth.principal.name == "e1002"
    assert auth.token_id == tok.id
    assert not any(secret in str(row) for row in access.db.execute("SELECT * FROM access_tokens"))
    assert access.authenticate(secret + "x").state == "unknown"
    access.set_disabled("e1002", True)
    assert access.authenticate(secret).state == "disabled"
    access.set_disabled("e1002", False)
    access.revoke_token(tok.id, by="admin")
    assert access.authenticate(secret).state == "revoked"
    _t, old = access.create_token("e1002", by="admin", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert access.authenticate(old).state == "expired"
    with pytest.raises(NotFound):
        access.get_principal("nobody")


def test_retention_requests_need_a_second_admin_once(access: AccessStore) -> None:
    """The requester cannot approve; a second admin can, once."""
    req = access.add_retention_request(datetime(2020, 1, 1, tzinfo=UTC), "policy R-7", by="a1")
    with pytest.raises(Refused, match="four eyes"):
        access.claim_retention_request(req["id"], by="a1")
    assert access.claim_retention_request(req["id"], by="a2")["approved_by"] == "a2"
    with pytest.raises(Refused, match="not pending"):
        access.claim_retention_request(req["id"], by="a3")


def test_holds_are_kept_after_release(access: AccessStore) -> None:
    h = access.add_hold(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), "case 7", by="aud")
    assert [x["id"] for x in access.holds(active_only=True)] == [h["id"]]
    access.release_hold(h["id"], by="aud")
    assert access.holds(active_only=True) == [] and access.holds()[0]["released_by"] == "aud"
    with pytest.raises(Refused):
        access.release_hold(h["id"], by="aud")
