"""Checkpoints, verify, retention and proofs on real chDB, with the tamper drill."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TRAIL, trail_env
from tests.factories import event
from trail.integrity import drill
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import generate, load_signing_key, write_keypair
from trail.integrity.proof import apply_retention, build_proof, check_proof
from trail.integrity.sealer import Sealer
from trail.integrity.verify import Verifier
from trail.storage.store import Store
from trail.testing import RecordingTransport, test_client

pytestmark = [pytest.mark.clickhouse]


class Trail:
    """A store with sealed events from two producers, as the sink would leave it."""

    def __init__(self, tmp_path: Path, store: Store) -> None:
        self.store = store
        priv, _ = write_keypair(tmp_path / "keys", generate())
        self.key = load_signing_key(priv)
        self.log = AppendOnlyLog(tmp_path / "checkpoints.jsonl")
        self.sealer = Sealer(store, self.key, self.log)
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.tmp = tmp_path

    def record(self, service: str, n: int, start: int = 0) -> list[dict[str, Any]]:
        rec = RecordingTransport()
        c = test_client(self.tmp / service, rec, service=service)
        for i in range(start, start + n):
            c.record(**event(i))
        assert c.close()
        return rec.events

    def store_and_seal(self, events: list[dict[str, Any]]) -> None:
        for k in range(0, len(events), 50):
            self.store.insert_events(events[k : k + 50])
            self.sealer.add(events[k : k + 50])
        assert self.sealer.seal() is not None

    def verify(self, since: int | None = None, **kw: Any) -> Any:
        return Verifier(self.store, self.key.public, self.log, **kw).run(since)


@pytest.fixture()
def trail(tmp_path: Path, store: Store) -> Trail:
    t = Trail(tmp_path, store)
    a = t.record("alpha", 120)
    b = t.record("beta", 80)
    t.store_and_seal(a[:60] + b[:40])
    t.store_and_seal(a[60:] + b[40:])
    t.events = {"alpha": a, "beta": b}
    return t


def test_clean_store_verifies(trail):
    """A store nobody touched verifies intact, every event sealed."""
    report = trail.verify()
    assert report.intact, [f.as_dict() for f in report.findings]
    assert report.sealed_events == 200 and report.checkpoints_checked == 2 and report.unsealed_events == 0


def _found(report) -> set[tuple[str, str]]:
    return {(f.kind, f.event_id or f"cp{f.checkpoint}") for f in report.findings}


@pytest.mark.parametrize(
    "case",
    ["modify", "modify_rehash", "delete", "insert", "swap", "delete_checkpoint", "resign"],
)
def test_tamper_drill_names_exactly_what_changed(trail, case):
    """Each kind of tampering is reported, by event id or checkpoint, and nothing else is."""
    a = trail.events["alpha"]
    if case == "modify":
        drill.modify_field(trail.store, a[10]["event_id"])
        expected = {("modified", a[10]["event_id"])}
    elif case == "modify_rehash":
        drill.modify_and_rehash(trail.store, a[30]["event_id"])
        expected = {("modified", a[30]["event_id"])}
    elif case == "delete":
        drill.delete_row(trail.store, a[20]["event_id"])
        expected = {("deleted", "")}
    elif case == "insert":
        forged = drill.insert_forged(trail.store, a[40]["event_id"])
        expected = {("inserted", forged["event_id"])}
    elif case == "swap":
        drill.swap_order(trail.store, a[5]["event_id"], a[6]["event_id"])
        expected = {("reordered", a[5]["event_id"]), ("reordered", a[6]["event_id"])}
    elif case == "delete_checkpoint":
        drill.delete_checkpoint(trail.store, 1)
        expected = {("checkpoint_missing", "cp1")}
    else:
        drill.resign_checkpoint(trail.store, 2)
        expected = {("checkpoint_forged", "cp2")}
    report = trail.verify()
    found = _found(report)
    if case == "delete":
        [f] = report.findings
        assert f.kind == "deleted" and f.seq == 21 and f.producer_id == a[20]["producer"]["id"] and f.checkpoint == 1
    else:
        assert found == expected, [f.as_dict() for f in report.findings]


def test_forged_chain_of_its_own_is_caught_in_strict_mode(trail):
    """A forged event that starts its own valid-looking chain is unsealed, and strict mode reports it."""
    forged = drill.insert_forged_producer(trail.store, trail.events["beta"][3]["event_id"])
    assert trail.verify().unsealed_events == 1
    strict = trail.verify(strict=True)
    assert _found(strict) == {("inserted", forged["event_id"])}


def test_sealer_restart_after_crash_still_verifies(tmp_path, trail):
    """Events stored after the last checkpoint by a sink that crashed are sealed after restart."""
    more = trail.record("alpha", 30, start=120)  # a new client: a new producer, seq from 1
    trail.store.insert_events(more)  # stored, never sealed: the sink died here
    assert trail.verify().unsealed_events == 30
    restarted = Sealer(trail.store, trail.key, trail.log)
    assert restarted.unsealed == 30
    cp = restarted.seal()
    assert cp is not None and cp.seq == 3 and cp.count == 30
    report = trail.verify(strict=True)
    assert report.intact and report.sealed_events == 230


def test_incremental_verify_since_a_checkpoint(trail):
    """--since N checks the checkpoints from N on and still catches tampering there."""
    report = trail.verify(since=2)
    assert report.intact and report.sealed_events == 100
    drill.modify_field(trail.store, trail.events["beta"][70]["event_id"])
    assert _found(trail.verify(since=2)) == {("modified", trail.events["beta"][70]["event_id"])}


def test_retention_removes_whole_sealed_ranges_and_verifies_clean(trail):
    """Expiring sealed ranges through retention leaves a store that verifies clean."""
    rec = apply_retention(
        trail.store, trail.key, trail.log, datetime.now(UTC) + timedelta(seconds=1), "retention period ended"
    )
    assert rec is not None and len(rec.checkpoints) == 2
    assert trail.store.count_events() == 0
    for copy in ("pages_by_subject", "pages_by_actor"):  # the copies by person and by actor go with them
        assert trail.store.query(f"SELECT count() AS n FROM {{db}}.{copy}")[0]["n"] == 0, copy
    report = trail.verify()
    assert report.intact, [f.as_dict() for f in report.findings]
    assert report.expired_events == 200
    # the same deletion without a retention record is reported
    more = trail.record("gamma", 10)
    trail.store_and_seal(more)
    drill.delete_row(trail.store, more[4]["event_id"])
    assert {f.kind for f in trail.verify().findings} == {"deleted"}


def test_proof_checks_offline_and_fails_after_any_change(tmp_path, trail):
    """An inclusion proof verifies with the public key alone, and not after any byte changes."""
    target = trail.events["beta"][50]
    doc = build_proof(trail.store, target["event_id"])
    assert check_proof(doc, trail.key.public) == []
    assert check_proof(doc, generate().public) != []
    text = json.dumps(doc, sort_keys=True)
    # change every byte position of the event hash, the path and the root, one at a time (a sample of all bytes)
    positions = range(0, len(text), max(1, len(text) // 400))
    changed = 0
    for pos in positions:
        ch = text[pos]
        repl = "0" if ch != "0" else "1"
        if not ch.isalnum():
            continue
        try:
            mutated = json.loads(text[:pos] + repl + text[pos + 1 :])
        except ValueError:
            continue
        if mutated == doc:
            continue
        changed += 1
        assert check_proof(mutated, trail.key.public) != [], f"a change at byte {pos} went unnoticed"
    assert changed > 100
    path = tmp_path / "proof.json"
    path.write_text(text)
    pub = trail.key.public.raw_hex
    res = subprocess.run([TRAIL, "proof", "check", str(path), "--public-key", pub], env=trail_env(),
                         capture_output=True, timeout=60)  # fmt: skip
    assert res.returncode == 0 and b"proof OK" in res.stdout
    path.write_text(text.replace(target["hash"], target["hash"][:-1] + ("0" if target["hash"][-1] != "0" else "1")))
    res = subprocess.run([TRAIL, "proof", "check", str(path), "--public-key", pub], env=trail_env(),
                         capture_output=True, timeout=60)  # fmt: skip
    assert res.returncode == 1 and b"proof FAILED" in res.stdout
