"""The detection engine: feed validated wire events, get alerts. Pure: no I/O, no wall clock.

Time is event time (``occurred_at``). The **watermark** is the largest ``occurred_at`` seen
minus the allowed lateness (``RuleSet.lateness_s``). An event older than the watermark is
*late*: the windowed rules ignore it (it is still checked by the per-event rules), which is
what makes a replay give the alerts of the live run: unless events arrive more than the
lateness out of order, no event is late in either.

Windows are tumbling and aligned in event time, so every aggregate is commutative and the set
of alerts does not depend on the order events arrive in within the lateness:

========================== ============================== ==========================================
rule                       key                            window
========================== ============================== ==========================================
bulk_export (one op)       the event                      the instant of the operation
bulk_export (total)        actor                          the local calendar day
bulk_destruction           the event                      the instant of the operation
volume_anomaly             actor                          the hour
enumeration                actor                          the hour
off_hours                  actor                          the hour
sensitive_without_consent  actor                          the hour (one alert, first event fires)
after_withdrawal           actor                          the hour (one alert, first event fires)
cross_border               actor                          the hour (one alert, first event fires)
denied_burst               actor, or IP (>= 2 actors)     ``window_s`` (default 10 min)
========================== ============================== ==========================================

Each condition is monotone in the set of events of its window (a count or a distinct count
that only grows), so an alert fires exactly when its window's events satisfy it, and its id
(``alerts.alert_id_for``) is fixed by rule, key and window start. Counts and evidence in the
alert are those at the moment it fired.

The engine keeps a set of the alert ids it emitted for open windows; the consumer keeps the
set of ids ever published, which is what prevents republishing after a restart.

State (:meth:`Engine.state`/:meth:`Engine.from_state`) is plain JSON-able data so the
consumer can checkpoint it.

**Ingestion time bounds event time.** The consumer passes each event's ingestion time (when
the broker took the record, never later than the detector's own clock). An event whose
``occurred_at`` is more than ``max_skew_s`` ahead of it (a forged record, a producer with a
wild clock) is *judged at its ingestion time*: every rule still sees it, but it cannot push the
watermark into the future, which would make everyone else's events late (a stall of the
windowed rules) and evict open windows (a skip). Other events advance the watermark by at
most their ingestion time, so a producer whose clock runs a few minutes ahead does not make
the others late either. Without an ingestion time (a replay from the store) event time alone
counts, as before.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from trail.detect.alerts import MAX_EVIDENCE, Alert, alert_id_for, rfc3339
from trail.detect.rules import ARTICLES, NOTICE_JOB, RuleSet
from trail.events.model import DEFAULT_MAX_CLOCK_SKEW_S, SENSITIVE_CATEGORIES, format_timestamp
from trail.messages import Message

HOUR: Final = 3600
DAY: Final = 86400
REF_PREFIX: Final = 16  # hex characters of a subject_ref kept in state (64 bits: collisions negligible)
STATE_VERSION: Final = 1


@dataclass
class EngineStats:
    events: int = 0
    late: int = 0
    #: Events judged at their ingestion time because their occurred_at was too far ahead of it.
    wild: int = 0
    alerts: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Time:
    """Facts about one UTC hour: its start, and local hour, day and kind of day."""

    hour_start: int
    local_hour: int
    local_day: int  # days since 1970-01-01 of the local date
    day_start: int  # local midnight, epoch seconds
    weekend: bool


class _Clock:
    """UTC hour string (``2026-11-22T10``) → :class:`_Time`, cached: one parse per hour."""

    def __init__(self, rules: RuleSet) -> None:
        self.tz = rules.tz
        self._cache: dict[str, _Time] = {}

    def hour(self, occurred_at: str) -> _Time:
        """Facts about the UTC hour of ``occurred_at`` (any string starting ``YYYY-MM-DDTHH``)."""
        prefix = occurred_at[:13]
        t = self._cache.get(prefix)
        if t is None:
            start = datetime(int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]), int(prefix[11:13]), tzinfo=UTC)
            t = self._make(start)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[prefix] = t
        return t

    def at(self, epoch_hour: int) -> _Time:
        return self.hour(datetime.fromtimestamp(epoch_hour, UTC).strftime("%Y-%m-%dT%H"))

    def _make(self, start: datetime) -> _Time:
        local = start.astimezone(self.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        local_day = (local.date() - datetime(1970, 1, 1).date()).days
        return _Time(
            hour_start=int(start.timestamp()),
            local_hour=local.hour,
            local_day=local_day,
            day_start=int(midnight.timestamp()),
            weekend=local.weekday() >= 5,
        )

    def day_is_weekend(self, local_day: int) -> bool:
        return (local_day + 3) % 7 >= 5  # 1970-01-01 was a Thursday


def _is_notice_delivery(ev: Mapping[str, Any]) -> bool:
    """A delivery of an approved notice batch, as :func:`trail.notices.workflow.send` records it."""
    attrs = ev.get("attributes")
    source = ev.get("source")
    return (
        ev["action"] == "use"
        and isinstance(source, dict)
        and source.get("service") == NOTICE_JOB
        and isinstance(attrs, dict)
        and bool(attrs.get("incident"))
        and bool(attrs.get("batch"))
        and bool(attrs.get("approved_by"))
    )


def event_time(occurred_at: str, hour_start: int) -> float:
    """Epoch seconds of a canonical ``occurred_at`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``)."""
    return hour_start + int(occurred_at[14:16]) * 60 + float(occurred_at[17:26])


def event_ts(occurred_at: str) -> float:
    """Epoch seconds of any RFC 3339 ``occurred_at`` (slower than :func:`event_time`)."""
    return datetime.fromisoformat(occurred_at).timestamp()


class _Windows:
    """Tumbling event-time windows: ``{window_start: {key: aggregate}}``, evicted by watermark."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buckets: dict[int, dict[str, list[Any]]] = {}

    def add(self, start: int, key: str, event_id: str, records: int = 0, first: Any = 0) -> list[Any]:
        """Count one event into ``[total, events, evidence]`` of ``key`` in the window at ``start``;
        ``first`` is the total a new aggregate starts from (a threshold, for volume)."""
        bucket = self.buckets.setdefault(start, {})
        agg = bucket.get(key)
        if agg is None:
            agg = bucket[key] = [first, 0, []]
        agg[0] += records
        agg[1] += 1
        if len(agg[2]) < MAX_EVIDENCE:
            agg[2].append(event_id)
        return agg

    def evict(self, watermark: float) -> None:
        for start in [s for s in self.buckets if s + self.size <= watermark]:
            del self.buckets[start]

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for start, aggs in self.buckets.items():
            out[str(start)] = {k: [list(v) if isinstance(v, set) else v for v in agg] for k, agg in aggs.items()}
        return out


class Engine:
    """Evaluates every enabled rule on each event; returns the alerts that fired."""

    def __init__(self, rules: RuleSet, *, max_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S) -> None:
        self.rules = rules
        self.max_skew_s = max_skew_s
        self._skew_second = -1
        self._skew_limit = ""
        self.clock = _Clock(rules)
        self.stats = EngineStats()
        self.max_ts = 0.0
        self.watermark = 0.0
        self._next_evict = 0.0
        self._cleaned_day = 0
        #: Local days before this one were seeded from the store: events of those days do not
        #: add to the volume history again (a fresh detector re-reading the topic).
        self.seeded_before_day = 0
        self._human = frozenset(rules.human_kinds)
        self._approved = frozenset(rules.approved_jobs)
        self._moving = frozenset(rules.bulk_export.actions)
        self._destroy = frozenset(rules.bulk_destruction.actions)
        self._withdraw_ok = frozenset(rules.after_withdrawal.allowed_actions)
        self._consent_ok = frozenset(rules.sensitive_without_consent.allowed_bases)
        self._foreign_sub = frozenset(rules.cross_border.foreign_subregions)
        # Windows: [records|count, events, evidence(, extra)]
        self.bulk_total = _Windows(DAY)  # key actor: [records, events, evidence]
        # Hopping windows: [fired, events, evidence, set(subject ref prefixes | actor ids)]
        self.enum = _Windows(rules.enumeration.window_s)
        self.offh = _Windows(HOUR)  # key actor: [records, events, evidence]
        self.denied = _Windows(rules.denied_burst.window_s)
        self.volume = _Windows(HOUR)  # key actor: [threshold, events, evidence]
        self.fired: dict[str, float] = {}  # alert id -> window end (evicted by watermark)
        self.episodes: dict[str, int] = {}  # "rule|key" -> start of the last hopping window that fired
        # volume_anomaly history: actor -> {local_day: [24 hourly event counts]}
        self.hist: dict[str, dict[int, list[int]]] = {}
        self.first_day: dict[str, int] = {}
        self.peer_of: dict[str, str] = {}  # actor -> peer group "kind|role|department"
        self.peers: dict[str, set[str]] = {}
        self._peer_thr: dict[tuple[str, int, int], float] = {}
        # after_withdrawal: subject ref prefix -> event time of the last withdrawal / grant
        self.withdrawn: dict[str, float] = {}
        self.granted: dict[str, float] = {}

    # ------------------------------------------------------------------ feeding
    def feed_many(self, events: Iterable[Mapping[str, Any]]) -> list[Alert]:
        out: list[Alert] = []
        for ev in events:
            out.extend(self.feed(ev))
        return out

    def feed(self, ev: Mapping[str, Any], ingested: float | None = None) -> list[Alert]:
        """Evaluate one validated wire event; returns the alerts it made fire (usually none).

        ``ingested``: epoch seconds the event reached the broker (see the module docstring)."""
        occurred = ev["occurred_at"]
        if ingested is not None:
            second = int(ingested)
            if second != self._skew_second:  # the latest acceptable occurred_at, once per second
                self._skew_second = second
                try:
                    self._skew_limit = format_timestamp(datetime.fromtimestamp(second + 1 + self.max_skew_s, UTC))
                except (OverflowError, ValueError, OSError):  # a skew of centuries: no bound
                    self._skew_limit = "9999-12-31T23:59:59.999999Z"
            if occurred > self._skew_limit:
                occurred = format_timestamp(datetime.fromtimestamp(ingested, UTC))
                ev = {**ev, "occurred_at": occurred}
                self.stats.wild += 1
        t = self.clock.hour(occurred)
        ts = event_time(occurred, t.hour_start)
        self.stats.events += 1
        advance = ts if ingested is None else min(ts, ingested)
        if advance > self.max_ts:
            self.max_ts = advance
            self.watermark = advance - self.rules.lateness_s
            if self.watermark >= self._next_evict:
                self._evict()
        late = ts < self.watermark
        if late:
            self.stats.late += 1
        out: list[Alert] = []
        r = self.rules
        actor = ev["actor"]
        aid = actor["id"]
        kind = actor["kind"]
        action = ev["action"]
        outcome = ev["outcome"]
        handled = outcome != "denied"
        n = ev["record_count"]
        cats = ev["data_categories"]
        human = kind in self._human

        notice_job = kind == "system" and aid == NOTICE_JOB and _is_notice_delivery(ev)
        exempt = notice_job or aid in self._approved
        export_ok = not (r.bulk_export.exempt_approved_jobs and exempt)
        if r.bulk_export.enabled and handled and action in self._moving and export_ok:
            self._bulk_export(out, ev, t, ts, aid, kind, n, late)
        if r.bulk_destruction.enabled and handled and action in self._destroy and not exempt:
            self._destruction(out, ev, ts, aid, kind, action, n)
        if r.volume_anomaly.enabled and not late and not notice_job and t.local_day >= self.seeded_before_day:
            self._volume(out, ev, t, aid, actor)
        if r.enumeration.enabled and human and handled and not late and ev["subject_refs"]:
            self._enumeration(out, ev, t, ts, aid, kind)
        if r.off_hours.enabled and human and handled:
            self._off_hours(out, ev, t, aid, kind, n, cats, late)
        if r.sensitive_without_consent.enabled and handled and not SENSITIVE_CATEGORIES.isdisjoint(cats):
            basis = ev["legal_basis"]
            if basis not in self._consent_ok or (basis == "consent" and not ev.get("consent_ref")):
                why = (
                    Message("alert.sensitive.no_consent_ref")
                    if basis == "consent"
                    else Message("alert.sensitive.basis", {"basis": basis})
                )
                self._grouped(out, "sensitive_without_consent", t, aid, kind, ev, n, why)
        if r.after_withdrawal.enabled:
            self._withdrawal(out, ev, t, ts, aid, kind, action, handled, n)
        dest = ev.get("destination")
        if r.cross_border.enabled and dest and handled and self._abroad(dest):
            self._grouped(
                out,
                "cross_border",
                t,
                aid,
                kind,
                ev,
                n,
                Message("alert.cross_border", {"action": action, "region": r.cross_border.home_region}),
            )
        if r.denied_burst.enabled and not handled and not late:
            self._denied(out, ev, ts, aid, kind)
        if out:
            self.stats.alerts += len(out)
            for a in out:
                self.stats.by_rule[a.rule] = self.stats.by_rule.get(a.rule, 0) + 1
        return out

    # ------------------------------------------------------------------ helpers
    def _alert(
        self,
        rule: str,
        key: str,
        start: float,
        end: float,
        aid: str,
        kind: str,
        count: int,
        records: int,
        evidence: list[str],
        trigger: str,
        summary: Message,
    ) -> Alert | None:
        alert_id = alert_id_for(rule, key, start)
        if alert_id in self.fired:
            return None
        self.fired[alert_id] = end
        return Alert(
            alert_id=alert_id,
            rule=rule,
            severity=self.rules.rule(rule).severity,
            actor=aid,
            actor_kind=kind,
            key=key,
            window_start=rfc3339(start),
            window_end=rfc3339(end),
            count=count,
            records=records,
            evidence=evidence[:MAX_EVIDENCE],
            articles=list(ARTICLES[rule]),
            summary=summary.text("en"),
            trigger_event_id=trigger,
            message=summary.as_dict(),
        )

    def _single(
        self,
        out: list[Alert],
        rule: str,
        key: str,
        start: float,
        end: float,
        aid: str,
        kind: str,
        ev: Mapping[str, Any],
        n: int,
        summary: Message,
    ) -> None:
        a = self._alert(rule, key, start, end, aid, kind, n, n, [ev["event_id"]], ev["event_id"], summary)
        if a is not None:
            out.append(a)

    def _grouped(
        self,
        out: list[Alert],
        rule: str,
        t: _Time,
        aid: str,
        kind: str,
        ev: Mapping[str, Any],
        n: int,
        summary: Message,
    ) -> None:
        self._single(out, rule, f"actor:{aid}", t.hour_start, t.hour_start + HOUR, aid, kind, ev, n, summary)

    def _evict(self) -> None:
        wm = self.watermark
        for w in (self.bulk_total, self.enum, self.offh, self.denied, self.volume):
            w.evict(wm)
        if self.fired:
            self.fired = {k: end for k, end in self.fired.items() if end > wm}
        if self.episodes:
            horizon = wm - 2 * max(self.enum.size, self.denied.size)
            self.episodes = {k: s for k, s in self.episodes.items() if s > horizon}
        if len(self._peer_thr) > 10_000:
            self._peer_thr.clear()
        today = self.clock.at(int(wm // HOUR * HOUR)).local_day
        if today != self._cleaned_day:
            self._cleaned_day = today
            keep_from = today - self.rules.volume_anomaly.baseline_days - 1
            for days in self.hist.values():
                for d in [d for d in days if d < keep_from]:
                    del days[d]
        self._next_evict = (wm // 60 + 1) * 60

    # ------------------------------------------------------------------ rules
    def _bulk_export(
        self, out: list[Alert], ev: Mapping[str, Any], t: _Time, ts: float, aid: str, kind: str, n: int, late: bool
    ) -> None:
        cfg = self.rules.bulk_export
        eid = ev["event_id"]
        if n >= cfg.single_records:
            self._single(
                out,
                "bulk_export",
                f"event:{eid}",
                ts,
                ts,
                aid,
                kind,
                ev,
                n,
                Message("alert.bulk_export.single", {"action": ev["action"], "records": n}),
            )
        if late or n == 0:
            return
        agg = self.bulk_total.add(t.day_start, aid, eid, n)
        # A single operation over the total is already its own alert: the total needs two.
        if agg[0] >= cfg.total_records and agg[1] >= 2:
            a = self._alert(
                "bulk_export",
                f"actor:{aid}",
                t.day_start,
                t.day_start + DAY,
                aid,
                kind,
                agg[0],
                agg[0],
                list(agg[2]),
                eid,
                Message("alert.bulk_export.daily", {"records": agg[0], "operations": agg[1]}),
            )
            if a is not None:
                out.append(a)

    def _destruction(
        self, out: list[Alert], ev: Mapping[str, Any], ts: float, aid: str, kind: str, action: str, n: int
    ) -> None:
        if n >= self.rules.bulk_destruction.records:
            eid = ev["event_id"]
            summary = Message("alert.bulk_destruction", {"action": action, "records": n})
            self._single(out, "bulk_destruction", f"event:{eid}", ts, ts, aid, kind, ev, n, summary)

    def _volume(self, out: list[Alert], ev: Mapping[str, Any], t: _Time, aid: str, actor: Mapping[str, str]) -> None:
        days = self.hist.get(aid)
        if days is None:
            days = self.hist[aid] = {}
            self.first_day[aid] = t.local_day
            self._join_peers(aid, actor)
        elif aid not in self.peer_of:
            self._join_peers(aid, actor)
        hours = days.get(t.local_day)
        if hours is None:
            hours = days[t.local_day] = [0] * 24
        hours[t.local_hour] += 1
        bucket = self.volume.buckets.get(t.hour_start)
        first = self._threshold(aid, t) if bucket is None or aid not in bucket else 0
        agg = self.volume.add(t.hour_start, aid, ev["event_id"], first=first)
        if agg[1] >= agg[0]:
            a = self._alert(
                "volume_anomaly",
                f"actor:{aid}",
                t.hour_start,
                t.hour_start + HOUR,
                aid,
                actor["kind"],
                agg[1],
                0,
                list(agg[2]),
                ev["event_id"],
                Message("alert.volume_anomaly", {"operations": agg[1], "threshold": f"{agg[0]:.0f}"}),
            )
            if a is not None:
                out.append(a)

    def _join_peers(self, aid: str, actor: Mapping[str, str]) -> None:
        group = f"{actor['kind']}|{actor.get('role', '')}|{actor.get('department', '')}"
        self.peer_of[aid] = group
        self.peers.setdefault(group, set()).add(aid)

    def _history_days(self, aid: str, day: int, weekend: bool) -> list[int]:
        cfg = self.rules.volume_anomaly
        first = self.first_day.get(aid, day)
        return [d for d in range(max(first, day - cfg.baseline_days), day) if self.clock.day_is_weekend(d) == weekend]

    def _threshold(self, aid: str, t: _Time) -> float:
        cfg = self.rules.volume_anomaly
        days = self._history_days(aid, t.local_day, t.weekend)
        if len(days) >= cfg.min_history_days:
            hist = self.hist.get(aid, {})
            counts = [hist[d][t.local_hour] if d in hist else 0 for d in days]
            return _limit(counts, cfg.min_events, cfg.factor, cfg.mad_k)
        group = self.peer_of.get(aid, "")
        key = (group, t.local_day, t.local_hour)
        thr = self._peer_thr.get(key)
        if thr is None:
            pooled: list[int] = []
            for peer in self.peers.get(group, ()):
                pdays = self._history_days(peer, t.local_day, t.weekend)
                if len(pdays) >= cfg.min_history_days:
                    ph = self.hist.get(peer, {})
                    pooled.extend(ph[d][t.local_hour] if d in ph else 0 for d in pdays)
            if len(pooled) < cfg.min_history_days * 2:
                thr = float(cfg.cold_start_min_events)
            else:
                thr = _limit(pooled, cfg.min_events, cfg.cold_start_factor, cfg.mad_k)
            self._peer_thr[key] = thr
        return thr

    def _hopping(self, win: _Windows, hops: int, ts: float, key: str, make: Any) -> list[tuple[int, list[Any]]]:
        """The aggregates of ``key`` in every hopping window holding ``ts``, oldest first.

        Windows are ``win.size`` long and start every ``win.size // hops`` seconds, so a burst
        shorter than ``(hops - 1) / hops`` of the window lies wholly inside one of them.
        """
        hop = win.size // hops
        first = int(ts // hop) * hop
        out = []
        for start in range(first - (hops - 1) * hop, first + 1, hop):
            bucket = win.buckets.setdefault(start, {})
            agg = bucket.get(key)
            if agg is None:
                agg = bucket[key] = make()
            out.append((start, agg))
        return out

    def _episode_open(self, rule: str, key: str, start: int, size: int) -> bool:
        """Whether a window of ``key`` overlapping this one already raised the finding: one
        alert per episode (a sustained burst gives one per window length). Fed in event-time
        order, the episode's alert is its earliest window's."""
        last = self.episodes.get(f"{rule}|{key}")
        return last is not None and abs(start - last) < size

    def _open_episode(self, rule: str, key: str, start: int) -> None:
        name = f"{rule}|{key}"
        self.episodes[name] = max(start, self.episodes.get(name, start))

    def _enumeration(self, out: list[Alert], ev: Mapping[str, Any], t: _Time, ts: float, aid: str, kind: str) -> None:
        cfg = self.rules.enumeration
        key = f"actor:{aid}"
        prefixes = [ref[:REF_PREFIX] for ref in ev["subject_refs"]]
        eid = ev["event_id"]
        for start, agg in self._hopping(self.enum, cfg.hops, ts, key, lambda: [0, 0, [], set()]):
            refs: set[str] = agg[3]
            refs.update(prefixes)
            agg[1] += 1
            if len(agg[2]) < MAX_EVIDENCE:
                agg[2].append(eid)
            if agg[0] or len(refs) < cfg.distinct_subjects:
                continue
            agg[0] = 1
            if self._episode_open("enumeration", key, start, cfg.window_s):
                continue
            self._open_episode("enumeration", key, start)
            a = self._alert(
                "enumeration",
                key,
                start,
                start + cfg.window_s,
                aid,
                kind,
                len(refs),
                0,
                list(agg[2]),
                eid,
                Message("alert.enumeration", {"subjects": len(refs), "minutes": cfg.window_s // 60}),
            )
            if a is not None:
                out.append(a)

    def _off_hours(
        self,
        out: list[Alert],
        ev: Mapping[str, Any],
        t: _Time,
        aid: str,
        kind: str,
        n: int,
        cats: list[str],
        late: bool,
    ) -> None:
        cfg = self.rules.off_hours
        if not t.weekend and cfg.start_hour <= t.local_hour < cfg.end_hour:
            return
        hour = {"hour": f"{t.local_hour:02d}"}
        if not SENSITIVE_CATEGORIES.isdisjoint(cats):
            sensitive = (
                Message("alert.off_hours.sensitive_weekend")
                if t.weekend
                else Message("alert.off_hours.sensitive_hour", hour)
            )
            self._grouped(out, "off_hours", t, aid, kind, ev, n, sensitive)
            return
        if late:
            return
        agg = self.offh.add(t.hour_start, aid, ev["event_id"], n)
        if agg[0] >= cfg.records:
            a = self._alert(
                "off_hours",
                f"actor:{aid}",
                t.hour_start,
                t.hour_start + HOUR,
                aid,
                kind,
                agg[1],
                agg[0],
                list(agg[2]),
                ev["event_id"],
                Message("alert.off_hours.records_weekend", {"records": agg[0]})
                if t.weekend
                else Message("alert.off_hours.records_hour", {"records": agg[0], **hour}),
            )
            if a is not None:
                out.append(a)

    def _withdrawal(
        self,
        out: list[Alert],
        ev: Mapping[str, Any],
        t: _Time,
        ts: float,
        aid: str,
        kind: str,
        action: str,
        handled: bool,
        n: int,
    ) -> None:
        refs = ev["subject_refs"]
        if not refs:
            return
        if action == "consent_withdraw" and handled:
            for ref in refs:
                p = ref[:REF_PREFIX]
                if ts > self.withdrawn.get(p, 0.0):
                    self.withdrawn[p] = ts
            return
        if action == "consent_grant" and handled:
            for ref in refs:
                p = ref[:REF_PREFIX]
                if ts > self.granted.get(p, 0.0):
                    self.granted[p] = ts
            return
        if not handled or action in self._withdraw_ok or ev["legal_basis"] == "law" or not self.withdrawn:
            return
        hits = 0
        for ref in refs:
            p = ref[:REF_PREFIX]
            w = self.withdrawn.get(p)
            if w is not None and w < ts and self.granted.get(p, 0.0) < w:
                hits += 1
        if hits:
            self._grouped(
                out,
                "after_withdrawal",
                t,
                aid,
                kind,
                ev,
                n,
                Message("alert.after_withdrawal", {"action": action, "subjects": hits}),
            )

    def _abroad(self, dest: Mapping[str, str]) -> bool:
        if dest.get("kind") == "abroad":
            return True
        region = dest.get("region")
        if not region:
            return False
        home = self.rules.cross_border.home_region
        if region.upper() in self._foreign_sub:
            return True
        up = region.upper()
        return not (up == home or up.startswith(home + "-"))

    def _denied(self, out: list[Alert], ev: Mapping[str, Any], ts: float, aid: str, kind: str) -> None:
        cfg = self.rules.denied_burst
        eid = ev["event_id"]
        keys = [f"actor:{aid}"]
        ip = (ev.get("location") or {}).get("ip")
        if ip:
            keys.append(f"ip:{ip}")
        for key in keys:
            by_ip = key.startswith("ip:")
            for start, agg in self._hopping(self.denied, cfg.hops, ts, key, lambda: [0, 0, [], {}]):
                agg[1] += 1
                per_actor: dict[str, int] = agg[3]
                per_actor[aid] = per_actor.get(aid, 0) + 1
                if len(agg[2]) < MAX_EVIDENCE:
                    agg[2].append(eid)
                if agg[0] or agg[1] < cfg.count:
                    continue
                # From one IP: only when no single actor explains the burst (its own alert does).
                if by_ip and (len(per_actor) < 2 or agg[1] - max(per_actor.values()) < cfg.count // 2):
                    continue
                agg[0] = 1
                if self._episode_open("denied_burst", key, start, cfg.window_s):
                    continue
                self._open_episode("denied_burst", key, start)
                minutes = cfg.window_s // 60
                msg = (
                    Message("alert.denied_burst.ip", {"operations": agg[1], "actors": len(agg[3]), "minutes": minutes})
                    if by_ip
                    else Message("alert.denied_burst.actor", {"operations": agg[1], "minutes": minutes})
                )
                a = self._alert(
                    "denied_burst",
                    key,
                    start,
                    start + cfg.window_s,
                    aid,
                    kind,
                    agg[1],
                    0,
                    list(agg[2]),
                    eid,
                    msg,
                )
                if a is not None:
                    out.append(a)

    # ------------------------------------------------------------------ history from the store
    def load_hourly_counts(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Seed the volume baseline with ``(actor_id, actor_kind, actor_role, actor_department,
        hour: datetime|epoch, n)`` rows (what the store already holds). Returns rows used."""
        used = 0
        for row in rows:
            hour = row["hour"]
            epoch = int(hour.replace(tzinfo=UTC).timestamp() if isinstance(hour, datetime) else hour)
            t = self.clock.at(epoch)
            aid = str(row["actor_id"])
            actor = {
                "kind": str(row["actor_kind"]),
                "role": str(row.get("actor_role") or ""),
                "department": str(row.get("actor_department") or ""),
            }
            days = self.hist.setdefault(aid, {})
            self.first_day[aid] = min(self.first_day.get(aid, t.local_day), t.local_day)
            if aid not in self.peer_of:
                self._join_peers(aid, actor)
            days.setdefault(t.local_day, [0] * 24)[t.local_hour] += int(row["n"])
            used += 1
        self._peer_thr.clear()
        return used

    def load_consent(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Seed after_withdrawal with ``(ref, withdrawn: datetime|epoch, granted: ...)`` rows."""
        used = 0
        for row in rows:
            p = str(row["ref"])[:REF_PREFIX]
            for name, target in (("withdrawn", self.withdrawn), ("granted", self.granted)):
                v = row.get(name)
                if v is None:
                    continue
                ts = v.replace(tzinfo=UTC).timestamp() if isinstance(v, datetime) else float(v)
                if ts > 0 and ts > target.get(p, 0.0):
                    target[p] = ts
            used += 1
        return used

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything the engine knows, as JSON-able data."""
        return {
            "version": STATE_VERSION,
            "max_ts": self.max_ts,
            "watermark": self.watermark,
            "windows": {
                "bulk_total": self.bulk_total.state(),
                "enum": self.enum.state(),
                "offh": self.offh.state(),
                "denied": self.denied.state(),
                "volume": self.volume.state(),
            },
            "fired": self.fired,
            "episodes": self.episodes,
            "hist": {a: {str(d): h for d, h in days.items()} for a, days in self.hist.items()},
            "first_day": self.first_day,
            "peer_of": self.peer_of,
            "withdrawn": self.withdrawn,
            "granted": self.granted,
            "seeded_before_day": self.seeded_before_day,
        }

    @classmethod
    def from_state(
        cls,
        rules: RuleSet,
        state: Mapping[str, Any],
        *,
        max_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
        now: float | None = None,
    ) -> Engine:
        """The engine a checkpoint describes. ``now`` (the restorer's clock): a watermark further
        ahead of it than ``max_skew_s`` (left by a detector before ingestion time bounded it, after
        a forged far-future record) is brought back to ``now``, or every event would stay late."""
        eng = cls(rules, max_skew_s=max_skew_s)
        if state.get("version") != STATE_VERSION:
            return eng
        eng.max_ts = float(state["max_ts"])
        eng.watermark = float(state["watermark"])
        sets = {"enum": 3}
        for name, data in state["windows"].items():
            win: _Windows = getattr(eng, name)
            for start, aggs in data.items():
                bucket = win.buckets.setdefault(int(start), {})
                for key, agg in aggs.items():
                    if name in sets:
                        agg[sets[name]] = set(agg[sets[name]])
                    bucket[key] = agg
        eng.fired = {str(k): float(v) for k, v in state["fired"].items()}
        eng.episodes = {str(k): int(v) for k, v in state.get("episodes", {}).items()}
        eng.hist = {a: {int(d): list(h) for d, h in days.items()} for a, days in state["hist"].items()}
        eng.first_day = {str(k): int(v) for k, v in state["first_day"].items()}
        for aid, group in state["peer_of"].items():
            eng.peer_of[aid] = group
            eng.peers.setdefault(group, set()).add(aid)
        eng.withdrawn = {str(k): float(v) for k, v in state["withdrawn"].items()}
        eng.granted = {str(k): float(v) for k, v in state["granted"].items()}
        eng.seeded_before_day = int(state.get("seeded_before_day", 0))
        if now is not None and eng.max_ts > now + max_skew_s:
            eng.max_ts = now
            eng.watermark = now - rules.lateness_s
        eng._next_evict = (eng.watermark // 60 + 1) * 60
        return eng


def _limit(counts: list[int], floor: int, factor: float, k: float) -> float:
    """max(floor, factor * median, median + k * 1.4826 * MAD): robust to a few busy hours."""
    med = statistics.median(counts)
    mad = statistics.median([abs(c - med) for c in counts])
    return max(float(floor), factor * med, med + k * 1.4826 * mad)


def local_day_bounds(rules: RuleSet, epoch: float) -> tuple[float, float]:
    """Start and end (epoch seconds) of the local calendar day holding ``epoch``."""
    local = datetime.fromtimestamp(epoch, rules.tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()
