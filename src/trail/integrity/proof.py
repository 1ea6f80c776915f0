"""Inclusion proofs a third party can check offline, and lawful expiry (retention).

A proof is one JSON document: the event (as stored, pseudonymised), its position among the
checkpoint's leaves, the Merkle audit path and the signed checkpoint. ``check_proof`` needs
only that document and the organisation's public key: it recomputes the event hash, walks
the path to the root and checks the signature.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from trail.errors import StoreError, TrailError, UsageError
from trail.events.model import event_hash, format_timestamp
from trail.integrity.checkpoint import AppendOnlyLog, Checkpoint, RetentionRecord
from trail.integrity.keys import PublicKey, SigningKey
from trail.integrity.merkle import inclusion_path, verify_inclusion
from trail.logging import get_logger
from trail.storage import integrity as sql
from trail.storage.store import Store

log = get_logger("trail.retention")

PROOF_TYPE = "trail.proof/v1"


def _checkpoint_for(store: Store, producer_id: str, seq: int) -> Checkpoint:
    record = sql.checkpoint_sealing(store, producer_id, seq)
    if record is None:
        raise TrailError("the event is not sealed by any checkpoint yet; wait for the next checkpoint and retry")
    return Checkpoint.from_record(json.loads(record))


def build_proof(store: Store, event_id: str) -> dict[str, Any]:
    events = [e for e in store.find_events_by_id(event_id)]
    if not events:
        raise UsageError(f"EVENT_ID: no event {event_id} in the store")
    ev = events[0]
    cp = _checkpoint_for(store, ev["producer"]["id"], ev["producer"]["seq"])
    leaves: list[str] = []
    index = -1
    for r in cp.ranges:
        rows = sql.range_hashes(store, r.producer, r.first, r.last)
        if len(rows) != r.last - r.first + 1:
            raise StoreError("the checkpoint's range is incomplete in the store; run `trail verify`")
        for seq, digest in rows:
            if r.producer == ev["producer"]["id"] and seq == ev["producer"]["seq"]:
                index = len(leaves)
            leaves.append(digest)
    if index < 0:
        raise StoreError("the event is not among its checkpoint's leaves; run `trail verify`")
    return {
        "type": PROOF_TYPE,
        "event": ev,
        "leaf_index": index,
        "tree_size": len(leaves),
        "path": inclusion_path(index, leaves),
        "checkpoint": cp.record(),
    }


def check_proof(doc: dict[str, Any], public: PublicKey) -> list[str]:
    """Problems with a proof; an empty list means it holds."""
    problems: list[str] = []
    try:
        if doc.get("type") != PROOF_TYPE:
            return [f"not a {PROOF_TYPE} document"]
        ev = dict(doc["event"])
        cp = Checkpoint.from_record(doc["checkpoint"])
        claimed = ev.pop("hash")
        if event_hash(ev) != claimed:
            problems.append("the event does not match its hash")
        if not cp.signature_ok(public):
            problems.append("the checkpoint's signature does not verify with this public key")
        if int(doc["tree_size"]) != cp.count:
            problems.append("the tree size differs from the checkpoint's count")
        if not verify_inclusion(claimed, int(doc["leaf_index"]), int(doc["tree_size"]), list(doc["path"]), cp.root):
            problems.append("the Merkle path does not lead to the checkpoint's root")
        pid, seq = ev["producer"]["id"], ev["producer"]["seq"]
        if not any(r.producer == pid and r.first <= seq <= r.last for r in cp.ranges):
            problems.append("the checkpoint does not seal this producer position")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problems.append(f"malformed proof document ({type(exc).__name__}: {exc})")
    return problems


def signed_retention_records(store: Store, public: PublicKey) -> list[RetentionRecord]:
    """The retention records in the store that this key signed (others are verify's findings)."""
    out = []
    for text in sql.retention_records(store):
        try:
            rec = RetentionRecord.from_record(json.loads(text))
        except (ValueError, KeyError, TypeError):
            continue
        if rec.signature_ok(public):
            out.append(rec)
    return out


def resume_retention(store: Store, public: PublicKey) -> int:
    """Delete what retention records signed with this key expired but the store still holds (a
    record someone else wrote into the store expires nothing); the number of ranges done."""
    ranges = [
        (str(r["producer"]), int(r["first"]), int(r["last"]))
        for rec in signed_retention_records(store, public)
        for c in rec.checkpoints
        for r in c["ranges"]
    ]
    left = sql.ranges_with_events(store, ranges)
    for producer, first, last in left:
        sql.delete_range(store, producer, first, last)
    if left:
        log.warning("retention.resumed", ranges=len(left), reason="an earlier retention stopped before its deletions")
    return len(left)


def apply_retention(
    store: Store, key: SigningKey, log_file: AppendOnlyLog, before: datetime, reason: str
) -> RetentionRecord | None:
    """Remove every event of the checkpoints sealed before ``before``, whole, and sign a record of it.

    First it finishes what an earlier run recorded but did not delete (stopped between its record
    and the last deletion): those events are past their retention and verify reports them."""
    resume_retention(store, key.public)
    done = {int(c["seq"]) for rec in signed_retention_records(store, key.public) for c in rec.checkpoints}
    cps = [Checkpoint.from_record(json.loads(r)) for r in sql.checkpoints_created_before(store, before)]
    cps = [c for c in cps if c.seq not in done]
    if not cps:
        return None
    rec = RetentionRecord(
        seq=sql.next_retention_seq(store),
        created_at=format_timestamp(datetime.now(UTC)),
        reason=reason,
        before=format_timestamp(before),
        checkpoints=tuple(
            {"seq": c.seq, "hash": c.hash, "root": c.root, "count": c.count, "ranges": [r.as_dict() for r in c.ranges]}
            for c in cps
        ),
        key_id=key.public.key_id,
    ).signed(key)
    # Record first: a crash mid-deletion leaves a record of what was meant to go, never an unexplained hole.
    log_file.append(rec.record())
    sql.insert_retention_record(store, rec.seq, rec.hash, rec.created_at, json.dumps(rec.record(), sort_keys=True))
    for c in cps:
        for r in c.ranges:
            sql.delete_range(store, r.producer, r.first, r.last)
    return rec
