"""Bearer tokens: opaque random secrets (256 bits), shown once, stored only as SHA-256 hashes.

A token is ``trail_`` followed by 43 URL-safe characters; the prefix lets secret scanners find
leaked ones. Its id (``tok_`` and 12 hex characters) names it in lists, the access log and
revocation, and is not a secret.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

from trail.errors import UsageError

PREFIX = "trail_"
_DURATION = re.compile(r"^(\d{1,5})([hdwy])$")


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(6)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    """``90d``, ``12h``, ``2w``, ``1y`` from now; ``never`` or None for no expiry."""
    if text is None or text == "never":
        return None
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise UsageError("--expires: a duration like 12h, 90d, 2w or 1y (or 'never')")
    n, unit = int(m.group(1)), m.group(2)
    delta = {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n), "y": timedelta(days=365 * n)}
    return (now or datetime.now(UTC)) + delta[unit]


def looks_like_token(text: str) -> bool:
    return text.startswith(PREFIX) and 20 <= len(text) <= 200
