"""The ClickHouse store on real chDB: migrations, the subject index, de-duplication."""

from __future__ import annotations

import re

import pytest

from tests.factories import event, subject
from trail.errors import StoreError
from trail.events.model import parse_timestamp
from trail.storage.store import EVENT_COLUMNS, Store, event_row, load_migrations, rows_to_columns
from trail.testing import RecordingTransport, client_ref, test_client

pytestmark = [pytest.mark.clickhouse]


def _events(tmp_path, n: int, **kw):
    rec = RecordingTransport()
    c = test_client(tmp_path, rec)
    for i in range(n):
        c.record(**event(i, occurred_at=f"2026-0{1 + i % 9}-01T00:00:{i % 60:02d}.000000Z", **kw))
    assert c.close()
    return c, rec.events


def _explain(store: Store, sql: str) -> str:
    return "\n".join(r["explain"] for r in store.query("EXPLAIN indexes = 1 " + sql))


def test_migrations_are_numbered_and_applied_once(store):
    """Migrations apply in order once; a second run applies nothing."""
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    assert store.migrate() == []
    applied = [r["version"] for r in store.query("SELECT version FROM {db}.schema_migrations ORDER BY version")]
    assert applied == versions


def test_subject_lookup_is_one_range_read_by_person(tmp_path, store):
    """ "Every event about subject X" reads a range of pages_by_subject's primary key, not events,
    and finds exactly that person's events, each once, whole."""
    client, events = _events(tmp_path, 3000)
    store.insert_events(events)  # 6,000 rows by person: several granules, of which one is read
    store.insert_events(events[:500])  # a sink's replay: stored twice, shown once
    ref = client_ref(client, subject(5))
    plan = _explain(store, f"SELECT event_id FROM {{db}}.pages_by_subject WHERE subject_ref = '{ref}'")
    assert re.search(r"PrimaryKey\s+Keys:\s+subject_ref\s+Condition: \(subject_ref in", plan), plan
    selected, total = map(int, re.search(r"Granules: (\d+)/(\d+)", plan.split("PrimaryKey", 1)[1]).groups())
    assert selected < total, plan
    found = store.find_events(subject_ref=ref, limit=1000)
    expected = {e["event_id"] for e in events if ref in e["subject_refs"]}
    assert len(found) == len(expected) > 0
    assert {e["event_id"] for e in found} == expected
    assert [e["occurred_at"] for e in found] == sorted(e["occurred_at"] for e in found)
    assert found == [store.find_events_by_id(e["event_id"])[0] for e in found]


def test_exact_redelivery_is_invisible(tmp_path, store):
    """Inserting the same batch twice (a sink replay) shows each event once."""
    _, events = _events(tmp_path, 200)
    store.insert_events(events)
    store.insert_events(events)
    assert store.count_events() == 200
    assert len(store.find_events(limit=1000)) == 200
    assert store.counts()["deliveries"] == 200
    assert store.gaps() == []


def test_actor_lookup_is_one_range_read_by_actor(tmp_path, store):
    """One actor's events in a time range are a range of pages_by_actor's primary key, not a
    lookup per event in events: found exactly once each, whole, across partitions, and only that
    actor's."""
    _, events = _events(tmp_path, 3000)
    store.insert_events(events)  # 3,000 rows by actor (50 actors): several granules, of which one is read
    store.insert_events(events[:500])  # a replayed batch changes nothing
    plan = _explain(store, "SELECT event_id FROM {db}.pages_by_actor WHERE actor_id = 'E1007'")
    assert re.search(r"PrimaryKey\s+Keys:\s+actor_id\s+Condition: \(actor_id in", plan), plan
    selected, total = map(int, re.search(r"Granules: (\d+)/(\d+)", plan.split("PrimaryKey", 1)[1]).groups())
    assert selected < total, plan
    since, until = parse_timestamp("t", "2026-02-01T00:00:00Z"), parse_timestamp("t", "2026-06-01T00:00:00Z")
    found = store.find_events(actor_id="E1007", since=since, until=until, limit=10_000)
    expected = [
        e for e in events if e["actor"]["id"] == "E1007" and "2026-02-01" <= e["occurred_at"][:10] < "2026-06-01"
    ]
    assert len(expected) > 20
    assert sorted(e["event_id"] for e in found) == sorted(e["event_id"] for e in expected)
    assert [e["occurred_at"] for e in found] == sorted(e["occurred_at"] for e in found)
    assert found == [store.find_events_by_id(e["event_id"])[0] for e in found]
    newest = store.find_events(actor_id="E1007", since=since, until=until, limit=5, newest_first=True)
    # newest first (ties in time are in the store's UUID order, not the text's)
    assert [e["occurred_at"] for e in newest] == sorted((e["occurred_at"] for e in found), reverse=True)[:5]
    assert all(e in found for e in newest)


def test_page_copies_are_backfilled_for_events_stored_before_them(tmp_path, store):
    """A store upgraded to the page tables (migration 13) finds the people and actors of events it
    held before, and the whole-event copies they replace are gone."""
    client, events = _events(tmp_path, 300)
    store.insert_events(events)
    for copy in ("pages_by_subject", "pages_by_actor"):
        store.command(f"TRUNCATE TABLE {{db}}.{copy}")
    store.command("ALTER TABLE {db}.schema_migrations DELETE WHERE version = 13 SETTINGS mutations_sync = 2")
    ref = client_ref(client, subject(3))
    assert store.find_events(actor_id="E1003", limit=1000) == []  # the copies are what the lookups read
    assert store.find_events(subject_ref=ref, limit=1000) == []
    assert store.migrate() == [13]
    found = store.find_events(actor_id="E1003", limit=1000)
    assert {e["event_id"] for e in found} == {e["event_id"] for e in events if e["actor"]["id"] == "E1003"}
    assert found and found == [store.find_events_by_id(e["event_id"])[0] for e in found]
    mine = store.find_events(subject_ref=ref, limit=1000)
    assert {e["event_id"] for e in mine} == {e["event_id"] for e in events if ref in e["subject_refs"]}
    assert mine and mine == [store.find_events_by_id(e["event_id"])[0] for e in mine]
    tables = {
        r["name"] for r in store.query("SELECT name FROM system.tables WHERE database = {d:String}", {"d": store.db})
    }
    assert {"pages_by_subject_mv", "pages_by_actor_mv"} <= tables
    assert not tables & {"events_by_subject", "events_by_subject_mv", "events_by_actor", "events_by_actor_mv"}
    # killed before its ledger row was written: the migration runs again over its own work, and its
    # second backfill shows no event twice
    store.command("ALTER TABLE {db}.schema_migrations DELETE WHERE version = 13 SETTINGS mutations_sync = 2")
    assert store.migrate() == [13]
    assert store.find_events(actor_id="E1003", limit=1000) == found
    assert store.find_events(subject_ref=ref, limit=1000) == mine


#: Text record() accepts that JSON must escape or carry as it is.
ODD_TEXT = (
    'say "hi" \\ back\\slash',
    "tab\there\nnew line\r",
    "ctl \x01\x1f\x7f and \x00 nul",
    "中文 目的 🙂 emoji",
    "\u2028\u2029 separators",
    "</script><b>",
    "a/b//c",
    "\ufeffbom",
    "界" * 256,
)


def test_pages_give_back_odd_text_exactly_as_stored(tmp_path, store):
    """Events whose text JSON must escape (quotes, backslashes, control characters, NUL, line
    separators), or carry as it is (CJK, emoji, a BOM, the longest values), come back from the
    page tables' JSON equal to their whole rows in events, by actor and by each person."""
    rec = RecordingTransport()
    c = test_client(tmp_path, rec)
    for i, text in enumerate(ODD_TEXT):
        c.record(**event(i, purpose=text[:1024], attributes={text[:40]: text, "ticket": f"T-{i}"}))
        c.record(**event(i, actor={"kind": "staff", "id": f"E{i}-{text[:20]}", "department": text[:256]}))
        c.record(**event(i, target={"system": "crm", "resource": text[:256]}, occurred_at="2000-01-01T00:00:00Z"))
    assert c.close()
    assert len(rec.events) == 3 * len(ODD_TEXT)
    store.insert_events(rec.events)
    for ev in rec.events:
        whole = store.find_events_by_id(ev["event_id"])
        assert whole and whole[0]["hash"] == ev["hash"]
        assert whole[0] in store.find_events(actor_id=ev["actor"]["id"], limit=10_000)
        for ref in ev["subject_refs"]:
            assert whole[0] in store.find_events(subject_ref=ref, limit=10_000)


def test_every_filter_reads_the_page_tables_as_it_reads_events(tmp_path, store):
    """Each filter a page can take (time, action, category, service, system, outcome, destination,
    the cursor) gives on the page tables exactly what the same filter gives on events."""
    rec = RecordingTransport()
    clients = [test_client(tmp_path / "a", rec, service="svc-a"), test_client(tmp_path / "b", rec, service="svc-b")]
    actions = ("view", "export", "transfer", "delete")
    for i in range(240):
        action = actions[i % 4]
        extra: dict = {"destination": {"kind": "file"}} if action == "export" else {}
        if action == "transfer":
            extra = {"destination": {"kind": "third_party", "name": "org-1"}, "legal_basis": "consent",
                     "consent_ref": f"C-{i}"}  # fmt: skip
        clients[i % 2].record(
            **event(
                i,
                subject_ids=[subject(3), subject(i)],
                actor={"kind": "staff", "id": f"E100{3 + i % 3}", "role": "support"},
                action=action,
                outcome="denied" if i % 7 == 0 else "success",
                data_categories=["name", "health"] if i % 3 == 0 else ["name"],
                target={"system": "crm" if i % 5 else "billing", "dataset": "customers"},
                occurred_at=f"2026-0{1 + i % 6}-0{1 + i % 9}T00:00:{i % 60:02d}.000000Z",
                **extra,
            )
        )
    for c in clients:
        assert c.close()
    store.insert_events(rec.events)
    since, until = parse_timestamp("t", "2026-02-01T00:00:00Z"), parse_timestamp("t", "2026-05-01T00:00:00Z")
    first = store.find_events(since=since, limit=1)[0]
    cursor = (parse_timestamp("t", first["occurred_at"]), first["event_id"])
    filters = [
        {"since": since, "until": until},
        {"action": "export"},
        {"category": "health"},
        {"service": "svc-b"},
        {"exclude_service": "svc-b"},
        {"system": "billing"},
        {"outcome": "denied"},
        {"destination": "third_party"},
        {"after": cursor},
        {"action": "transfer", "category": "health", "destination": "third_party", "service": "svc-a"},
    ]
    ref = client_ref(clients[0], subject(3))
    for f in filters:
        everything = store.find_events(limit=10_000, **f)
        for key, lookup in (("subject_ref", ref), ("actor_id", "E1003")):
            got = store.find_events(limit=10_000, **{key: lookup}, **f)
            want = [
                e
                for e in everything
                if (ref in e["subject_refs"] if key == "subject_ref" else e["actor"]["id"] == "E1003")
            ]
            assert got == want and got, (key, f)


@pytest.mark.parametrize("text", ['{"actor_kind": "sta', "[1]", "{}", '"text"', "null", '{"actor_kind": "staff"}'])
def test_a_page_row_whose_json_is_not_an_event_is_read_whole_from_events(tmp_path, store, text):
    """A page table's row whose event text is not the JSON object a view writes (text that does
    not parse, a list, a string, an object with fields missing: stored some other way than
    trail's writer) costs that row a read of events, not the page: every event comes back whole."""
    _, events = _events(tmp_path, 30)
    store.insert_events(events)
    victim = next(e for e in events if e["actor"]["id"] == "E1002")
    store.command(
        "ALTER TABLE {db}.pages_by_actor UPDATE event = {t:String} WHERE event_id = {id:UUID} "
        "SETTINGS mutations_sync = 2",
        {"t": text, "id": victim["event_id"]},
    )
    stored = store.query("SELECT event FROM {db}.pages_by_actor WHERE event_id = {id:UUID}", {"id": victim["event_id"]})
    assert [r["event"] for r in stored] == [text]
    found = store.find_events(actor_id="E1002", limit=1000)
    assert victim["event_id"] in {e["event_id"] for e in found}
    assert found == [store.find_events_by_id(e["event_id"])[0] for e in found]


def test_filter_by_destination_kind(tmp_path, store):
    """Provision events filter by where the data went; events without a destination never match."""
    rec = RecordingTransport()
    c = test_client(tmp_path, rec)
    for i in range(60):
        kind = ("third_party", "abroad", "file")[i % 3]
        c.record(**event(i, action="transfer", destination={"kind": kind, "name": f"org-{i % 4}"}))
    for i in range(20):
        c.record(**event(100 + i))
    assert c.close()
    store.insert_events(rec.events)
    found = store.find_events(destination="abroad", limit=1000)
    assert len(found) == 20 and {e["destination"]["kind"] for e in found} == {"abroad"}
    assert store.find_events(destination="public", limit=1000) == []


def test_events_are_stored_in_small_granules_for_point_lookups(store):
    """One event's lookup reads a granule of 1,024 rows with small compressed blocks."""
    ddl = next(iter(store.query("SHOW CREATE TABLE {db}.events")[0].values()))
    assert "index_granularity = 1024" in ddl and "max_compress_block_size = 65536" in ddl


@pytest.mark.parametrize("newest_first", [False, True])
def test_actor_pages_show_every_event_once_across_replays(tmp_path, store, newest_first):
    """An actor's pages (the index gives each page's keys) hold every event of the actor once,
    full pages until the last, even when part of the trail was stored twice (a sink's replay),
    with or without a filter beside the actor."""
    _, events = _events(tmp_path, 1500)
    store.insert_events(events)
    store.insert_events(events[200:700])  # redelivered: the index holds these keys twice
    actor = "E1003"
    mine = [e for e in events if e["actor"]["id"] == actor]
    since, until = parse_timestamp("t", "2026-01-01T00:00:00Z"), parse_timestamp("t", "2026-10-01T00:00:00Z")
    if newest_first:
        page = store.find_events(actor_id=actor, since=since, until=until, limit=7, newest_first=True)
        latest = max(e["occurred_at"] for e in mine)
        assert len(page) == 7 and page[0]["occurred_at"] == latest
        assert [e["occurred_at"] for e in page] == sorted((e["occurred_at"] for e in page), reverse=True)
        return
    for action in (None, "view"):
        seen: list[str] = []
        after = None
        while True:
            page = store.find_events(actor_id=actor, since=since, until=until, limit=7, after=after, action=action)
            if not page:
                break
            assert len(page) == 7 or len(seen) + len(page) == len(mine), "a short page before the end"
            seen += [e["event_id"] for e in page]
            after = (parse_timestamp("t", page[-1]["occurred_at"]), page[-1]["event_id"])
        assert len(seen) == len(set(seen)) == len(mine) > 7
        assert set(seen) == {e["event_id"] for e in mine}


def test_events_are_stored_as_a_columnar_insert_of_the_same_rows_would_store_them(tmp_path, store):
    """The events insert sends JSON lines; what it stores equals, byte for byte, what
    clickhouse-connect's columnar Native insert of the same rows stores (the insert it replaced),
    over text JSON must escape and the store's first and last instants."""
    rec = RecordingTransport()
    c = test_client(tmp_path, rec)
    for i, text in enumerate(ODD_TEXT):
        c.record(**event(i, purpose=text[:1024], attributes={text[:40]: text, "ticket": f"T-{i}"}))
        c.record(**event(i, target={"system": "crm", "resource": text[:256]}))
    assert c.close()
    # The sink stores years 1900 to 2299 (the SDK refuses times before 2000): the edges as the
    # wire spells them.
    instants = ("1900-01-01T00:00:00.000000Z", "2299-12-31T23:59:59.999999Z", "2024-02-29T23:59:59.000001Z")
    at = EVENT_COLUMNS.index("occurred_at")
    rows = [
        tuple(instants[i % 4] if k == at and i % 4 < 3 else v for k, v in enumerate(event_row(ev)))
        for i, ev in enumerate(rec.events)
    ]
    store.insert_event_rows(rows)
    oracle = Store(store.dsn, f"{store.db}_native")
    oracle.migrate()
    try:
        oracle._client.insert(
            f"{oracle.db}.events", rows_to_columns(rows), column_names=list(EVENT_COLUMNS), column_oriented=True
        )
        cols = ", ".join(EVENT_COLUMNS)
        tables = (("events", "event_id"), ("pages_by_subject", "subject_ref, event_id"), ("pages_by_actor", "event_id"))
        for table, order in tables:
            what = cols if table == "events" else "*"
            sql = f"SELECT {what} FROM {{}}.{table} ORDER BY {order} FORMAT RowBinary"
            ours = store._client.raw_query(sql.format(store.db))
            theirs = oracle._client.raw_query(sql.format(oracle.db))
            assert ours and ours == theirs, table
        assert store.count_events() == len(rows) == 2 * len(ODD_TEXT)
    finally:
        oracle.command("DROP DATABASE IF EXISTS {db}")


def test_a_failed_events_insert_names_no_stored_value(tmp_path, store):
    """A row the server cannot parse fails the whole insert (nothing of it is stored), and the
    error keeps ClickHouse's code and reason but not the text around the failure."""
    _, events = _events(tmp_path, 2)
    rec_rows = [list(event_row(ev)) for ev in events]
    rec_rows[1][EVENT_COLUMNS.index("occurred_at")] = "secret-value-7741 is not a time"
    with pytest.raises(StoreError) as err:
        store.insert_event_rows(rec_rows)
    message = str(err.value)
    assert "secret-value-7741" not in message
    assert message == (
        "insert of 2 events failed: Code: 41. Cannot read DateTime, column occurred_at, row 2 (CANNOT_PARSE_DATETIME)"
    )
    assert store.count_events() == 0


def test_warm_up_reads_only_each_lookup_tables_key_index(tmp_path, store):
    """The API's start-up warm-up: each query's condition is on its table's key and selects no
    granule (it loads the index, reads no data); on a store that does not answer it logs and
    returns instead of raising."""
    from trail.storage.store import WARM_UP
    from trail.testing import capture_logs

    _, events = _events(tmp_path, 3000)
    store.insert_events(events)
    for table, condition in WARM_UP:
        plan = _explain(store, f"SELECT 1 AS n FROM {{db}}.{table} WHERE {condition} LIMIT 1")
        selected, total = map(int, re.search(r"Granules: (\d+)/(\d+)", plan.split("PrimaryKey", 1)[1]).groups())
        assert selected == 0 < total, plan
    assert store.warm_up() >= 0
    gone = Store(store.dsn, f"{store.db}_never_made")  # no database: every query fails
    with capture_logs("info") as logs:
        assert gone.warm_up() >= 0
    assert "store.warm_up_failed" in logs.getvalue() and "store.warmed_up" in logs.getvalue()
