"""Console sessions: a random cookie value bound to the token that logged in.

The session is kept in the API process's memory (a restart logs everyone out). Every request
looks the token up again, so a revoked or expired token, or a disabled principal, ends the
session at once. A session also ends after ``console_session_idle`` seconds without a request
and ``console_session_max`` seconds after login. Each session has its own CSRF token, which
every form carries and every POST must present.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_SESSIONS = 10_000


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


@dataclass
class Session:
    token_id: str
    principal: str
    csrf: str
    created: float
    seen: float
    flash: list[str] = field(default_factory=list)


class Sessions:
    def __init__(self, idle: float, max_age: float) -> None:
        self.idle, self.max_age = idle, max_age
        self._lock = threading.Lock()
        self._by_key: OrderedDict[str, Session] = OrderedDict()

    def create(self, token_id: str, principal: str) -> tuple[str, Session]:
        """A new session; returns the cookie value (never stored: only its hash is) and the session."""
        sid = secrets.token_urlsafe(32)
        now = time.monotonic()
        s = Session(token_id=token_id, principal=principal, csrf=secrets.token_urlsafe(32), created=now, seen=now)
        with self._lock:
            self._by_key[_key(sid)] = s
            while len(self._by_key) > MAX_SESSIONS:
                self._by_key.popitem(last=False)
        return sid, s

    def get(self, sid: str | None) -> Session | None:
        """The live session of a cookie value (its idle clock restarts), or None."""
        if not sid or len(sid) > 256:
            return None
        key = _key(sid)
        now = time.monotonic()
        with self._lock:
            s = self._by_key.get(key)
            if s is None:
                return None
            if now - s.seen > self.idle or now - s.created > self.max_age:
                del self._by_key[key]
                return None
            s.seen = now
            self._by_key.move_to_end(key)
            return s

    def end(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_key.pop(_key(sid), None)

    def end_token(self, token_id: str) -> None:
        with self._lock:
            for key in [k for k, s in self._by_key.items() if s.token_id == token_id]:
                del self._by_key[key]

    def age(self, s: Session) -> None:
        """For tests of expiry: make a session look older than both limits."""
        s.seen -= self.idle + 1
        s.created -= self.max_age + 1


def same_secret(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class Failures:
    """Failed logins per client address in the last minute (bounded in number of addresses);
    over ``per_minute`` the login form answers 429 until the minute has passed."""

    def __init__(self, per_minute: int, size: int = 10_000) -> None:
        self.per_minute, self.size = per_minute, size
        self._lock = threading.Lock()
        self._by_ip: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, ip: str, now: float) -> list[float]:
        times = [t for t in self._by_ip.get(ip, []) if now - t < 60.0]
        self._by_ip[ip] = times
        self._by_ip.move_to_end(ip)
        while len(self._by_ip) > self.size:
            self._by_ip.popitem(last=False)
        return times

    def wait(self, ip: str) -> float:
        """0 when a login may be tried now, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(ip, now)
            return 0.0 if len(times) < self.per_minute else max(0.1, 60.0 - (now - times[0]))

    def add(self, ip: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(ip, now).append(now)
