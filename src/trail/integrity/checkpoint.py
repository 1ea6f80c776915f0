"""Signed checkpoints: what the sink stored, sealed so that an insider cannot rewrite it.

A checkpoint covers, for each producer that advanced since the previous checkpoint, the
contiguous range of ``producer.seq`` values newly stored (``first``..``last``) and the tip
hash (the hash of ``last``). Its leaves, in order, are the event hashes of those ranges,
producers sorted by id, seqs ascending; ``root`` is their RFC 6962 Merkle tree head.
Checkpoints chain: ``prev`` is the previous checkpoint's hash and ``seq`` counts from 1.

    payload = {type, seq, prev, created_at, count, root, ranges, key_id}
    hash = SHA-256(canonical(payload)); signature = Ed25519(canonical(payload))

Copies live in the store (``checkpoints``, ``checkpoint_ranges``), in an append-only file
outside it (``DATA_DIR/checkpoints.jsonl``) and on the ``trail.checkpoints`` topic; the
signing key lives in none of them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trail.events.model import canonical_bytes
from trail.files import open_private, private_dir
from trail.integrity.keys import PublicKey, SigningKey

CHECKPOINT_TYPE = "trail.checkpoint/v1"
RETENTION_TYPE = "trail.retention/v1"


@dataclass(frozen=True)
class Range:
    producer: str
    first: int
    last: int
    tip: str

    def as_dict(self) -> dict[str, Any]:
        return {"producer": self.producer, "first": self.first, "last": self.last, "tip": self.tip}


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    prev: str
    created_at: str
    count: int
    root: str
    ranges: tuple[Range, ...]
    key_id: str
    hash: str = ""
    signature: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {
            "type": CHECKPOINT_TYPE,
            "seq": self.seq,
            "prev": self.prev,
            "created_at": self.created_at,
            "count": self.count,
            "root": self.root,
            "ranges": [r.as_dict() for r in self.ranges],
            "key_id": self.key_id,
        }

    def payload_bytes(self) -> bytes:
        return canonical_bytes(self.payload())

    def computed_hash(self) -> str:
        return hashlib.sha256(self.payload_bytes()).hexdigest()

    def signed(self, key: SigningKey) -> Checkpoint:
        body = self.payload_bytes()
        return Checkpoint(**{**self.__dict__, "hash": hashlib.sha256(body).hexdigest(), "signature": key.sign(body)})

    def signature_ok(self, public: PublicKey) -> bool:
        return self.hash == self.computed_hash() and public.verify(self.signature, self.payload_bytes())

    def record(self) -> dict[str, Any]:
        """The full JSON record (payload, hash, signature) as written everywhere."""
        return {**self.payload(), "hash": self.hash, "signature": self.signature}

    @staticmethod
    def from_record(rec: dict[str, Any]) -> Checkpoint:
        if rec.get("type") != CHECKPOINT_TYPE:
            raise ValueError("not a trail checkpoint record")
        return Checkpoint(
            seq=int(rec["seq"]),
            prev=str(rec["prev"]),
            created_at=str(rec["created_at"]),
            count=int(rec["count"]),
            root=str(rec["root"]),
            ranges=tuple(
                Range(str(r["producer"]), int(r["first"]), int(r["last"]), str(r["tip"])) for r in rec["ranges"]
            ),
            key_id=str(rec["key_id"]),
            hash=str(rec.get("hash", "")),
            signature=str(rec.get("signature", "")),
        )


@dataclass(frozen=True)
class RetentionRecord:
    """A signed statement that whole sealed checkpoints were removed on purpose (Shenzhen Art. 25)."""

    seq: int
    created_at: str
    reason: str
    before: str
    checkpoints: tuple[dict[str, Any], ...]  # {seq, hash, root, count, ranges}
    key_id: str
    hash: str = ""
    signature: str = ""

    def payload(self) -> dict[str, Any]:
        return {
            "type": RETENTION_TYPE,
            "seq": self.seq,
            "created_at": self.created_at,
            "reason": self.reason,
            "before": self.before,
            "checkpoints": list(self.checkpoints),
            "key_id": self.key_id,
        }

    def payload_bytes(self) -> bytes:
        return canonical_bytes(self.payload())

    def signed(self, key: SigningKey) -> RetentionRecord:
        body = self.payload_bytes()
        return RetentionRecord(
            **{**self.__dict__, "hash": hashlib.sha256(body).hexdigest(), "signature": key.sign(body)}
        )

    def signature_ok(self, public: PublicKey) -> bool:
        body = self.payload_bytes()
        return self.hash == hashlib.sha256(body).hexdigest() and public.verify(self.signature, body)

    def record(self) -> dict[str, Any]:
        return {**self.payload(), "hash": self.hash, "signature": self.signature}

    @staticmethod
    def from_record(rec: dict[str, Any]) -> RetentionRecord:
        if rec.get("type") != RETENTION_TYPE:
            raise ValueError("not a trail retention record")
        return RetentionRecord(
            seq=int(rec["seq"]),
            created_at=str(rec["created_at"]),
            reason=str(rec["reason"]),
            before=str(rec["before"]),
            checkpoints=tuple(rec["checkpoints"]),
            key_id=str(rec["key_id"]),
            hash=str(rec.get("hash", "")),
            signature=str(rec.get("signature", "")),
        )


class AppendOnlyLog:
    """A JSON-lines file outside the store: appended and fsynced, never rewritten."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        private_dir(self.path.parent)
        line = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
        fd = open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except ValueError:
                    yield {"type": "unreadable", "line": line[:80]}
