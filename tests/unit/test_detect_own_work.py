"""The rules judge trail's own work: an approved notice batch is the approved bulk job it is, and
raises nothing against the responders who sent it; the security team's own look-ups through the
API (the access log) stay subject to every rule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.unit.test_detect_engine import WED_10_LOCAL, fired, ref, spaced, wire
from trail.detect.rules import NOTICE_JOB


def delivery(i: int, at: Any, **over: Any) -> dict[str, Any]:
    """One delivery audit event of an approved notice batch, as trail.notices.workflow records it."""
    attrs = {"incident": "INC-0001", "notice_id": f"n-{i}", "batch": "b-1", "channel": "outbox",
             "delivery": "sent", "attempt": "1", "sent_by": "E1002", "approved_by": "E1001"}  # fmt: skip
    ev = wire(
        at,
        actor={"kind": "system", "id": NOTICE_JOB},
        action="use",
        subject_refs=[ref(i)],
        data_categories=["email"],
        legal_basis="law",
        source={"service": NOTICE_JOB, "host": "h1", "environment": "test"},
        target={"system": NOTICE_JOB, "dataset": "INC-0001"},
        attributes=attrs,
    )
    ev.update(over)
    return ev


def test_an_approved_notice_batch_raises_nothing() -> None:
    """2,000 notices in ten minutes (the demo's batch): no enumeration, no volume anomaly, nothing."""
    events = [delivery(i, d) for i, d in enumerate(spaced(WED_10_LOCAL, 2000, 0.3))]
    assert fired(events) == []


def test_the_same_work_under_a_responders_own_name_is_judged() -> None:
    """No blanket exemption of responders: 2,000 people 'used' by a staff member in ten minutes is
    enumeration, whatever the attributes claim."""
    events = [
        delivery(i, d, actor={"kind": "staff", "id": "E1002"}) for i, d in enumerate(spaced(WED_10_LOCAL, 2000, 0.3))
    ]
    assert "enumeration" in fired(events)


def test_a_system_actor_without_an_approved_batch_is_not_exempt() -> None:
    """The exemption needs the batch's marks (incident, batch, approver): without them the
    same stream counts towards the volume rule like any other actor's."""
    bare = {"incident": "INC-0001", "channel": "outbox"}
    t = WED_10_LOCAL + timedelta(days=1)
    events = [delivery(i, d, attributes=bare) for i, d in enumerate(spaced(t, 3000, 1.0))]
    assert "volume_anomaly" in fired(events)
    approved = [delivery(i, d) for i, d in enumerate(spaced(t, 3000, 1.0))]
    assert "volume_anomaly" not in fired(approved)


def test_an_analyst_looking_up_600_people_in_an_hour_is_enumeration() -> None:
    """The access log's events of an analyst's look-ups by reference (service trail-access,
    action query, one subject each) raise enumeration like anyone's."""
    events = [
        wire(
            d,
            actor={"kind": "staff", "id": "analyst-7", "role": "analyst"},
            action="query",
            subject_refs=[ref(i)],
            record_count=3,
            data_categories=["other"],
            legal_basis="law",
            source={"service": "trail-access", "host": "h1", "environment": "test"},
            target={"system": "trail", "dataset": "events", "resource": "GET /v1/events"},
            attributes={"status": "200", "method": "GET", "request_id": f"r{i}"},
        )
        for i, d in enumerate(spaced(WED_10_LOCAL, 600, 5))
    ]
    assert "enumeration" in fired(events)
