"""How far a producer has got, and what it keeps on disk so a crash loses nothing it accepted.

**Progress records** (on ``<namespace>trail.producers``, keyed by producer id): each client
announces, on a schedule while it has news and once at ``close()``, the sequence number its last
accepted event has or will get (``seq``). After a crash, ``trail gaps`` compares the last claim
of each producer with what the trail holds: "producer P claimed up to N, the trail holds up to
M" is the tail P accepted and never delivered. A client that replays a crashed client's durable
journal announces that producer as ``replayed_by`` itself: its tail was recorded again.

**The durable journal** (``connect(..., durable=True)``): every accepted event is written to a
journal segment in the client's spool directory (``journal-NNNNNNNN.jsonl``, with ``os.write``,
so a SIGKILL loses nothing written; ``fsync`` on top guards against a power cut) before
``record()`` returns. Segments are deleted once the worker has delivered or spooled every event
in them. A client that starts finds journals of crashed clients and records their events again
under its own producer (same event ids: the store shows each once).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from trail.files import open_private, write_private

JOURNAL_SEGMENT_BYTES = 8 << 20
PROGRESS_SCHEMA = "trail.producer/v1"


def progress_record(
    producer_id: str,
    *,
    service: str,
    host: str,
    seq: int,
    recorded: int,
    closed: bool,
    replayed_by: str | None = None,
) -> bytes:
    rec: dict[str, Any] = {
        "schema": PROGRESS_SCHEMA,
        "producer": producer_id,
        "service": service,
        "host": host,
        "seq": seq,
        "recorded": recorded,
        "closed": closed,
        "at": time.time(),
    }
    if replayed_by:
        rec["replayed_by"] = replayed_by
    return json.dumps(rec, separators=(",", ":")).encode("utf-8")


def parse_progress(value: bytes | None) -> dict[str, Any] | None:
    """A progress record, or None for anything else on the topic."""
    try:
        rec = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or rec.get("schema") != PROGRESS_SCHEMA:
        return None
    if not isinstance(rec.get("producer"), str) or not isinstance(rec.get("seq"), int):
        return None
    return rec


class Journal:
    """The durable mode's journal in one client's spool directory. Callers hold the client's
    order lock around :meth:`append` and :meth:`trim`."""

    def __init__(self, directory: Path, producer_id: str, *, fsync: bool = False) -> None:
        self.dir = directory
        self.fsync = fsync
        write_private(directory / "PRODUCER", producer_id.encode("utf-8"))
        self._fd: int | None = None
        self._path: Path | None = None
        self._bytes = 0
        self._number = 0
        self._full: deque[tuple[Path, int]] = deque()  # closed segments and the last index in each

    def append(self, line: bytes, index: int) -> None:
        """Write one event (``index``: the count of accepted events, this one included)."""
        if self._fd is None:
            self._number += 1
            self._path = self.dir / f"journal-{self._number:08d}.jsonl"
            self._fd = open_private(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            self._bytes = 0
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]
        if self.fsync:
            os.fsync(self._fd)
        self._bytes += len(line)
        if self._bytes >= JOURNAL_SEGMENT_BYTES:
            assert self._path is not None
            os.close(self._fd)
            self._fd = None
            self._full.append((self._path, index))

    def trim(self, shipped: int, accepted: int) -> None:
        """Delete what is delivered or spooled: the first ``shipped`` accepted events."""
        while self._full and self._full[0][1] <= shipped:
            self._full.popleft()[0].unlink(missing_ok=True)
        if self._fd is not None and shipped >= accepted:
            os.close(self._fd)
            self._fd = None
            assert self._path is not None
            self._path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def journal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.jsonl"))


def read_journal(directory: Path) -> tuple[str | None, list[dict[str, Any]]]:
    """The crashed producer's id and the events its journal holds (a torn last line skipped)."""
    try:
        producer: str | None = (directory / "PRODUCER").read_text("utf-8").strip() or None
    except OSError:
        producer = None
    events: list[dict[str, Any]] = []
    for path in journal_files(directory):
        for line in path.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n") and line.strip():
                events.append(json.loads(line))
    return producer, events
