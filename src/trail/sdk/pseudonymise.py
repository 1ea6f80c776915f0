"""Subject pseudonymisation: raw subject ids become keyed HMAC-SHA256 references.

The same key must be used by every service of an organisation so that "every event about
subject X" finds them all; the key never goes into the store (Shenzhen Art. 76-77: store
identifying data separately, de-identify what is kept).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from trail.errors import ConfigError

MIN_KEY_BYTES = 32


class Pseudonymiser:
    """Maps a raw subject id to its 64-hex reference. Thread-safe and allocation-light."""

    __slots__ = ("_inner",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"subject key: must be at least {MIN_KEY_BYTES} bytes")
        self._inner = hmac.new(key, digestmod=hashlib.sha256)

    def ref(self, subject_id: str) -> str:
        h = self._inner.copy()
        h.update(subject_id.encode("utf-8"))
        return h.hexdigest()

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
