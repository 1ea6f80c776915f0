"""Hypothesis strategies for audit events as a careless or hostile service hands them over:
mostly well-formed, with every field now and then wrong in kind, size, encoding or clock.
Identifiers are synthetic; the personal-data shapes are well-known test values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from trail.events.model import ACTIONS, ACTOR_KINDS, DATA_CATEGORIES, DESTINATION_KINDS, LEGAL_BASES, OUTCOMES

#: Any code point, lone surrogates included (st.text() leaves those out by default).
_any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]))
_wild_text = st.text(_any_char, min_size=0, max_size=8)
_pi_shaped = st.sampled_from(["13800138000", "someone@example.com", "11010519491231002X", "6222021234567890128"])
_big_text = st.integers(min_value=900, max_value=1100).map(lambda n: "界" * n)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], one_in: int = 8) -> st.SearchStrategy[Any]:
    """``good``, and ``bad`` about once in ``one_in`` draws (so most events pass and reach the sink)."""
    # not 1 or one_in: hypothesis draws the bounds of a range far more often than the middle
    return st.integers(min_value=1, max_value=one_in).flatmap(lambda k: bad if k == one_in // 2 else good)


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Mostly ordinary text (any Unicode, non-BMP too); sometimes empty, huge, a lone surrogate or PI-shaped."""
    good = st.one_of(
        st.text(min_size=1, max_size=max_size),
        st.text(min_size=1, max_size=max_size).map(lambda s: s + "\U0001f600"),
    )
    return mostly(good, st.one_of(_wild_text, _pi_shaped, _big_text), one_in=12)


def _occurred_at() -> st.SearchStrategy[Any]:
    now = datetime.now(UTC)
    good = st.one_of(
        st.none(),
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)).map(
            lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ),
        st.integers(min_value=-3600, max_value=3600).map(
            lambda s: (now + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ),
        st.just("2026-11-22T10:05:27+08:00"),
    )
    bad = st.one_of(
        st.sampled_from(
            [
                "9999-12-31T23:59:59.999999Z",
                "0001-01-01T00:00:00Z",
                "1999-12-31T23:59:59Z",
                "2026-02-30T00:00:00Z",
                "yesterday",
                "0001-01-01T00:00:00+01:00",
            ]
        ),
        st.integers(),
    )
    return mostly(good, bad)


def _subject_ids() -> st.SearchStrategy[Any]:
    return mostly(
        st.one_of(st.none(), st.lists(texts(30), max_size=5)),
        st.one_of(
            st.integers(min_value=400, max_value=520).map(lambda n: [f"SUBJ-TEST-{i:06d}" for i in range(n)]),
            st.just("SUBJ-TEST-1"),
        ),
    )


def _attributes() -> st.SearchStrategy[Any]:
    return mostly(
        st.one_of(st.none(), st.dictionaries(st.text(min_size=1, max_size=20), texts(60), max_size=4)),
        st.one_of(
            st.dictionaries(texts(20), texts(60), max_size=4),
            st.integers(min_value=20, max_value=33).map(lambda n: {f"k{i:02d}": "v" * 1000 for i in range(n)}),
            st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), min_size=1, max_size=2),
        ),
    )


def _maybe_wrong(values: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from(values), st.one_of(texts(12), st.integers()), one_in=25)


@st.composite
def input_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event as handed to ``record()``: keyword arguments, some of them wrong."""
    ev: dict[str, Any] = {
        "actor": draw(
            mostly(
                st.fixed_dictionaries(
                    {"kind": _maybe_wrong(ACTOR_KINDS), "id": texts(30)},
                    optional={"role": texts(20), "department": texts(20)},
                ),
                st.one_of(st.none(), texts(10)),
                one_in=40,
            )
        ),
        "action": draw(_maybe_wrong(ACTIONS)),
        "data_categories": draw(
            mostly(st.lists(_maybe_wrong(DATA_CATEGORIES), min_size=1, max_size=4), st.none(), one_in=40)
        ),
        "purpose": draw(mostly(texts(60), st.none(), one_in=40)),
        "legal_basis": draw(_maybe_wrong(LEGAL_BASES)),
        "target": draw(
            mostly(
                st.fixed_dictionaries({"system": texts(20)}, optional={"dataset": texts(20), "resource": texts(20)}),
                st.none(),
                one_in=40,
            )
        ),
    }
    optional = {
        "occurred_at": _occurred_at(),
        "subject_ids": _subject_ids(),
        "record_count": mostly(
            st.integers(min_value=0, max_value=10**6), st.one_of(st.integers(), st.text(max_size=3))
        ),
        "consent_ref": texts(30),
        "location": st.fixed_dictionaries({}, optional={"ip": texts(15), "site": texts(15), "region": texts(8)}),
        "destination": st.fixed_dictionaries({"kind": _maybe_wrong(DESTINATION_KINDS)}, optional={"name": texts(20)}),
        "outcome": _maybe_wrong(OUTCOMES),
        "attributes": _attributes(),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            value = draw(strategy)
            if value is not None:
                ev[name] = value
    return {k: v for k, v in ev.items() if v is not None}
