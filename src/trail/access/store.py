"""Principals, tokens, legal holds and retention requests, beside the incidents.

One interface over two databases: the incident store's SQLite file in the data directory
(``settings.incident_store_path``) or its PostgreSQL database and schema
(``TRAIL_INCIDENT_STORE``). Times are RFC 3339 UTC text (``...Z``), which sorts as time.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlparse

from trail.access.db import Database
from trail.access.principals import LOCAL, Principal, check_new, normalise_name
from trail.access.roles import ROLES
from trail.access.tokens import new_secret, new_token_id, token_hash
from trail.config import Settings
from trail.errors import Conflict, NotFound, Refused, UsageError

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS access_principals (name TEXT PRIMARY KEY, kind TEXT NOT NULL, roles TEXT NOT NULL, "
    "disabled INTEGER NOT NULL DEFAULT 0, delegates INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, "
    "created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS access_tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, "
    "principal TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL, expires_at TEXT, "
    "revoked_at TEXT, revoked_by TEXT)",
    "CREATE TABLE IF NOT EXISTS access_holds (id TEXT PRIMARY KEY, start_at TEXT NOT NULL, end_at TEXT NOT NULL, "
    "reason TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, released_at TEXT, released_by TEXT)",
    "CREATE TABLE IF NOT EXISTS access_retention (id TEXT PRIMARY KEY, before_at TEXT NOT NULL, reason TEXT NOT NULL, "
    "requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, status TEXT NOT NULL, approved_by TEXT, "
    "approved_at TEXT, result TEXT)",
)


def now_text(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_text_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class TokenInfo:
    id: str
    principal: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    revoked_by: str | None

    def state(self, now: str | None = None) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= (now or now_text()):
            return "expired"
        return "active"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principal": self.principal,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "state": self.state(),
        }


@dataclass(frozen=True)
class Authenticated:
    """What a presented token turned out to be."""

    state: str  # active, unknown, expired, revoked, disabled
    principal: Principal | None = None
    token_id: str | None = None


class AccessStore:
    """Principals, tokens, holds and retention requests (one instance per process, shared)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------- principals
    def _principal(self, row: Sequence[Any]) -> Principal:
        name, kind, roles, disabled, delegates, created_at, created_by = row
        return Principal(
            name=name,
            kind=kind,
            roles=tuple(r for r in str(roles).split(",") if r),
            disabled=bool(disabled),
            delegates=bool(delegates),
            created_at=created_at,
            created_by=created_by,
        )

    _P_COLS = "name, kind, roles, disabled, delegates, created_at, created_by"

    def add_principal(
        self, name: str, roles: Sequence[str], *, kind: str = "staff", by: str, local: bool = False
    ) -> Principal:
        canon, kind, wanted = check_new(name, kind, list(roles), local=local)
        try:
            self.db.execute_count(
                f"INSERT INTO access_principals ({self._P_COLS}) VALUES (?, ?, ?, 0, ?, ?, ?)",
                (canon, kind, ",".join(wanted), 1 if local else 0, now_text(), by),
            )
        except Conflict:
            raise Conflict(f"principal {canon} exists already (names are compared case- and width-blind)") from None
        return self.get_principal(canon)

    def get_principal(self, name: str) -> Principal:
        canon = normalise_name(name)
        rows = self.db.execute(f"SELECT {self._P_COLS} FROM access_principals WHERE name = ?", (canon,))
        if not rows:
            raise NotFound(f"no principal {canon}")
        return self._principal(rows[0])

    def principals(self) -> list[Principal]:
        rows = self.db.execute(f"SELECT {self._P_COLS} FROM access_principals ORDER BY name")
        return [self._principal(r) for r in rows]

    def set_disabled(self, name: str, disabled: bool) -> Principal:
        p = self.get_principal(name)
        self.db.execute_count(
            "UPDATE access_principals SET disabled = ? WHERE name = ?", (1 if disabled else 0, p.name)
        )
        return self.get_principal(p.name)

    def active_admins(self) -> list[str]:
        return [p.name for p in self.principals() if "admin" in p.roles and not p.disabled]

    # ---------------------------------------------------------------- tokens
    _T_COLS = "id, principal, created_at, created_by, expires_at, revoked_at, revoked_by"

    def create_token(self, principal: str, *, by: str, expires_at: datetime | None) -> tuple[TokenInfo, str]:
        """A new token for ``principal``; returns it and the secret (shown once, never stored)."""
        p = self.get_principal(principal)
        if p.disabled:
            raise Refused(f"principal {p.name} is disabled")
        secret = new_secret()
        tid = new_token_id()
        self.db.execute_count(
            f"INSERT INTO access_tokens ({self._T_COLS}, hash) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
            (tid, p.name, now_text(), by, now_text(expires_at) if expires_at else None, token_hash(secret)),
        )
        return self.get_token(tid), secret

    def get_token(self, token_id: str) -> TokenInfo:
        rows = self.db.execute(f"SELECT {self._T_COLS} FROM access_tokens WHERE id = ?", (token_id,))
        if not rows:
            raise NotFound(f"no token {token_id}")
        return TokenInfo(*rows[0])

    def tokens(self, principal: str | None = None) -> list[TokenInfo]:
        if principal:
            rows = self.db.execute(
                f"SELECT {self._T_COLS} FROM access_tokens WHERE principal = ? ORDER BY created_at",
                (normalise_name(principal),),
            )
        else:
            rows = self.db.execute(f"SELECT {self._T_COLS} FROM access_tokens ORDER BY created_at")
        return [TokenInfo(*r) for r in rows]

    def revoke_token(self, token_id: str, *, by: str) -> TokenInfo:
        tok = self.get_token(token_id)
        if tok.revoked_at is None:
            self.db.execute_count(
                "UPDATE access_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
                (now_text(), by, token_id),
            )
        return self.get_token(token_id)

    def authenticate(self, secret: str) -> Authenticated:
        """The principal a presented token belongs to, checked now: revocation and expiry take
        effect at once (no cache)."""
        rows = self.db.execute(
            f"SELECT t.id, t.expires_at, t.revoked_at, {', '.join('p.' + c for c in self._P_COLS.split(', '))} "
            "FROM access_tokens t JOIN access_principals p ON p.name = t.principal WHERE t.hash = ?",
            (token_hash(secret),),
        )
        if not rows:
            return Authenticated("unknown")
        tid, expires_at, revoked_at, *prow = rows[0]
        principal = self._principal(prow)
        if revoked_at:
            return Authenticated("revoked", principal, tid)
        if expires_at and expires_at <= now_text():
            return Authenticated("expired", principal, tid)
        if principal.disabled:
            return Authenticated("disabled", principal, tid)
        return Authenticated("active", principal, tid)

    def ensure_local(self) -> Principal:
        """The local principal of ``trail up`` (every role; acts for the responders it names)."""
        try:
            return self.get_principal(LOCAL)
        except NotFound:
            return self.add_principal(LOCAL, ROLES, kind="staff", by="trail up", local=True)

    # ---------------------------------------------------------------- legal holds
    _H_COLS = "id, start_at, end_at, reason, created_by, created_at, released_at, released_by"

    def add_hold(self, start: datetime, end: datetime, reason: str, *, by: str) -> dict[str, Any]:
        if end <= start:
            raise UsageError("--to: must be after --from")
        if not reason.strip():
            raise UsageError("reason: say why the data is held (case, order, request)")
        hid = "hold_" + secrets.token_hex(4)
        self.db.execute_count(
            f"INSERT INTO access_holds ({self._H_COLS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
            (hid, now_text(start), now_text(end), reason.strip()[:1000], by, now_text()),
        )
        return self.get_hold(hid)

    def get_hold(self, hold_id: str) -> dict[str, Any]:
        rows = self.db.execute(f"SELECT {self._H_COLS} FROM access_holds WHERE id = ?", (hold_id,))
        if not rows:
            raise NotFound(f"no hold {hold_id}")
        return dict(zip(self._H_COLS.split(", "), rows[0], strict=True))

    def holds(self, *, active_only: bool = False) -> list[dict[str, Any]]:
        where = " WHERE released_at IS NULL" if active_only else ""
        rows = self.db.execute(f"SELECT {self._H_COLS} FROM access_holds{where} ORDER BY created_at")
        return [dict(zip(self._H_COLS.split(", "), r, strict=True)) for r in rows]

    def release_hold(self, hold_id: str, *, by: str) -> dict[str, Any]:
        hold = self.get_hold(hold_id)
        if hold["released_at"]:
            raise Refused(f"hold {hold_id} was already released by {hold['released_by']}")
        self.db.execute_count(
            "UPDATE access_holds SET released_at = ?, released_by = ? WHERE id = ?", (now_text(), by, hold_id)
        )
        return self.get_hold(hold_id)

    # ---------------------------------------------------------------- retention requests
    _R_COLS = "id, before_at, reason, requested_by, requested_at, status, approved_by, approved_at, result"

    def _request(self, row: Sequence[Any]) -> dict[str, Any]:
        out = dict(zip(self._R_COLS.split(", "), row, strict=True))
        out["result"] = json.loads(out["result"]) if out["result"] else None
        return out

    def add_retention_request(self, before: datetime, reason: str, *, by: str) -> dict[str, Any]:
        rid = "ret_" + secrets.token_hex(4)
        self.db.execute_count(
            f"INSERT INTO access_retention ({self._R_COLS}) VALUES (?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL)",
            (rid, now_text(before), reason, by, now_text()),
        )
        return self.get_retention_request(rid)

    def get_retention_request(self, rid: str) -> dict[str, Any]:
        rows = self.db.execute(f"SELECT {self._R_COLS} FROM access_retention WHERE id = ?", (rid,))
        if not rows:
            raise NotFound(f"no retention request {rid}")
        return self._request(rows[0])

    def retention_requests(self) -> list[dict[str, Any]]:
        rows = self.db.execute(f"SELECT {self._R_COLS} FROM access_retention ORDER BY requested_at")
        return [self._request(r) for r in rows]

    def claim_retention_request(self, rid: str, *, by: str) -> dict[str, Any]:
        """Mark a pending request approved by ``by`` (a second admin) — once, atomically."""
        req = self.get_retention_request(rid)
        if req["status"] != "pending":
            raise Refused(f"retention request {rid} is {req['status']}, not pending")
        if req["requested_by"] == by:
            raise Refused(f"retention request {rid} was made by {by}: a second admin must approve it (four eyes)")
        n = self.db.execute_count(
            "UPDATE access_retention SET status = 'approved', approved_by = ?, approved_at = ? "
            "WHERE id = ? AND status = 'pending' AND requested_by <> ?",
            (by, now_text(), rid, by),
        )
        if n != 1:
            raise Conflict(f"retention request {rid} changed while approving it; look at it again")
        return self.get_retention_request(rid)

    def finish_retention_request(self, rid: str, status: str, result: dict[str, Any]) -> dict[str, Any]:
        self.db.execute_count(
            "UPDATE access_retention SET status = ?, result = ? WHERE id = ?", (status, json.dumps(result), rid)
        )
        return self.get_retention_request(rid)


def open_access_store(settings: Settings) -> AccessStore:
    """The access store in the incident store's database: PostgreSQL with TRAIL_INCIDENT_STORE,
    else SQLite (``sqlite://`` URL or the data directory's ``incidents.db``)."""
    url = settings.incident_store
    if url and url.startswith(("postgresql://", "postgres://")):
        from trail.access.postgres import PostgresDatabase

        return AccessStore(PostgresDatabase(url))
    from trail.access.sqlite import SqliteDatabase

    path = unquote(urlparse(url).path) if url else str(settings.incident_store_path)
    return AccessStore(SqliteDatabase(path))
