"""The detection engine on plain wire-event dicts: each rule fires on its case and stays silent
on its look-alike; event time, not arrival order; checkpoints restore the windows."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trail.detect.engine import Engine
from trail.detect.rules import RuleSet, load_rules

# 2026-11-18 is a Wednesday; Shanghai is UTC+8, so 02:00Z is 10:00 local.
WED_10_LOCAL = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)
WED_23_LOCAL = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
SAT_11_LOCAL = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


def ref(i: int | str) -> str:
    return hashlib.sha256(f"SUBJ-TEST-{i}".encode()).hexdigest()


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wire(at: datetime, **over: Any) -> dict[str, Any]:
    """A validated wire event as the decoder returns it (synthetic ids only)."""
    ev: dict[str, Any] = {
        "schema": "trail.audit/v1",
        "event_id": str(uuid.uuid4()),
        "occurred_at": ts(at),
        "actor": {"kind": "staff", "id": "E-TEST-1", "role": "support", "department": "care"},
        "action": "view",
        "subject_refs": [ref(1)],
        "record_count": 1,
        "data_categories": ["name", "phone"],
        "purpose": "answer support ticket",
        "legal_basis": "contract",
        "source": {"service": "crm", "host": "h1", "environment": "test"},
        "location": {"ip": "10.0.0.1", "region": "CN-GD"},
        "target": {"system": "crm"},
        "outcome": "success",
        "attributes": {},
        "producer": {"id": "p", "seq": 1, "prev": ""},
        "hash": "0" * 64,
    }
    ev.update(over)
    if "subject_refs" in over and "record_count" not in over:
        ev["record_count"] = len(ev["subject_refs"])
    return ev


def staff(i: int = 1, kind: str = "staff") -> dict[str, str]:
    return {"kind": kind, "id": f"E-TEST-{i}", "role": "support", "department": "care"}


def rules(**over: Any) -> RuleSet:
    return dataclasses.replace(RuleSet(), **over)


def spaced(start: datetime, n: int, seconds: float = 1.0) -> list[datetime]:
    return [start + timedelta(seconds=i * seconds) for i in range(n)]


def fired(events: list[dict[str, Any]], rs: RuleSet | None = None) -> list[str]:
    eng = Engine(rs or load_rules(approved_jobs=("svc-retention", "svc-nightly-export")))
    return [a.rule for a in eng.feed_many(events)]


def _cases() -> list[Any]:
    t, night, sat = WED_10_LOCAL, WED_23_LOCAL, SAT_11_LOCAL
    export = {"action": "export", "destination": {"kind": "file"}, "subject_refs": []}
    return [
        pytest.param([wire(t, record_count=1500, **export)], "bulk_export", id="bulk_export-single"),
        pytest.param(
            [wire(t + timedelta(hours=h), record_count=900, **export) for h in range(6)],
            "bulk_export",
            id="bulk_export-total",
        ),
        pytest.param(
            [wire(t, action="delete", subject_refs=[], record_count=5000)], "bulk_destruction", id="bulk_destruction"
        ),
        pytest.param(
            [wire(d, subject_refs=[ref(i)]) for i, d in enumerate(spaced(t, 600, 5))], "enumeration", id="enumeration"
        ),
        pytest.param(
            [wire(night, data_categories=["health"], legal_basis="consent", consent_ref="C-1")],
            "off_hours",
            id="off_hours-sensitive",
        ),
        pytest.param([wire(sat, subject_refs=[], record_count=150)], "off_hours", id="off_hours-weekend-records"),
        pytest.param(
            [wire(t, data_categories=["biometric"], legal_basis="contract")],
            "sensitive_without_consent",
            id="sensitive-wrong-basis",
        ),
        pytest.param(
            [wire(t, data_categories=["health"], legal_basis="consent")],
            "sensitive_without_consent",
            id="sensitive-consent-no-ref",
        ),
        pytest.param(
            [
                wire(
                    t,
                    actor={"kind": "subject", "id": "S-TEST"},
                    action="consent_withdraw",
                    subject_refs=[ref(7)],
                    legal_basis="consent",
                ),
                wire(t + timedelta(minutes=5), subject_refs=[ref(7)]),
            ],
            "after_withdrawal",
            id="after_withdrawal",
        ),
        pytest.param(
            [wire(t, action="transfer", destination={"kind": "abroad", "name": "partner"})],
            "cross_border",
            id="cross_border-kind",
        ),
        pytest.param(
            [wire(t, action="provide", destination={"kind": "third_party", "region": "SG"})],
            "cross_border",
            id="cross_border-region",
        ),
        pytest.param([wire(d, outcome="denied") for d in spaced(t, 25, 10)], "denied_burst", id="denied_burst-actor"),
        pytest.param(
            [wire(d, outcome="denied", actor=staff(i)) for i, d in enumerate(spaced(t, 25, 10))],
            "denied_burst",
            id="denied_burst-ip-many-actors",
        ),
    ]


@pytest.mark.parametrize(("events", "rule"), _cases())
def test_rule_fires_on_its_case(events: list[dict[str, Any]], rule: str) -> None:
    """Each rule raises an alert on its injected case."""
    assert rule in fired(events)


def _lookalikes() -> list[Any]:
    t, night = WED_10_LOCAL, WED_23_LOCAL
    export = {"action": "export", "destination": {"kind": "file"}, "subject_refs": []}
    job = {"kind": "service", "id": "svc-nightly-export"}
    return [
        pytest.param(
            [wire(night + timedelta(minutes=m), actor=job, record_count=20_000, **export) for m in (0, 5)],
            id="approved-nightly-export",
        ),
        pytest.param(
            [wire(t + timedelta(hours=h), record_count=900, **export) for h in range(5)], id="export-4500-a-day"
        ),
        pytest.param(
            [
                wire(
                    t,
                    action="delete",
                    subject_refs=[],
                    record_count=50_000,
                    actor={"kind": "service", "id": "svc-retention"},
                )
            ],
            id="approved-retention-run",
        ),
        pytest.param([wire(t, action="delete", subject_refs=[], record_count=999)], id="delete-999"),
        pytest.param(
            [wire(d, subject_refs=[ref(i % 300)]) for i, d in enumerate(spaced(t, 600, 5))],
            id="support-300-subjects-an-hour",
        ),
        pytest.param(
            [
                wire(d, subject_refs=[ref(i)], actor={"kind": "service", "id": "svc-crm"})
                for i, d in enumerate(spaced(t, 600, 5))
            ],
            id="service-touching-many-subjects",
        ),
        pytest.param([wire(night, subject_refs=[], record_count=99)], id="night-99-records"),
        pytest.param(
            [
                wire(
                    night,
                    data_categories=["health"],
                    legal_basis="consent",
                    consent_ref="C-1",
                    actor={"kind": "service", "id": "svc-batch"},
                )
            ],
            id="night-sensitive-by-service",
        ),
        pytest.param(
            [wire(t, data_categories=["health"], legal_basis="consent", consent_ref="C-1")], id="sensitive-with-consent"
        ),
        pytest.param([wire(t, data_categories=["id_number"], legal_basis="law")], id="sensitive-by-law"),
        pytest.param(
            [wire(t, data_categories=["health"], legal_basis="contract", outcome="denied")], id="sensitive-denied"
        ),
        pytest.param(
            [
                wire(
                    t,
                    actor={"kind": "subject", "id": "S-TEST"},
                    action="consent_withdraw",
                    subject_refs=[ref(7)],
                    legal_basis="consent",
                ),
                wire(t + timedelta(minutes=5), action="delete", subject_refs=[ref(7)]),
                wire(t - timedelta(minutes=5), subject_refs=[ref(7)]),
            ],
            id="erasure-after-withdrawal",
        ),
        pytest.param(
            [wire(t, action="transfer", destination={"kind": "third_party", "region": "CN-SH"})], id="domestic-transfer"
        ),
        pytest.param([wire(d, outcome="denied") for d in spaced(t, 19, 10)], id="19-denied"),
        pytest.param([wire(d, outcome="denied") for d in spaced(t, 25, 60)], id="25-denied-over-25-min"),
    ]


@pytest.mark.parametrize("events", _lookalikes())
def test_rule_silent_on_lookalike(events: list[dict[str, Any]]) -> None:
    """Look-alikes of each rule raise no alert at all."""
    assert fired(events) == []


def _history(actor: dict[str, str], start: datetime, days: int, per_hour: int) -> list[dict[str, Any]]:
    out = []
    for d in range(days):
        day = start + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for h in range(9):
            hour = day + timedelta(hours=h)
            out.extend(wire(hour + timedelta(seconds=s * (3000 // per_hour)), actor=actor) for s in range(per_hour))
    return out


def test_volume_anomaly_against_own_baseline() -> None:
    """An actor at ten times its usual hourly volume fires volume_anomaly; twice does not."""
    start = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 local
    me = staff(5)
    history = _history(me, start, 14, 20)
    spike_day = datetime(2026, 11, 17, 3, 0, tzinfo=UTC)  # Tuesday 11:00 local
    busy = [wire(spike_day + timedelta(seconds=s * 80), actor=me) for s in range(40)]
    eng = Engine(RuleSet())
    alerts = eng.feed_many(history + busy)
    assert [a.rule for a in alerts if a.rule == "volume_anomaly"] == []
    spike = [wire(spike_day + timedelta(hours=2, seconds=s * 15), actor=me) for s in range(200)]
    assert [a.rule for a in eng.feed_many(spike)] == ["volume_anomaly"]


def test_volume_anomaly_cold_start_uses_peers() -> None:
    """An actor with no history is judged against its peers (same kind, role, department)."""
    start = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    history: list[dict[str, Any]] = []
    for i in range(5):
        history += _history(staff(10 + i), start, 14, 20)
    history.sort(key=lambda e: e["occurred_at"])
    eng = Engine(RuleSet())
    assert eng.feed_many(history) == []
    day = datetime(2026, 11, 17, 3, 0, tzinfo=UTC)
    newcomer = staff(99)
    normal = [wire(day + timedelta(seconds=s * 100), actor=newcomer) for s in range(30)]
    assert eng.feed_many(normal) == []
    spike = [wire(day + timedelta(hours=1, seconds=s * 10), actor=newcomer) for s in range(300)]
    assert [a.rule for a in eng.feed_many(spike)] == ["volume_anomaly"]


def _mixed_day() -> list[dict[str, Any]]:
    t = WED_10_LOCAL
    evs = [wire(d, subject_refs=[ref(i)]) for i, d in enumerate(spaced(t, 600, 5))]
    evs += [wire(d, outcome="denied", actor=staff(3)) for d in spaced(t, 30, 7)]
    evs += [
        wire(
            t + timedelta(minutes=10 * h),
            actor=staff(4),
            record_count=1200,
            action="copy",
            subject_refs=[],
            destination={"kind": "media"},
        )
        for h in range(5)
    ]
    return evs


def test_alerts_do_not_depend_on_arrival_order_within_lateness() -> None:
    """Actors interleaved differently (each actor's own events in order, as one service sends
    them), and batches shuffled within the lateness, give the same alert ids as time order."""
    evs = sorted(_mixed_day(), key=lambda e: e["occurred_at"])
    rs = rules(lateness_s=3600)  # the whole scenario spans less than an hour
    expected = sorted(a.alert_id for a in Engine(rs).feed_many(evs))
    rng = random.Random(7)
    by_actor: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        by_actor.setdefault(e["actor"]["id"], []).append(e)
    jittered: list[dict[str, Any]] = []
    while by_actor:  # each actor in order, actors interleaved at random (one lagging up to minutes)
        actor = rng.choice(sorted(by_actor))
        jittered.extend(by_actor[actor][:7])
        del by_actor[actor][:7]
        if not by_actor[actor]:
            del by_actor[actor]
    assert jittered != evs
    assert sorted(a.alert_id for a in Engine(rs).feed_many(jittered)) == expected
    assert len(expected) >= 3


def test_late_event_is_ignored_by_windows() -> None:
    """An event older than the watermark does not count towards a window."""
    t = WED_10_LOCAL
    eng = Engine(rules(lateness_s=60))
    eng.feed(wire(t + timedelta(hours=3)))
    late = [wire(d, outcome="denied") for d in spaced(t, 25, 1)]
    assert eng.feed_many(late) == []
    assert eng.stats.late >= 25


def test_checkpoint_restores_windows() -> None:
    """An engine rebuilt from its state continues the windows where they were."""
    t = WED_10_LOCAL
    first = [wire(d, outcome="denied") for d in spaced(t, 12, 5)]
    second = [wire(d, outcome="denied") for d in spaced(t + timedelta(seconds=60), 12, 5)]
    eng = Engine(RuleSet())
    assert eng.feed_many(first) == []
    import json

    restored = Engine.from_state(RuleSet(), json.loads(json.dumps(eng.state())))
    alerts = restored.feed_many(second)
    assert [a.rule for a in alerts] == ["denied_burst"]
    assert alerts[0].count == 20  # the window remembered the 12 denials before the restart
    assert alerts[0].trigger_event_id == second[7]["event_id"]


def test_alert_fields() -> None:
    """An alert names its rule, severity, actor, window (RFC 3339), count, evidence and articles."""
    [a] = Engine(RuleSet()).feed_many([wire(WED_10_LOCAL, action="export", record_count=2000, subject_refs=[])])
    d = a.public()
    assert d["rule"] == "bulk_export"
    assert d["severity"] == "high"
    assert d["actor"] == "E-TEST-1"
    assert d["window_start"].endswith("Z")
    assert d["count"] == 2000
    assert len(d["evidence"]) == 1
    assert "MIIT Order 24 Art. 13(3)" in d["articles"]
    assert d["status"] == "open"


def test_each_alert_fires_once_per_window() -> None:
    """Repeated violations in one window give one alert, a new window another."""
    t = WED_10_LOCAL
    evs = [wire(t + timedelta(minutes=m), data_categories=["health"]) for m in range(0, 120, 10)]
    assert fired(evs) == ["sensitive_without_consent", "sensitive_without_consent"]


# ---------------------------------------------------------------- wild clocks: ingestion time bounds event time


def _live(events: list[dict[str, Any]], forged_after: int, forged: dict[str, Any]) -> list[str]:
    """Feed as the consumer does, each event with its ingestion time (its own time: a live run),
    with ``forged`` (ingested at the time of the event before it) inserted after ``forged_after``."""
    eng = Engine(load_rules())
    out: list[str] = []
    for i, ev in enumerate(events):
        at = datetime.fromisoformat(ev["occurred_at"]).timestamp()
        out += [a.rule for a in eng.feed(ev, at)]
        if i == forged_after:
            out += [a.rule for a in eng.feed(forged, at)]
    return out


@pytest.mark.parametrize(
    ("rule", "make"),
    [
        pytest.param(
            "enumeration",
            lambda t: [wire(d, subject_refs=[ref(i)]) for i, d in enumerate(spaced(t, 600, 5))],
            id="enumeration",
        ),
        pytest.param(
            "denied_burst", lambda t: [wire(d, outcome="denied") for d in spaced(t, 25, 10)], id="denied_burst"
        ),
        pytest.param(
            "volume_anomaly",
            lambda t: [wire(d, subject_refs=[]) for d in spaced(t, 2000, 1.5)],
            id="volume_anomaly",
        ),
    ],
)
def test_a_forged_far_future_event_does_not_stall_anyone_elses_windows(rule: str, make: Any) -> None:
    """A year-9999 event from another actor neither makes the others' events late nor evicts their windows."""
    events = make(WED_10_LOCAL)
    forged = wire(datetime(9999, 12, 31, 15, tzinfo=UTC), actor=staff(99), subject_refs=[ref("x")])
    assert rule in fired(events)  # the window rule fires without the forged event
    assert rule in _live(events, 3, forged)


def test_a_far_future_event_is_judged_at_its_ingestion_time() -> None:
    """The forged event itself is still judged (at its ingestion time) and counted as wild."""
    eng = Engine(load_rules())
    at = WED_10_LOCAL.timestamp()
    forged = wire(datetime(9999, 1, 1, tzinfo=UTC), action="export", destination={"kind": "file"},
                  subject_refs=[], record_count=5000)  # fmt: skip
    alerts = eng.feed(forged, at)
    assert [a.rule for a in alerts] == ["bulk_export"]
    assert alerts[0].window_start.startswith("2026-11-18T02:00")
    assert eng.stats.wild == 1 and eng.max_ts <= at


def test_a_clock_a_little_ahead_advances_the_watermark_only_to_ingestion_time() -> None:
    """A producer 9 minutes ahead (within the skew) does not make others' events late."""
    eng = Engine(dataclasses.replace(load_rules(), lateness_s=60))
    at = WED_10_LOCAL.timestamp()
    eng.feed(wire(WED_10_LOCAL + timedelta(minutes=9), actor=staff(2)), at)
    eng.feed(wire(WED_10_LOCAL, actor=staff(3)), at)
    assert eng.stats.late == 0 and eng.stats.wild == 0


def test_a_checkpoint_poisoned_by_a_far_future_watermark_is_brought_back() -> None:
    """A checkpoint whose watermark a forged record pushed to year 9999 no longer makes every event late."""
    old = Engine(load_rules())
    old.feed(wire(datetime(9999, 6, 1, tzinfo=UTC), actor=staff(99)))  # no ingestion time: as before
    at = WED_10_LOCAL.timestamp()
    eng = Engine.from_state(load_rules(), old.state(), now=at)
    events = [wire(d, subject_refs=[ref(i)]) for i, d in enumerate(spaced(WED_10_LOCAL, 600, 5))]
    rules_fired = [a.rule for e in events for a in eng.feed(e, datetime.fromisoformat(e["occurred_at"]).timestamp())]
    assert "enumeration" in rules_fired and eng.stats.late == 0
