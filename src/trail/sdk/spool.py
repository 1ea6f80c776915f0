"""A bounded on-disk spool: the SDK's buffer while the broker is unreachable.

Records are appended to numbered segment files (``seg-00000001.log``), one record a line:
``<key>\\t<value>\\n``, where the value is the event's JSON (which never contains a raw
newline or tab outside strings, since JSON escapes them). Segments are replayed oldest first
and deleted only after the broker acknowledged every record in them, so a crash during a
replay sends some records twice, which the store de-duplicates, and loses none.

A spool directory belongs to one client at a time (an exclusive ``flock`` on ``LOCK``). A
client that starts finds spool directories left behind by crashed clients and replays them
too ("orphans").

The bound counts bytes on disk. When a write would pass it, :class:`SpoolFullError` is
raised: the caller learns that the event was not accepted; nothing is dropped silently.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from trail.errors import SpoolFullError
from trail.files import open_private, private_dir

SEGMENT_BYTES = 8 << 20


class Spool:
    """One client's spool directory. Not thread-safe: the SDK worker owns it."""

    def __init__(self, directory: Path, max_bytes: int, *, fsync: bool = False) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        private_dir(directory)
        # held for the client's life
        self._lock_fh = os.fdopen(open_private(directory / "LOCK", os.O_RDWR | os.O_CREAT | os.O_APPEND), "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            raise
        for seg in self._segments():
            if seg.stat().st_size == 0:
                seg.unlink()  # an empty segment left by a crash holds nothing to replay
        self._bytes = sum(p.stat().st_size for p in self._segments())
        self._active: Path | None = None
        self._fh: object | None = None

    # -- writing --------------------------------------------------------------------
    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("seg-*.log"))

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def is_empty(self) -> bool:
        """True when nothing waits for replay (tracked in memory: this is on the SDK's hot path)."""
        return self._bytes == 0

    def append(self, key: bytes, values: list[bytes]) -> None:
        """Append records in order; all or nothing with respect to the bound."""
        data = b"".join(key + b"\t" + v + b"\n" for v in values)
        if self._bytes + len(data) > self.max_bytes:
            raise SpoolFullError(
                f"the SDK spool in {self.dir} is full ({self._bytes} of {self.max_bytes} bytes); "
                "the broker has been unreachable for long: restore it or raise TRAIL_SPOOL_MAX_BYTES"
            )
        segs = self._segments()
        if not segs or segs[-1].stat().st_size >= SEGMENT_BYTES:
            number = int(segs[-1].stem[4:]) + 1 if segs else 1
            path = self.dir / f"seg-{number:08d}.log"
        else:
            path = segs[-1]
        with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as fh:
            fh.write(data)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        self._bytes += len(data)

    # -- replaying ------------------------------------------------------------------
    def oldest(self) -> tuple[Path, list[tuple[bytes, bytes]]] | None:
        """The oldest segment and its complete records (a torn last line is skipped)."""
        segs = self._segments()
        if not segs:
            return None
        path = segs[0]
        return path, list(read_segment(path))

    def ack(self, path: Path) -> None:
        """Delete a segment whose records the broker acknowledged."""
        size = path.stat().st_size
        path.unlink()
        self._bytes = max(0, self._bytes - size)

    def close(self) -> None:
        fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
        self._lock_fh.close()


def read_segment(path: Path) -> Iterator[tuple[bytes, bytes]]:
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break  # torn write from a crash: the event was never acknowledged to anyone
            key, sep, value = line[:-1].partition(b"\t")
            if sep:
                yield key, value


def find_orphans(root: Path, own: Path) -> list[Path]:
    """Spool directories under ``root`` that hold segments and no live client."""
    out: list[Path] = []
    if not root.exists():
        return out
    for d in sorted(root.iterdir()):
        if d == own or not d.is_dir():
            continue
        if not (any(d.glob("seg-*.log")) or any(d.glob("overflow.*")) or any(d.glob("journal-*.jsonl"))):
            continue
        lock = d / "LOCK"
        try:
            with open(lock, "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            out.append(d)
        except BlockingIOError:
            continue
    return out
