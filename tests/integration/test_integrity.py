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
from trail.integrity.checkpoint import AppendOnlyLog, RetentionRecord
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


def _other_person(trail: Trail, event_id: str) -> str:
    """A subject reference of some person the event is not about."""
    rows = trail.store.query(
        "SELECT subject_ref FROM {db}.pages_by_subject WHERE subject_ref NOT IN "
        "(SELECT subject_ref FROM {db}.pages_by_subject WHERE event_id = {id:UUID}) LIMIT 1",
        {"id": event_id},
    )
    return str(rows[0]["subject_ref"])


@pytest.mark.parametrize(
    "case",
    ["modify_subject_copy", "modify_actor_copy", "delete_subject_copy", "delete_actor_copy", "attach_to_person"],
)
def test_tampered_lookup_copy_is_named(trail, case):
    """A change to a copy that one person's or actor's history reads, with `events` untouched, is
    reported by event id and producer, and nothing else is."""
    target = trail.events["beta"][25]
    eid = target["event_id"]
    assert trail.verify().intact
    if case == "modify_subject_copy":
        drill.modify_copy(trail.store, eid, "pages_by_subject")
        expected = {("copy_modified", eid)}
    elif case == "modify_actor_copy":
        drill.modify_copy(trail.store, eid, "pages_by_actor")
        expected = {("copy_modified", eid)}
    elif case == "delete_subject_copy":
        drill.delete_copy(trail.store, eid, "pages_by_subject")
        expected = {("copy_missing", eid)}
    elif case == "delete_actor_copy":
        drill.delete_copy(trail.store, eid, "pages_by_actor")
        expected = {("copy_missing", eid)}
    else:
        drill.copy_to_subject(trail.store, eid, _other_person(trail, eid))
        expected = {("copy_inserted", eid)}
    report = trail.verify()
    assert _found(report) == expected, [f.as_dict() for f in report.findings]
    [f] = report.findings
    assert f.producer_id == target["producer"]["id"] and f.seq == target["producer"]["seq"]
    table = "pages_by_actor" if "actor" in case else "pages_by_subject"
    assert table in f.detail
    # what the lookups now show is what verify names: the changed page really is served
    if case == "modify_subject_copy":
        shown = trail.store.find_events(subject_ref=_refs_of(trail, eid)[0], limit=1000)
        assert any(e["purpose"] == "changed in the copy" for e in shown if e["event_id"] == eid)


def _refs_of(trail: Trail, event_id: str) -> list[str]:
    rows = trail.store.query(
        "SELECT subject_ref FROM {db}.pages_by_subject WHERE event_id = {id:UUID}", {"id": event_id}
    )
    return [str(r["subject_ref"]) for r in rows]


def test_copy_check_in_several_passes_and_since(trail):
    """Compared in slices of a few rows and row by row a few at a time, a clean store stays clean
    and changes are still found; `--since N` compares the copies of the events from checkpoint N on."""
    small = {"rows_per_slice": 7, "rows_per_pass": 5}
    clean = trail.verify(**small)
    assert clean.intact and clean.copy_rows_checked == sum(
        int(trail.store.query(f"SELECT count() AS n FROM {{db}}.{t}")[0]["n"])
        for t in ("pages_by_subject", "pages_by_actor")
    )
    old, new = trail.events["alpha"][3]["event_id"], trail.events["alpha"][100]["event_id"]  # sealed in 1 and 2
    drill.modify_copy(trail.store, old, "pages_by_actor")
    drill.delete_copy(trail.store, new, "pages_by_subject")
    assert _found(trail.verify(**small)) == {("copy_modified", old), ("copy_missing", new)}
    since = trail.verify(since=2, **small)
    assert _found(since) == {("copy_missing", new)}
    assert 0 < since.copy_rows_checked < clean.copy_rows_checked  # the rows in scope, not the tables


class WriteBetweenReads:
    """The real store, where a sink's write lands between verify's first row-by-row read of the
    copies and its second: the copy rows of ``event_id`` that were missing are written then."""

    def __init__(self, store: Store, event_id: str) -> None:
        self._store, self._event_id, self.reads = store, event_id, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def query(self, sql_text: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        rows = self._store.query(sql_text, parameters)
        if "HAVING groupBitOr(side) != 3" in sql_text and not self.reads:
            self.reads += 1
            from trail.storage import integrity as sql

            [copy] = [c for c in sql.event_copies() if c.table == "pages_by_actor"]
            made = copy.made_from("(SELECT * FROM {db}.events WHERE event_id = {id:UUID})")
            self._store.command(f"INSERT INTO {{db}}.pages_by_actor {made}", {"id": self._event_id})
        return rows


def test_copy_difference_gone_on_the_second_read_is_not_reported(trail):
    """A row seen on one side only in the first read (an insert half-written while verify read)
    is read again before it is reported; if both sides then agree, nothing is reported."""
    in_flight = trail.events["alpha"][7]["event_id"]
    drill.delete_copy(trail.store, in_flight, "pages_by_actor")  # the copy's rows not written yet
    store = WriteBetweenReads(trail.store, in_flight)
    assert Verifier(store, trail.key.public, trail.log).run().intact  # type: ignore[arg-type]
    assert store.reads  # the row-by-row read ran and named the event; the second read cleared it
    drill.delete_copy(trail.store, in_flight, "pages_by_actor")
    assert _found(trail.verify()) == {("copy_missing", in_flight)}


def test_copies_of_odd_text_verify_clean(tmp_path, store):
    """Slashes, quotes, backslashes, line and paragraph separators, control characters and
    characters outside the BMP come out of the copies' JSON as the views wrote them."""
    t = Trail(tmp_path, store)
    odd = ["/v1/a/b", 'say "hi"', "back\\slash", "line\u2028para\u2029", "tab\tbell\x07", "例子 😀", "</script>"]
    rec = RecordingTransport()
    c = test_client(tmp_path / "odd", rec, service="odd")
    for i, text in enumerate(odd):
        c.record(**event(i, purpose=text, target={"system": "crm", "dataset": text, "resource": text},
                         attributes={"note": text}))  # fmt: skip
    assert c.close()
    t.store_and_seal(rec.events)
    report = t.verify()
    assert report.intact, [f.as_dict() for f in report.findings]
    assert report.copy_rows_checked >= 2 * len(odd)
    drill.modify_copy(store, rec.events[3]["event_id"], "pages_by_subject")
    assert _found(t.verify()) == {("copy_modified", rec.events[3]["event_id"])}


def test_a_redelivery_merged_in_events_but_not_in_a_copy_is_no_finding(trail):
    """An exact redelivery is two equal rows in events and in each copy until merges collapse
    them, and merges run on each table on their own: that is not a difference."""
    again = trail.events["beta"][:30]
    trail.store.insert_events(again)
    assert trail.verify().intact
    trail.store.command("OPTIMIZE TABLE {db}.events FINAL")
    report = trail.verify()
    assert report.intact, [f.as_dict() for f in report.findings]
    drill.delete_copy(trail.store, again[4]["event_id"], "pages_by_actor")  # both of its rows
    assert _found(trail.verify()) == {("copy_missing", again[4]["event_id"])}


def test_many_differences_are_listed_up_to_a_limit_then_counted(trail):
    gone = [e["event_id"] for e in trail.events["alpha"][50:55]]
    for eid in gone:
        drill.delete_copy(trail.store, eid, "pages_by_actor")
    report = trail.verify(max_copy_findings=2)
    listed = [f for f in report.findings if f.event_id]
    assert (
        len(listed) == 2 and {f.kind for f in listed} == {"copy_missing"} and {f.event_id for f in listed} < set(gone)
    )
    [rest] = [f for f in report.findings if not f.event_id]
    assert "3 more events of pages_by_actor differ" in rest.detail and not report.intact


@pytest.mark.parametrize(
    "change",
    [
        "DROP TABLE {db}.pages_by_actor",
        "ALTER TABLE {db}.pages_by_subject DROP COLUMN outcome",
        "ALTER TABLE {db}.pages_by_subject ADD COLUMN note String DEFAULT ''",
        "ALTER TABLE {db}.pages_by_actor MODIFY COLUMN action String",
    ],
)
def test_a_copy_gone_or_reshaped_is_a_finding_not_a_crash(trail, change):
    """Whoever can drop or alter a copy gets a finding that names it; the other copy and the
    chains are still checked."""
    table = "pages_by_actor" if "pages_by_actor" in change else "pages_by_subject"
    other = "pages_by_subject" if table == "pages_by_actor" else "pages_by_actor"
    drill.delete_copy(trail.store, trail.events["alpha"][9]["event_id"], other)
    drill.modify_field(trail.store, trail.events["beta"][2]["event_id"])
    trail.store.command(change)
    report = trail.verify()
    kinds = sorted((f.kind, f.event_id) for f in report.findings)
    assert kinds == sorted(
        [
            ("copy_differs", ""),
            ("copy_missing", trail.events["alpha"][9]["event_id"]),
            ("modified", trail.events["beta"][2]["event_id"]),
        ]
    ), [f.as_dict() for f in report.findings]
    [f] = [f for f in report.findings if f.kind == "copy_differs"]
    assert f.detail.startswith(table) and ("gone" in f.detail or "columns" in f.detail)


class KilledAtSecondDeletion:
    """The real store, for a retention that is killed at its worst moment: its record signed and
    stored, the first range deleted, the second range's copies deleted and its events not."""

    def __init__(self, store: Store) -> None:
        self._store, self.deletions = store, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def command(self, sql_text: str, parameters: dict[str, Any] | None = None) -> Any:
        if sql_text.startswith("ALTER TABLE {db}.events DELETE"):
            self.deletions += 1
            if self.deletions > 1:
                raise KeyboardInterrupt("killed")
        return self._store.command(sql_text, parameters)


def test_a_retention_stopped_between_its_record_and_its_deletions_is_finished_by_the_next(trail):
    """Killed after signing its record and deleting part of the ranges, retention left events past
    their period in the store (verify: inserted in an expired range). The next run deletes them;
    a retention record nobody signed expires nothing."""
    dying = KilledAtSecondDeletion(trail.store)
    with pytest.raises(KeyboardInterrupt):
        apply_retention(dying, trail.key, trail.log, datetime.now(UTC) + timedelta(seconds=1), "period ended")  # type: ignore[arg-type]
    from trail.storage import integrity as sql

    left = trail.store.count_events()
    assert 0 < left < 200
    assert {f.kind for f in trail.verify().findings} == {"inserted"}
    # a record in the store that another key signed, naming a newer producer's range, expires nothing
    more = trail.record("gamma", 12)
    trail.store_and_seal(more)
    pid = more[0]["producer"]["id"]
    forged = RetentionRecord(
        seq=99, created_at="2026-01-01T00:00:00.000000Z", reason="x", before="2026-01-01T00:00:00.000000Z",
        checkpoints=({"seq": 3, "hash": "", "root": "", "count": 12,
                      "ranges": [{"producer": pid, "first": 1, "last": 12, "tip": ""}]},),
        key_id="other",
    ).signed(generate())  # fmt: skip
    sql.insert_retention_record(trail.store, 99, forged.hash, forged.created_at, json.dumps(forged.record()))
    assert apply_retention(trail.store, trail.key, trail.log, datetime.now(UTC) - timedelta(days=1), "x") is None
    assert trail.store.count_events() == 12  # the interrupted run's leftovers went, nothing else
    report = trail.verify()
    assert report.expired_events == 200 and report.sealed_events == 12
    assert [f.detail for f in report.findings] == ["retention record 99 does not verify with the public key"]
    # nor does it keep the checkpoint it names from expiring when its time comes
    rec = apply_retention(trail.store, trail.key, trail.log, datetime.now(UTC) + timedelta(seconds=1), "ended")
    assert rec is not None and [c["seq"] for c in rec.checkpoints] == [3]
    assert trail.store.count_events() == 0


@pytest.mark.parametrize(
    "setting",
    [
        "output_format_json_escape_forward_slashes = 0",
        "output_format_json_quote_64bit_integers = 1",
        "output_format_json_map_as_array_of_tuples = 1",
    ],
)
def test_the_copies_do_not_depend_on_the_sessions_json_settings(tmp_path, store, setting):
    """The JSON of the copies is written and rebuilt with the same pinned settings, so a server
    default that changes between insert and verify (an upgrade, a profile) is no finding."""
    t = Trail(tmp_path, store)
    rec = RecordingTransport()
    c = test_client(tmp_path / "json", rec, service="json")
    for i in range(5):
        c.record(**event(i, target={"system": "crm", "dataset": "a/b", "resource": "/v1/x"}, record_count=3))
    assert c.close()
    t.store_and_seal(rec.events)
    assert t.verify().intact
    store.command(f"SET {setting}")
    try:
        report = t.verify()
        assert report.intact, [f.as_dict() for f in report.findings]
        more = t.record("json2", 3)  # inserted under the changed default, verified under it too
        t.store_and_seal(more)
        store.command(f"SET {setting.rsplit('=', 1)[0]} = DEFAULT")
        assert t.verify().intact
    finally:
        store.command(f"SET {setting.rsplit('=', 1)[0]} = DEFAULT")
