"""Subject pseudonymisation: raw subject ids become keyed HMAC-SHA256 references.

The same key must be used by every service of an organisation so that "every event about
subject X" finds them all; the key never goes into the store (Shenzhen Art. 76-77: store
identifying data separately, de-identify what is kept).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from trail.errors import ConfigError

MIN_KEY_BYTES = 32


_BLOCK = 64  # SHA-256's block size


class Pseudonymiser:
    """Maps a raw subject id to its 64-hex reference. Thread-safe and allocation-light.

    HMAC-SHA256 (RFC 2104) from the two SHA-256 states of the padded key, each computed once:
    ``hmac.HMAC.copy()`` per id cost three times as much (it copies in Python)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"subject key: must be at least {MIN_KEY_BYTES} bytes")
        block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def ref(self, subject_id: str) -> str:
        inner = self._inner.copy()
        inner.update(subject_id.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def refs(self, subject_ids: Iterable[str]) -> list[str]:
        """References in first-seen order, duplicates removed."""
        out: list[str] = []
        seen: set[str] = set()
        for sid in subject_ids:
            r = self.ref(sid)
            if r not in seen:
                seen.add(r)
                out.append(r)
        return out
