"""The copies of events that lookups read, as the migrations define them (no store needed)."""

from __future__ import annotations

import re

from trail.storage.integrity import event_copies
from trail.storage.store import EVENT_COLUMNS, PAGE_JSON_FIELDS

_JSON_ARGS = re.compile(r"formatRowNoNewline\('JSONEachRow',(?P<args>[^)]*)\) AS event", re.S)


def test_the_copies_verify_compares_are_the_page_tables():
    """Tables dropped by later migrations (events_by_subject, the indexes) are not compared."""
    assert [c.table for c in event_copies()] == ["pages_by_actor", "pages_by_subject"]
    for copy in event_copies():
        assert copy.select.startswith("SELECT ") and copy.made_from("(SELECT 1)").count("FROM (SELECT 1)") == 1


def test_each_page_view_writes_every_event_column_its_row_does_not_hold_as_a_column():
    """A column added to events but not to a page view's JSON would make every page of that view
    fall back to reading events; this names the column instead."""
    for copy in event_copies():
        m = _JSON_ARGS.search(copy.select)
        assert m, copy.table
        in_json = {a.strip() for a in m["args"].split(",")}
        assert in_json == set(PAGE_JSON_FIELDS), (copy.table, set(PAGE_JSON_FIELDS) ^ in_json)
        assert in_json < set(EVENT_COLUMNS)
