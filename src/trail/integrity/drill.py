"""The tamper drill: change a live store the ways an insider could, so tests (and operators
rehearsing an audit) can see that ``trail verify`` names exactly what was changed.

Each function performs one kind of tampering with plain SQL on the store, as someone with
write access and no signing key would, and returns what it changed. Never point these at a
store you care about.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from trail.events.model import event_hash
from trail.integrity.checkpoint import Checkpoint
from trail.integrity.keys import SigningKey, generate
from trail.storage import integrity as sql
from trail.storage.store import Store


def _event(store: Store, event_id: str) -> dict[str, Any]:
    events = store.find_events_by_id(event_id)
    if not events:
        raise LookupError(f"no event {event_id}")
    return events[0]


def _delete_rows(store: Store, event_id: str) -> None:
    sql.tamper_delete_event(store, event_id)


def modify_field(store: Store, event_id: str, purpose: str = "changed after the fact") -> dict[str, Any]:
    """Change a stored field in place, leaving the hash as it was."""
    sql.tamper_set_purpose(store, event_id, purpose)
    return {"kind": "modified", "event_id": event_id}


def modify_and_rehash(store: Store, event_id: str) -> dict[str, Any]:
    """Change a field and recompute the row's hash so it looks self-consistent."""
    ev = _event(store, event_id)
    body = {k: v for k, v in ev.items() if k != "hash"}
    body["record_count"] = int(body["record_count"]) + 1
    body["hash"] = event_hash(body)
    _delete_rows(store, event_id)
    store.insert_events([body])
    return {"kind": "modified", "event_id": event_id}


def delete_row(store: Store, event_id: str) -> dict[str, Any]:
    _delete_rows(store, event_id)
    return {"kind": "deleted", "event_id": event_id}


def insert_forged(store: Store, like_event_id: str) -> dict[str, Any]:
    """A forged event at an existing event's chain position, with a hash valid for its content."""
    ev = _event(store, like_event_id)
    body = {k: v for k, v in ev.items() if k != "hash"}
    body["event_id"] = str(uuid.uuid4())
    body["action"] = "delete" if body["action"] != "delete" else "view"
    body["hash"] = event_hash(body)
    store.insert_events([body])
    return {"kind": "inserted", "event_id": body["event_id"]}


def insert_forged_producer(store: Store, like_event_id: str) -> dict[str, Any]:
    """A forged event that starts a chain of its own (seq 1, valid hash): only strict mode sees it."""
    ev = _event(store, like_event_id)
    body = {k: v for k, v in ev.items() if k != "hash"}
    body["event_id"] = str(uuid.uuid4())
    body["producer"] = {"id": f"forged/{uuid.uuid4()}", "seq": 1, "prev": ""}
    body["hash"] = event_hash(body)
    store.insert_events([body])
    return {"kind": "inserted", "event_id": body["event_id"]}


def swap_order(store: Store, event_a: str, event_b: str) -> dict[str, Any]:
    """Swap two events' positions in their producer's chain (their seq values)."""
    a, b = _event(store, event_a), _event(store, event_b)
    if a["producer"]["id"] != b["producer"]["id"]:
        raise ValueError("swap needs two events of one producer")
    sa, sb = a["producer"]["seq"], b["producer"]["seq"]
    a["producer"] = dict(a["producer"], seq=sb)
    b["producer"] = dict(b["producer"], seq=sa)
    _delete_rows(store, event_a)
    _delete_rows(store, event_b)
    store.insert_events([a, b])
    return {"kind": "reordered", "event_ids": [event_a, event_b]}


def modify_copy(store: Store, event_id: str, table: str = "pages_by_subject") -> dict[str, Any]:
    """Change an event as one of the lookup copies shows it (one person's or actor's history),
    leaving ``events`` as it was."""
    sql.tamper_copy_purpose(store, table, event_id, "changed in the copy")
    return {"kind": "copy_modified", "event_id": event_id, "table": table}


def delete_copy(store: Store, event_id: str, table: str = "pages_by_subject") -> dict[str, Any]:
    """Hide an event from the lookups that read one copy, leaving ``events`` as it was."""
    sql.tamper_delete_copy_rows(store, table, event_id)
    return {"kind": "copy_missing", "event_id": event_id, "table": table}


def copy_to_subject(store: Store, event_id: str, subject_ref: str) -> dict[str, Any]:
    """Make an event appear in another person's history (a row in ``pages_by_subject`` only)."""
    sql.tamper_copy_to_subject(store, event_id, subject_ref)
    return {"kind": "copy_inserted", "event_id": event_id, "table": "pages_by_subject"}


def delete_checkpoint(store: Store, seq: int) -> dict[str, Any]:
    sql.tamper_delete_checkpoint(store, seq)
    return {"kind": "checkpoint_missing", "checkpoint": seq}


def resign_checkpoint(store: Store, seq: int, key: SigningKey | None = None) -> dict[str, Any]:
    """Replace the store's copy of a checkpoint with one signed by another key (an altered root)."""
    record = sql.checkpoint_record(store, seq)
    if record is None:
        raise LookupError(f"no checkpoint {seq}")
    cp = Checkpoint.from_record(json.loads(record))
    other = key or generate()
    forged = Checkpoint(
        seq=cp.seq, prev=cp.prev, created_at=cp.created_at, count=cp.count, root="0" * 64,
        ranges=cp.ranges, key_id=other.public.key_id,
    ).signed(other)  # fmt: skip
    delete_checkpoint(store, seq)
    row = [forged.seq, forged.hash, forged.prev, forged.created_at, forged.count, forged.root, forged.key_id]
    sql.insert_checkpoint(store, [*row, forged.signature, json.dumps(forged.record())], [])
    return {"kind": "checkpoint_forged", "checkpoint": seq}
