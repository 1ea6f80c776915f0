"""A realistic fortnight of audit events for a mid-size company, with labelled incidents.

The first week is history (what the store already holds: baselines are learned from it); the
second week is scored. Background traffic follows daily rhythms and is clean by construction
(it breaks no rule); incidents of every rule are injected in the second week, each labelled
with its rule, actor (or IP) and time span; look-alikes that must not fire are injected too.

Organisation (at ``scale=1.0``): 1,200 staff in six departments working 09:00-18:00 local on
weekdays (lunch dip, some until 20:00, a few light evenings), 150 contractors (``agent``) on a
call-centre shift 08:00-20:00, 40 services with 24/7 diurnal traffic, 300,000 subjects;
office NAT addresses shared by many staff; batch jobs: a nightly approved export, an
approved retention run, an approved partner sync (domestic), consent withdrawals followed by
erasure. Subject ids are synthetic (``SUBJ-SIM-n``), pseudonymised as the SDK would.

Events are wire events as :func:`trail.events.wire.decode` returns them (hash and producer
chain are placeholders: the detector does not check them; the sink does). They are yielded
day by day in event-time order, so a fortnight never has to sit in memory.

    from load_tests.scenario import Scenario
    sc = Scenario(seed=1)
    for ev in sc.events(): ...
    sc.incidents, sc.lookalikes   # labels (complete once events() is exhausted)
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 11, 2, tzinfo=UTC) - timedelta(hours=8)  # Monday 2026-11-02 00:00 Asia/Shanghai
LOCAL = timedelta(hours=8)
APPROVED_JOBS = ("svc-nightly-export", "svc-retention", "svc-partner-sync")

DEPARTMENTS = {
    # name: (share of staff, role, events per working hour, categories)
    "care": (0.40, "support", 20.0, ["name", "phone", "account", "address"]),
    "sales": (0.20, "sales", 8.0, ["name", "phone", "email"]),
    "analytics": (0.10, "analyst", 4.0, ["account", "device_id"]),
    "hr": (0.05, "hr", 5.0, ["name", "employment", "income"]),
    "finance": (0.10, "finance", 6.0, ["name", "account"]),
    "engineering": (0.15, "engineer", 1.5, ["device_id", "other"]),
}
RULES = (
    "bulk_export",
    "bulk_destruction",
    "volume_anomaly",
    "enumeration",
    "off_hours",
    "sensitive_without_consent",
    "after_withdrawal",
    "cross_border",
    "denied_burst",
)


@dataclass
class Label:
    rule: str  # for look-alikes: the rule it resembles
    name: str
    actor: str
    key: str  # "actor:<id>" or "ip:<address>"
    t0: float
    t1: float


@dataclass
class Actor:
    id: str
    kind: str
    role: str
    department: str
    rate: float  # events per active hour
    categories: list[str]
    ip: str
    evening: bool = False
    late: bool = False


@dataclass
class Scenario:
    seed: int = 1
    scale: float = 1.0
    days: int = 14
    history_days: int = 7
    incidents_per_rule: int = 12
    subjects: int = 300_000
    incidents: list[Label] = field(default_factory=list)
    lookalikes: list[Label] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._refs: dict[int, str] = {}
        self._seq: dict[str, int] = {}
        self.staff: list[Actor] = []
        self.agents: list[Actor] = []
        self.services: list[Actor] = []
        n_staff = int(1200 * self.scale)
        nats = [f"10.8.{i}.1" for i in range(10)]
        for dept, (share, role, rate, cats) in DEPARTMENTS.items():
            for i in range(max(2, int(n_staff * share))):
                self.staff.append(
                    Actor(
                        id=f"E-{dept[:3].upper()}-{i:05d}",
                        kind="staff",
                        role=role,
                        department=dept,
                        rate=rate * self.rng.uniform(0.7, 1.3),
                        categories=cats,
                        ip=self.rng.choice(nats),
                        evening=self.rng.random() < 0.03,
                        late=self.rng.random() < 0.10,
                    )
                )
        for i in range(max(2, int(150 * self.scale))):
            self.agents.append(
                Actor(
                    f"A-CC-{i:04d}",
                    "agent",
                    "callcentre",
                    "outsourced",
                    18.0 * self.rng.uniform(0.8, 1.2),
                    ["name", "phone", "account"],
                    "10.9.0.1",
                )
            )
        for i in range(max(4, int(40 * self.scale))):
            self.services.append(
                Actor(
                    f"svc-api-{i:03d}",
                    "service",
                    "api",
                    "platform",
                    self.rng.uniform(40, 250),
                    ["name", "account", "device_id"],
                    f"10.1.0.{i % 250}",
                )
            )
        self.busy = next(a for a in self.staff if a.department == "care")
        self.busy.id = "E-CARE-BUSY"
        # Subjects 0..N-20k: everyday traffic; the last 20k: consent withdrawals (never touched after).
        self.pool = self.subjects - 20_000
        self._withdraw_next = self.pool
        self._used_actors: set[str] = set()

    # ------------------------------------------------------------------ building blocks
    def ref(self, i: int) -> str:
        r = self._refs.get(i)
        if r is None:
            r = self._refs[i] = hashlib.sha256(f"SUBJ-SIM-{i}".encode()).hexdigest()
        return r

    def ev(
        self, ts: float, actor: Actor, action: str = "view", *, refs: list[str] | None = None, **over: Any
    ) -> dict[str, Any]:
        dt = datetime.fromtimestamp(ts, UTC)
        pid = f"gen-{actor.department}"
        seq = self._seq.get(pid, 0) + 1
        self._seq[pid] = seq
        refs = refs if refs is not None else [self.ref(self.rng.randrange(self.pool))]
        e: dict[str, Any] = {
            "schema": "trail.audit/v1",
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "occurred_at": dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": {"kind": actor.kind, "id": actor.id, "role": actor.role, "department": actor.department},
            "action": action,
            "subject_refs": refs,
            "record_count": len(refs),
            "data_categories": list(actor.categories[:2]),
            "purpose": "service delivery",
            "legal_basis": "contract",
            "source": {"service": pid, "host": "sim", "environment": "bench"},
            "location": {"ip": actor.ip, "region": "CN-GD"},
            "target": {"system": "crm"},
            "outcome": "success",
            "attributes": {},
            "producer": {"id": pid, "seq": seq, "prev": ""},
            "hash": "0" * 64,
        }
        e.update(over)
        if "record_count" not in over:
            e["record_count"] = len(e["subject_refs"])
        return e

    def day_start(self, d: int) -> float:
        return (START + timedelta(days=d)).timestamp()

    def weekday(self, d: int) -> int:
        return (START + LOCAL + timedelta(days=d)).weekday()

    def at(self, d: int, hour: float) -> float:
        return self.day_start(d) + hour * 3600

    def pick(self, group: list[Actor], *, fresh: bool = True) -> Actor:
        for _ in range(1000):
            a = self.rng.choice(group)
            if not fresh or (a.id not in self._used_actors and a is not self.busy):
                self._used_actors.add(a.id)
                return a
        raise RuntimeError("ran out of fresh actors; lower incidents_per_rule or raise scale")

    # ------------------------------------------------------------------ background
    def _staff_day(self, a: Actor, d: int, out: list[dict[str, Any]]) -> None:
        wd = self.weekday(d)
        if wd >= 5:
            return
        factor = self.rng.uniform(0.8, 1.2)
        if wd == 0 and a.department == "care":
            factor *= 2.5 if a is self.busy else 1.3  # the busy Monday (look-alike of volume_anomaly)
        end = 20 if a.late and self.rng.random() < 0.3 else 18
        for h in range(9, end):
            lam = a.rate * factor * (0.5 if h == 12 else 1.0)
            n = _poisson(self.rng, lam)
            base = self.at(d, h)
            for _ in range(n):
                out.append(self._routine(a, base + self.rng.random() * 3600))
        if a.evening and self.rng.random() < 0.5:  # light evening work, nothing sensitive
            for _ in range(self.rng.randint(1, 5)):
                out.append(self.ev(self.at(d, 20 + self.rng.random()), a, "view", data_categories=["name"]))

    def _routine(self, a: Actor, ts: float) -> dict[str, Any]:
        r = self.rng.random()
        action = "view" if r < 0.6 else "query" if r < 0.8 else "use" if r < 0.9 else "modify"
        refs = [self.ref(self.rng.randrange(self.pool)) for _ in range(self.rng.randint(1, 3))]
        over: dict[str, Any] = {}
        if a.department == "finance" and self.rng.random() < 0.3:
            over = {"data_categories": ["financial"], "legal_basis": "consent", "consent_ref": "C-SIM-FIN"}
        elif a.department == "hr" and self.rng.random() < 0.3:
            over = {"data_categories": ["id_number", "employment"], "legal_basis": "law"}
        if self.rng.random() < 0.003:
            over["outcome"] = "denied"
        return self.ev(ts, a, action, refs=refs, **over)

    def _agent_day(self, a: Actor, d: int, out: list[dict[str, Any]]) -> None:
        if self.weekday(d) >= 5:
            return
        for h in range(8, 20):
            for _ in range(_poisson(self.rng, a.rate)):
                out.append(self._routine(a, self.at(d, h + self.rng.random())))

    def _service_day(self, a: Actor, d: int, out: list[dict[str, Any]]) -> None:
        weekend = self.weekday(d) >= 5
        for h in range(24):
            diurnal = 0.25 + 0.75 * max(0.0, 1 - abs(h - 14) / 9)
            lam = a.rate * diurnal * (0.6 if weekend else 1.0)
            for _ in range(_poisson(self.rng, lam)):
                r = self.rng.random()
                action = "collect" if r < 0.3 else "use" if r < 0.8 else "view"
                over: dict[str, Any] = {}
                if self.rng.random() < 0.05:
                    over = {"data_categories": ["location"], "legal_basis": "consent", "consent_ref": "C-SIM-LOC"}
                out.append(self.ev(self.at(d, h + self.rng.random()), a, action, **over))

    def _jobs_day(self, d: int, out: list[dict[str, Any]]) -> None:
        job = Actor("svc-nightly-export", "service", "batch", "platform", 0, ["name", "phone"], "10.1.1.1")
        for k in range(2):  # the nightly approved export (look-alike of bulk_export)
            out.append(
                self.ev(
                    self.at(d, 2 + k * 0.3),
                    job,
                    "export",
                    refs=[],
                    record_count=self.rng.randint(20_000, 50_000),
                    destination={"kind": "file", "name": "warehouse"},
                )
            )
        ret = Actor("svc-retention", "service", "batch", "platform", 0, ["name"], "10.1.1.2")
        out.append(self.ev(self.at(d, 3), ret, "destroy", refs=[], record_count=self.rng.randint(5_000, 30_000)))
        sync = Actor("svc-partner-sync", "service", "batch", "platform", 0, ["name", "phone"], "10.1.1.3")
        for h in range(0, 24, 2):
            out.append(
                self.ev(
                    self.at(d, h + self.rng.random()),
                    sync,
                    "provide",
                    refs=[],
                    record_count=self.rng.randint(200, 900),
                    destination={"kind": "third_party", "name": "partner", "region": "CN-SH"},
                )
            )
        # Consent withdrawals, each followed by erasure within hours (allowed after withdrawal).
        priv = Actor("svc-privacy", "service", "privacy", "platform", 0, ["name"], "10.1.1.4")
        for _ in range(int(150 * self.scale)):
            i = self._withdraw_next
            self._withdraw_next += 1
            t = self.at(d, self.rng.uniform(0, 20))
            subj = Actor(f"S-SIM-{i}", "subject", "subject", "customers", 0, ["name"], "100.64.0.1")
            out.append(
                self.ev(t, subj, "consent_withdraw", refs=[self.ref(i)], legal_basis="consent", consent_ref=f"C-{i}")
            )
            out.append(self.ev(t + self.rng.uniform(600, 3 * 3600), priv, "delete", refs=[self.ref(i)]))

    def _lookalikes_day(self, d: int, out: list[dict[str, Any]]) -> None:
        if self.weekday(d) >= 5:
            return
        # A sales person exports 4,500 records over the day (below 5,000).
        a = self.pick([s for s in self.staff if s.department == "sales"])
        for k in range(5):
            out.append(
                self.ev(self.at(d, 10 + k), a, "export", refs=[], record_count=900, destination={"kind": "file"})
            )
        self.lookalikes.append(
            Label("bulk_export", "export-4500-a-day", a.id, f"actor:{a.id}", self.at(d, 10), self.at(d, 15))
        )
        # Someone deletes 900 records (below 1,000).
        a = self.pick(self.staff)
        out.append(self.ev(self.at(d, 11), a, "delete", refs=[], record_count=900))
        self.lookalikes.append(
            Label("bulk_destruction", "delete-900", a.id, f"actor:{a.id}", self.at(d, 11), self.at(d, 11))
        )
        # A support agent touches 350 distinct subjects in an hour (a campaign), below 500.
        a = self.pick([s for s in self.staff if s.department == "care"])
        t = self.at(d, 14)
        for k in range(20):
            refs = [self.ref(self.rng.randrange(self.pool)) for _ in range(17)]
            out.append(self.ev(t + k * 150, a, "view", refs=refs))
        self.lookalikes.append(Label("enumeration", "campaign-350-subjects", a.id, f"actor:{a.id}", t, t + 3600))
        # A user mistyping a password: a few denied operations.
        a = self.pick(self.staff)
        t = self.at(d, 10.5)
        for k in range(self.rng.randint(5, 10)):
            out.append(self.ev(t + k * 30, a, "view", outcome="denied"))
        self.lookalikes.append(Label("denied_burst", "few-denied", a.id, f"actor:{a.id}", t, t + 600))
        # Evening work at 19:30 on sensitive data with consent: inside office hours.
        a = self.pick([s for s in self.staff if s.department == "finance"])
        out.append(
            self.ev(
                self.at(d, 19.5),
                a,
                "view",
                data_categories=["financial"],
                legal_basis="consent",
                consent_ref="C-SIM-FIN",
            )
        )
        self.lookalikes.append(
            Label("off_hours", "sensitive-at-19h30", a.id, f"actor:{a.id}", self.at(d, 19.5), self.at(d, 19.5))
        )
        if self.weekday(d) == 0:
            self.lookalikes.append(
                Label(
                    "volume_anomaly",
                    "busy-monday",
                    self.busy.id,
                    f"actor:{self.busy.id}",
                    self.at(d, 9),
                    self.at(d, 18),
                )
            )
            self.lookalikes.append(
                Label(
                    "bulk_export",
                    "approved-nightly-export",
                    "svc-nightly-export",
                    "actor:svc-nightly-export",
                    self.at(d, 2),
                    self.at(d, 3),
                )
            )
            self.lookalikes.append(
                Label(
                    "bulk_destruction",
                    "approved-retention",
                    "svc-retention",
                    "actor:svc-retention",
                    self.at(d, 3),
                    self.at(d, 3),
                )
            )

    # ------------------------------------------------------------------ incidents
    def _incidents(self) -> dict[int, list[dict[str, Any]]]:
        """Incident events by day (scored days only), labels recorded."""
        by_day: dict[int, list[dict[str, Any]]] = {}
        scored = [d for d in range(self.history_days, self.days)]
        weekdays = [d for d in scored if self.weekday(d) < 5]
        weekends = [d for d in scored if self.weekday(d) >= 5] or weekdays

        def add(rule: str, a: Actor | None, key: str, evs: list[dict[str, Any]], d: int) -> None:
            by_day.setdefault(d, []).extend(evs)
            ts = [datetime.fromisoformat(e["occurred_at"]).timestamp() for e in evs]
            self.incidents.append(Label(rule, rule, a.id if a else "*", key, min(ts), max(ts)))

        office = [s for s in self.staff if s.department != "engineering"]
        for _ in range(self.incidents_per_rule):
            d = self.rng.choice(weekdays)
            a = self.pick(office)
            out = [
                self.ev(
                    self.at(d, self.rng.uniform(10, 17)),
                    a,
                    "export",
                    refs=[],
                    record_count=self.rng.randint(1000, 20_000),
                    destination={"kind": self.rng.choice(["file", "media"])},
                )
            ]
            add("bulk_export", a, f"actor:{a.id}", out, d)
        for _ in range(self.incidents_per_rule):  # the daily total, in operations below 1,000
            d = self.rng.choice(weekdays)
            a = self.pick(office)
            out = [
                self.ev(
                    self.at(d, 9.5 + k),
                    a,
                    "copy",
                    refs=[],
                    record_count=self.rng.randint(760, 950),
                    destination={"kind": "media"},
                )
                for k in range(7)
            ]
            add("bulk_export", a, f"actor:{a.id}", out, d)
        for _ in range(self.incidents_per_rule):
            d = self.rng.choice(weekdays)
            a = self.pick(office)
            out = [
                self.ev(
                    self.at(d, self.rng.uniform(10, 17)),
                    a,
                    self.rng.choice(["delete", "destroy"]),
                    refs=[],
                    record_count=self.rng.randint(1000, 30_000),
                )
            ]
            add("bulk_destruction", a, f"actor:{a.id}", out, d)
        for i in range(self.incidents_per_rule):  # an hour far above the actor's own baseline
            d = self.rng.choice(weekdays)
            a = self.pick(self.services if i % 3 == 0 else office)
            h = self.rng.randint(10, 16)
            n = max(200, int(a.rate * 10))
            t = self.at(d, h)
            out = [self.ev(t + self.rng.random() * 3600, a, "view", data_categories=a.categories[:1]) for _ in range(n)]
            add("volume_anomaly", a, f"actor:{a.id}", out, d)
        for i in range(self.incidents_per_rule):  # scraping: 600-1,000 distinct subjects in 30-40 min
            d = self.rng.choice(weekdays)
            a = self.pick(self.agents if i % 2 else [s for s in self.staff if s.department == "care"])
            t = self.at(d, self.rng.uniform(9.5, 17))
            span = self.rng.uniform(1800, 2400)
            out = []
            for k in range(24):
                refs = [self.ref(self.rng.randrange(self.pool)) for _ in range(self.rng.randint(26, 40))]
                out.append(self.ev(t + span * k / 24, a, "view", refs=refs))
            add("enumeration", a, f"actor:{a.id}", out, d)
        for i in range(self.incidents_per_rule):
            if i % 2:  # sensitive data late at night
                d = self.rng.choice(weekdays)
                a = self.pick(office)
                t = self.at(d, self.rng.choice([21.5, 22.5, 23.5, 1.5, 5.5]))
                out = [
                    self.ev(
                        t + k * 60, a, "view", data_categories=["health"], legal_basis="consent", consent_ref="C-SIM-H"
                    )
                    for k in range(self.rng.randint(1, 3))
                ]
            else:  # records in bulk at the weekend
                d = self.rng.choice(weekends)
                a = self.pick(office)
                t = self.at(d, self.rng.uniform(10, 16))
                out = [
                    self.ev(t + k * 300, a, "query", refs=[], record_count=self.rng.randint(80, 400)) for k in range(2)
                ]
            add("off_hours", a, f"actor:{a.id}", out, d)
        for i in range(self.incidents_per_rule):
            d = self.rng.choice(weekdays)
            a = self.pick(office + self.services)
            t = self.at(d, self.rng.uniform(10, 17))
            cat = self.rng.choice(["health", "biometric", "religion", "criminal_record"])
            over = {"legal_basis": "contract"} if i % 2 else {"legal_basis": "consent"}
            out = [self.ev(t + k * 120, a, "use", data_categories=[cat], **over) for k in range(self.rng.randint(1, 4))]
            add("sensitive_without_consent", a, f"actor:{a.id}", out, d)
        for _ in range(self.incidents_per_rule):
            d = self.rng.choice([w for w in weekdays if w > self.history_days] or weekdays)
            i = self._withdraw_next
            self._withdraw_next += 1
            subj = Actor(f"S-SIM-{i}", "subject", "subject", "customers", 0, ["name"], "100.64.0.1")
            w = self.at(d, self.rng.uniform(-14, 9))  # withdrawn the evening or morning before
            a = self.pick(office)
            out = [
                self.ev(w, subj, "consent_withdraw", refs=[self.ref(i)], legal_basis="consent", consent_ref=f"C-{i}"),
                self.ev(self.at(d, self.rng.uniform(10, 17)), a, "view", refs=[self.ref(i)]),
            ]
            by_day.setdefault(d, []).extend(out[:1])
            add("after_withdrawal", a, f"actor:{a.id}", out[1:], d)
        for i in range(self.incidents_per_rule):
            d = self.rng.choice(weekdays)
            a = self.pick(office + self.services)
            dest = {"kind": "abroad", "name": "overseas-partner"} if i % 2 else {"kind": "third_party", "region": "SG"}
            out = [
                self.ev(
                    self.at(d, self.rng.uniform(10, 17)),
                    a,
                    self.rng.choice(["provide", "transfer"]),
                    refs=[],
                    record_count=self.rng.randint(5, 900),
                    destination=dest,
                )
            ]
            add("cross_border", a, f"actor:{a.id}", out, d)
        for i in range(self.incidents_per_rule):
            d = self.rng.choice(weekdays)
            t = self.at(d, self.rng.uniform(9.5, 17.5))
            if i % 2:  # one actor hammering
                a = self.pick(office)
                out = [
                    self.ev(t + k * self.rng.uniform(3, 10), a, "view", outcome="denied")
                    for k in range(self.rng.randint(22, 40))
                ]
                add("denied_burst", a, f"actor:{a.id}", out, d)
            else:  # credential stuffing: many actor ids from one outside address
                ip = f"203.0.113.{i}"
                out = []
                for k in range(self.rng.randint(24, 40)):
                    who = self.rng.choice(self.staff)
                    e = self.ev(t + k * 5, who, "view", outcome="denied")
                    e["location"] = {"ip": ip, "region": "CN-GD"}
                    out.append(e)
                add("denied_burst", None, f"ip:{ip}", out, d)
        return by_day

    # ------------------------------------------------------------------ the stream
    def events(self) -> Iterator[dict[str, Any]]:
        """Every event, day by day, in event-time order."""
        extra = self._incidents()
        for d in range(self.days):
            out: list[dict[str, Any]] = []
            for a in self.staff:
                self._staff_day(a, d, out)
            for a in self.agents:
                self._agent_day(a, d, out)
            for a in self.services:
                self._service_day(a, d, out)
            self._jobs_day(d, out)
            if d >= self.history_days:
                self._lookalikes_day(d, out)
            out.extend(extra.get(d, ()))
            out.sort(key=lambda e: e["occurred_at"])
            yield from out


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(rng.gauss(lam, lam**0.5) + 0.5))
    import math

    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def score(alerts: list[Any], incidents: list[Label], lookalikes: list[Label]) -> dict[str, Any]:
    """Precision and recall per rule; an alert matches an incident of its rule about the same
    actor or key whose span overlaps the alert's window (± 1 h)."""

    def overlaps(a: Any, lab: Label) -> bool:
        ws = datetime.fromisoformat(a.window_start).timestamp()
        we = datetime.fromisoformat(a.window_end).timestamp()
        return ws <= lab.t1 + 3600 and we >= lab.t0 - 3600

    def matches(a: Any, lab: Label) -> bool:
        return (
            a.rule == lab.rule
            and (a.key == lab.key or (lab.actor != "*" and a.actor == lab.actor))
            and overlaps(a, lab)
        )

    out: dict[str, Any] = {}
    by_rule_alerts: dict[str, list[Any]] = {r: [] for r in RULES}
    for a in alerts:
        by_rule_alerts.setdefault(a.rule, []).append(a)
    for rule in RULES:
        incs = [i for i in incidents if i.rule == rule]
        mine = by_rule_alerts.get(rule, [])
        tp_alerts = [a for a in mine if any(matches(a, i) for i in incs)]
        found = [i for i in incs if any(matches(a, i) for a in mine)]
        fp = [a for a in mine if a not in tp_alerts]
        out[rule] = {
            "incidents": len(incs),
            "detected": len(found),
            "alerts": len(mine),
            "false_positives": len(fp),
            "recall": round(len(found) / len(incs), 4) if incs else None,
            "precision": round(len(tp_alerts) / len(mine), 4) if mine else (1.0 if not incs else 0.0),
            "missed": [
                f"{i.actor or i.key}@{datetime.fromtimestamp(i.t0, UTC).isoformat()}" for i in incs if i not in found
            ][:10],
            "false_positive_examples": [f"{a.actor} {a.key} {a.window_start}: {a.summary}" for a in fp[:5]],
        }
    silent: dict[str, Any] = {}
    for lab in lookalikes:
        hits = [a for a in alerts if (a.key == lab.key or a.actor == lab.actor) and overlaps(a, lab)]
        entry = silent.setdefault(lab.name, {"resembles": lab.rule, "cases": 0, "fired": 0, "alerts": []})
        entry["cases"] += 1
        entry["fired"] += bool(hits)
        entry["alerts"].extend(f"{a.rule}: {a.summary}" for a in hits[:3])
    out["lookalikes"] = silent
    return out
