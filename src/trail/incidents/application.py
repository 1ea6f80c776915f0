"""The incident application: commands, grading, clocks and views over stored incidents.

:class:`IncidentService` is what the CLI, the HTTP API, the incident trigger, drills and the
demo call. Each command loads the incident, asks the aggregate to act (which refuses without
recording anything when a rule says no), lets the playbook decide the consequences (grade,
steps, obligations and their deadlines) and saves every resulting event in one transaction.
Two responders changing one incident at once: the second save finds the version taken and
raises :class:`Conflict` naming what changed; the first change is kept, the second is not
applied, and a retry re-reads and applies it on top.

Persistence is ``eventsourcing``'s: SQLite in the data directory by default, PostgreSQL when
``TRAIL_INCIDENT_STORE=postgresql://...`` (one schema per installation, created on first use).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError

from trail.config import Settings
from trail.errors import ConfigError, Refused, TrailError
from trail.errors import Conflict as Conflict
from trail.errors import NotFound as NotFound
from trail.files import private_file
from trail.incidents import evidence as evidence_mod
from trail.incidents.domain import Incident, incident_ref
from trail.incidents.grading import clock_state, compute_grade, deadline, human_left
from trail.incidents.playbook import LEVELS, Playbook, at_least, level_rank, load_playbook
from trail.logging import get_logger
from trail.messages import Message, from_dict
from trail.storage.store import Store

log = get_logger(__name__)

#: Namespace of incident ids derived from alert correlation (one incident per group).
INCIDENT_NAMESPACE = uuid.UUID("3c1f7a2e-5b8d-4e61-9f0a-7d2c4b9e1a55")
#: Alerts about the same actor within this many hours belong to one incident.
CORRELATION_HOURS = 24.0
SYSTEM_ACTOR = "trail-trigger"


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, what: str = "time") -> datetime:
    """An RFC 3339 / ISO 8601 time; naive times are UTC."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise TrailError(f"{what}: not a time; use RFC 3339 like 2026-11-22T08:30:00+08:00") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- persistence
def persistence_env(store_url: str | None, sqlite_path: str) -> dict[str, str]:
    """eventsourcing's environment for an incident-store URL (None: SQLite at ``sqlite_path``)."""
    if not store_url or store_url.startswith("sqlite://"):
        path = unquote(urlparse(store_url).path) if store_url else sqlite_path
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path, "SQLITE_LOCK_TIMEOUT": "10"}
    u = urlparse(store_url)
    query = parse_qs(u.query)
    schema = query.get("schema", ["trail"])[0]
    if not schema.replace("_", "").isalnum():
        raise ConfigError("TRAIL_INCIDENT_STORE: ?schema= takes letters, digits and '_' only")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": (u.path or "/postgres").lstrip("/") or "postgres",
        "POSTGRES_HOST": u.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(u.port or 5432),
        "POSTGRES_USER": unquote(u.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(u.password or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_CONNECT_TIMEOUT": "5",
    }


def _ensure_schema(env: Mapping[str, str]) -> None:
    if env["PERSISTENCE_MODULE"] != "eventsourcing.postgres":
        return
    import psycopg

    try:
        with psycopg.connect(
            dbname=env["POSTGRES_DBNAME"],
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"] or None,
            connect_timeout=5,
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{env["POSTGRES_SCHEMA"]}"')
    except psycopg.Error as exc:
        raise ConfigError(
            f"TRAIL_INCIDENT_STORE: cannot reach PostgreSQL at {env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}/"
            f"{env['POSTGRES_DBNAME']} ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
        ) from None


class IncidentApp(Application[uuid.UUID]):
    """eventsourcing's application holding :class:`Incident` aggregates."""

    name = "incidents"


# --------------------------------------------------------------------------- service
class IncidentService:
    """Commands and views over incidents, decided with one playbook."""

    def __init__(
        self,
        playbook: Playbook,
        *,
        store_url: str | None = None,
        sqlite_path: str = "incidents.db",
        store: Store | None = None,
        clock: Callable[[], datetime] | None = None,
        timezone: str = "Asia/Shanghai",
    ) -> None:
        self.playbook = playbook
        self.env = persistence_env(store_url, sqlite_path)
        db = self.env.get("SQLITE_DBNAME", ":memory:")
        if db != ":memory:" and "mode=memory" not in db:
            private_file(db)
        _ensure_schema(self.env)
        try:
            self.app = IncidentApp(env=self.env)
        except Exception as exc:  # noqa: BLE001 - persistence errors of either backend
            raise ConfigError(f"cannot open the incident store: {str(exc).splitlines()[0]}") from None
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.timezone = timezone
        self._lock = threading.RLock()

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store | None = None, *, playbook: Playbook | None = None
    ) -> IncidentService:
        """The service of ``settings``: their playbook (unless one is given), incident store and time zone."""
        return cls(
            playbook or load_playbook(settings.playbook),
            store_url=settings.incident_store,
            sqlite_path=str(settings.incident_store_path),
            store=store,
            timezone=settings.timezone,
        )

    def shutdown(self) -> None:
        """Release the incident store's connections."""
        self.app.close()

    @property
    def backend(self) -> str:
        return "postgresql" if self.env["PERSISTENCE_MODULE"].endswith("postgres") else "sqlite"

    # ------------------------------------------------------------------ loading and saving
    def ids(self) -> list[uuid.UUID]:
        """Every incident id, oldest first (from the application's notification log)."""
        out: list[uuid.UUID] = []
        start = 1
        while True:
            batch = self.app.recorder.select_notifications(start=start, limit=1000, topics=[_OPENED_TOPIC])
            out.extend(n.originator_id for n in batch)  # type: ignore[misc]
            if len(batch) < 1000:
                return out
            start = batch[-1].id + 1

    def resolve_id(self, ref: str) -> uuid.UUID:
        """Accept a full id, an ``INC-XXXXXXXX`` reference or a unique id prefix."""
        text = ref.strip()
        try:
            return uuid.UUID(text)
        except ValueError:
            pass
        key = text.upper().removeprefix("INC-").replace("-", "")
        if len(key) < 4 or not all(c in "0123456789ABCDEF" for c in key):
            raise NotFound(f"{ref!r} is not an incident reference (INC-1A2B3C4D) or id")
        matches = [i for i in self.ids() if i.hex.upper().startswith(key)]
        if not matches:
            raise NotFound(f"no incident {ref}: see `trail incidents list`")
        if len(matches) > 1:
            raise NotFound(f"{ref} matches {len(matches)} incidents; give more of the id")
        return matches[0]

    def get(self, ref: str | uuid.UUID) -> Incident:
        iid = ref if isinstance(ref, uuid.UUID) else self.resolve_id(ref)
        try:
            agg: Any = self.app.repository.get(iid)
        except Exception:  # noqa: BLE001 - AggregateNotFoundError and friends
            raise NotFound(f"no incident {ref}: see `trail incidents list`") from None
        assert isinstance(agg, Incident)
        return agg

    def _save(self, inc: Incident) -> None:
        if not inc.pending_events:
            return
        base = inc.pending_events[0].originator_version - 1
        try:
            self.app.save(inc)
        except IntegrityError:
            latest = self.get(inc.id)
            events = list(self.app.repository.event_store.get(inc.id, gt=base))
            last = events[-1] if events else None
            who = getattr(last, "by", "?") if last else "?"
            what = type(last).__name__ if last else "a change"
            inc.collect_events()  # drop what was not saved
            raise Conflict(
                f"{latest.ref} was changed by {who} ({what}, now version {latest.version}) while you worked on it; "
                "nothing of yours was saved — look at it again and retry"
            ) from None

    def _command(self, ref: str | uuid.UUID, fn: Callable[[Incident], Any], *, expected_version: int | None) -> Any:
        with self._lock:
            inc = self.get(ref)
            if expected_version is not None and inc.version != expected_version:
                raise Conflict(
                    f"{inc.ref} is at version {inc.version}, not {expected_version}: it changed since you read it; "
                    "look at it again and retry"
                )
            result = fn(inc)
            self._save(inc)
            return result

    def now(self) -> str:
        return rfc3339(self.clock())

    # ------------------------------------------------------------------ opening
    def open(
        self,
        *,
        title: str,
        by: str,
        description: str = "",
        discovered_at: datetime | None = None,
        source: str = "manual",
        drill: bool = False,
        incident_id: uuid.UUID | None = None,
        correlation: Mapping[str, str] | None = None,
        facts: Mapping[str, tuple[Any, str]] | None = None,
    ) -> Incident:
        if not by or not by.strip():
            raise Refused("every change names the responder: give --by (a staff id or role)")
        if not title or not title.strip():
            raise Refused("an incident needs a title: give --title")
        now = self.clock()
        discovered = discovered_at or now
        if discovered > now + timedelta(minutes=5):
            raise Refused("discovered_at is in the future; give the time the incident was discovered")
        with self._lock:
            inc = Incident(
                id=incident_id or uuid.uuid4(),
                title=title.strip(),
                description=description,
                discovered_at=rfc3339(discovered),
                at=rfc3339(now),
                by=by,
                source=source,
                drill=drill,
                playbook={"name": self.playbook.name, "version": self.playbook.version, "digest": self.playbook.digest},
                correlation=dict(correlation or {}),
            )
            for name, (value, src) in (facts or {}).items():
                inc.record_fact(name, value, source=src, by=by, at=rfc3339(now))
            self._regrade(inc, by=by)
            try:
                self.app.save(inc)
            except IntegrityError:
                raise Conflict(f"incident {incident_ref(inc.id)} already exists") from None
            log.info("incident.opened", incident=inc.ref, source=source, grade=inc.grade and inc.grade["level"])
            return inc

    def open_from_alerts(
        self, alerts: Sequence[Mapping[str, Any]], *, by: str = SYSTEM_ACTOR
    ) -> tuple[Incident, list[str], bool]:
        """Open the incident of a correlated group of alerts, or attach them to it.

        Returns ``(incident, newly attached alert ids, created)``. Idempotent: the incident id
        is derived from the group's first alert, and alerts already attached are skipped.
        """
        if not alerts:
            raise Refused("no alerts given")
        with self._lock:
            alerts = sorted(alerts, key=lambda a: (str(a["window_start"]), str(a["alert_id"])))
            existing = self.find_for_alert(alerts[0])
            if existing is not None:
                inc = existing
                created = False
            else:
                first = alerts[0]
                iid = uuid.uuid5(INCIDENT_NAMESPACE, f"alerts|{first['alert_id']}")
                try:
                    inc = self.get(iid)
                    created = False
                except NotFound:
                    discovered = _alert_time(first)
                    inc = Incident(
                        id=iid,
                        title=_title_for(first),
                        description=str(first.get("summary", "")),
                        discovered_at=rfc3339(discovered),
                        at=self.now(),
                        by=by,
                        source="alerts",
                        drill=False,
                        playbook={
                            "name": self.playbook.name,
                            "version": self.playbook.version,
                            "digest": self.playbook.digest,
                        },
                        correlation={"actor": str(first.get("actor", "")), "first_alert": str(first["alert_id"])},
                    )
                    created = True
            attached = inc.attach_alerts([_alert_summary(a) for a in alerts], by=by, at=self.now())
            if not attached and not created:
                return inc, [], False  # a redelivered alert: nothing new (also after close)
            if attached and self.store is not None and inc.status != "closed":
                self._refresh_evidence(inc, by=by)
            self._regrade(inc, by=by)
            try:
                self._save(inc)
            except Conflict:
                if created:  # another trigger opened it first: attach on top of theirs
                    return self.open_from_alerts(alerts, by=by)
                raise
            if created:
                log.info("incident.opened", incident=inc.ref, source="alerts", alerts=len(attached))
            elif attached:
                log.info("incident.alerts_attached", incident=inc.ref, alerts=len(attached))
            return inc, attached, created

    def find_for_alert(self, alert: Mapping[str, Any]) -> Incident | None:
        """The open incident an alert correlates with: same actor, within CORRELATION_HOURS."""
        actor = str(alert.get("actor", ""))
        when = _window_time(alert)
        for iid in reversed(self.ids()):
            inc = self.get(iid)
            if inc.source != "alerts" or inc.status == "closed" or inc.drill:
                continue
            if any(a["alert_id"] == alert["alert_id"] for a in inc.alerts):
                return inc
            if actor and inc.correlation.get("actor") == actor:
                latest = max(parse_time(a["window_start"]) for a in inc.alerts) if inc.alerts else None
                if latest is None or abs((when - latest).total_seconds()) <= CORRELATION_HOURS * 3600:
                    return inc
        return None

    # ------------------------------------------------------------------ evidence
    def refresh_evidence(self, ref: str | uuid.UUID, *, by: str) -> Incident:
        def act(inc: Incident) -> Incident:
            if self.store is None:
                raise Refused("the store is not available here: run this where the trail's store is reachable")
            if not inc.alerts:
                raise Refused(f"{inc.ref} has no alerts: its scope comes from alerts; record facts by hand instead")
            self._refresh_evidence(inc, by=by)
            self._regrade(inc, by=by)
            return inc

        result: Incident = self._command(ref, act, expected_version=None)
        return result

    def _refresh_evidence(self, inc: Incident, *, by: str) -> None:
        assert self.store is not None
        scope = evidence_mod.scope_of(inc.alerts)
        ev = evidence_mod.compute(self.store, scope, now=self.clock())
        if inc.evidence and inc.evidence.get("digest") == ev["digest"]:
            return
        at = self.now()
        inc.freeze_evidence(ev, by=by, at=at)
        source = f"trail evidence {ev['digest'][:12]} ({ev['events']} events)"
        for name in ("people_affected", "sensitive_people"):
            current = inc.facts.get(name)
            # A responder's own figure (another source) is not overwritten by the evidence.
            if current is None or current["source"].startswith("trail evidence"):
                inc.record_fact(name, ev[name], source=source, by=by, at=at)
        for name in ("categories", "sensitive_categories", "actors", "systems"):
            current = inc.facts.get(name)
            if current is None or current["source"].startswith("trail evidence"):
                inc.record_fact(name, ev[name], source=source, by=by, at=at)

    # ------------------------------------------------------------------ grade, steps, obligations
    def _regrade(self, inc: Incident, *, by: str, override: str | None = None, reason: str | None = None) -> None:
        facts = {k: v["value"] for k, v in inc.facts.items()}
        result = compute_grade(facts, self.playbook)
        level = result.level
        current = inc.grade
        if override is not None:
            level = override
        elif current is not None and current["overridden"]:
            # An override stands until the computed grade becomes more severe than both the
            # override and the grade computed when it was made.
            floor = min(level_rank(current["level"]), level_rank(current["computed_level"]))
            if level_rank(result.level) >= floor:
                level = current["level"]
                reason = current["override_reason"]
            else:
                reason = None
        inc.set_grade(
            level=level,
            computed_level=result.level,
            reasons=result.reasons,
            reasons_zh=result.reasons_zh,
            unknown=result.unknown,
            by=by,
            at=self.now(),
            override_reason=reason,
        )
        self._plan(inc, by=by)

    def _plan(self, inc: Incident, *, by: str) -> None:
        if inc.grade is None or inc.status == "closed":
            return
        level = inc.grade["level"]
        at = self.now()
        discovered = parse_time(inc.discovered_at)
        inc.plan_steps(
            [
                {
                    "id": s.id,
                    "title_zh": s.title_zh,
                    "title_en": s.title_en,
                    "role": s.role,
                    "due_at": rfc3339(discovered + timedelta(hours=s.due_hours)),
                }
                for s in self.playbook.steps_for(level)
            ],
            by=by,
            at=at,
        )
        facts = {k: v["value"] for k, v in inc.facts.items()}
        applicable = self.playbook.obligations_for(level, facts)
        ended = parse_time(inc.handling_ended_at) if inc.handling_ended_at else None
        inc.open_obligations(
            [
                {
                    "id": o.id,
                    "kind": o.kind,
                    "jurisdiction": o.jurisdiction,
                    "recipient_zh": o.recipient_zh,
                    "recipient_en": o.recipient_en,
                    "basis": o.basis,
                    "clock_from": o.clock_from,
                    "hours": o.hours,
                    "template": o.template,
                    "status_note": o.status_note,
                    "due_at": _opt_time(deadline(o, discovered_at=discovered, handling_ended_at=ended)),
                    "opened_at_grade": level,
                }
                for o in applicable
            ],
            by=by,
            at=at,
        )
        # Deadlines whose clock started since (handling ended) are set now.
        deadlines: dict[str, str | None] = {}
        for oid, ob in inc.obligations.items():
            spec = self.playbook.obligation(oid)
            if spec is not None and ob["status"] == "open":
                deadlines[oid] = _opt_time(deadline(spec, discovered_at=discovered, handling_ended_at=ended))
        inc.set_obligation_deadlines(deadlines, by=by, at=at)
        # Obligations waived because the grade went down apply again when it goes back up.
        still = {o.id for o in applicable}
        reopen = [oid for oid in still if inc.obligations.get(oid, {}).get("auto_waived")]
        if reopen:
            inc.reopen_obligations(reopen, by=by, at=at, reason=f"applies again at grade {level}")
            fresh: dict[str, str | None] = {}
            for oid in reopen:
                spec = self.playbook.obligation(oid)
                if spec is not None:
                    fresh[oid] = _opt_time(deadline(spec, discovered_at=discovered, handling_ended_at=ended))
            inc.set_obligation_deadlines(fresh, by=by, at=at)
        # Obligations that no longer apply (the grade went down) are waived, with the reason.
        for oid, ob in list(inc.obligations.items()):
            if ob["status"] == "open" and oid not in still:
                inc.waive_obligation(
                    oid,
                    by=by,
                    at=at,
                    reason=f"no longer applies at grade {level} ({self.playbook.grade(level).name_en})",
                    automatic=True,
                )

    # ------------------------------------------------------------------ commands
    def record_fact(
        self,
        ref: str | uuid.UUID,
        name: str,
        value: Any,
        *,
        source: str,
        by: str,
        reason: str = "",
        expected_version: int | None = None,
    ) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.record_fact(name, value, source=source, by=by, at=self.now(), reason=reason)
            self._regrade(inc, by=by)
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def set_grade(
        self,
        ref: str | uuid.UUID,
        level: str | None,
        *,
        by: str,
        reason: str | None,
        expected_version: int | None = None,
    ) -> Incident:
        """Override the grade (``level``), or return to the computed grade (``level=None``)."""
        if level is not None and level not in LEVELS:
            raise Refused(f"grade {level!r}: use one of {', '.join(LEVELS)}")

        def act(inc: Incident) -> Incident:
            if level is None:
                if inc.grade and inc.grade["overridden"]:
                    facts = {k: v["value"] for k, v in inc.facts.items()}
                    computed = compute_grade(facts, self.playbook).level
                    self._regrade(inc, by=by, override=computed, reason=reason)
            else:
                if not reason or not reason.strip():
                    raise Refused("overriding the grade needs a reason: give --reason")
                self._regrade(inc, by=by, override=level, reason=reason)
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def step(
        self,
        ref: str | uuid.UUID,
        step_id: str,
        action: str,
        *,
        by: str,
        note: str = "",
        expected_version: int | None = None,
    ) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.step(step_id, action, by=by, at=self.now(), note=note)
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def meet(
        self,
        ref: str | uuid.UUID,
        obligation_id: str,
        *,
        by: str,
        how: str,
        reference: str = "",
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Incident:
        when = at or self.clock()
        if when > self.clock() + timedelta(minutes=5):
            raise Refused("--at is in the future: give the time the obligation was met")

        def act(inc: Incident) -> Incident:
            inc.meet_obligation(obligation_id, by=by, at=rfc3339(when), how=how, reference=reference)
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def waive(
        self, ref: str | uuid.UUID, obligation_id: str, *, by: str, reason: str, expected_version: int | None = None
    ) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.waive_obligation(obligation_id, by=by, at=self.now(), reason=reason)
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def measure(self, ref: str | uuid.UUID, text: str, *, by: str, expected_version: int | None = None) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.record_measure(text, by=by, at=self.now())
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def update(self, ref: str | uuid.UUID, text: str, *, by: str, expected_version: int | None = None) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.record_update(text, by=by, at=self.now())
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def contain(
        self, ref: str | uuid.UUID, *, by: str, note: str = "", expected_version: int | None = None
    ) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.contain(by=by, at=self.now(), note=note)
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def resolve(
        self, ref: str | uuid.UUID, *, by: str, note: str = "", expected_version: int | None = None
    ) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.resolve(by=by, at=self.now(), note=note)
            self._plan(inc, by=by)  # closing-summary clocks start now
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def review(
        self,
        ref: str | uuid.UUID,
        *,
        by: str,
        cause: str,
        responsibility: str,
        countermeasures: str,
        prevention: str,
        lessons: str = "",
        expected_version: int | None = None,
    ) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.record_review(
                cause=cause,
                responsibility=responsibility,
                countermeasures=countermeasures,
                prevention=prevention,
                lessons=lessons,
                by=by,
                at=self.now(),
            )
            if "cause" not in inc.facts or inc.facts["cause"]["value"] != cause:
                inc.record_fact("cause", cause, source="post-incident review", by=by, at=self.now())
            for oid, ob in inc.obligations.items():
                if ob["kind"] == "post_incident_review" and ob["status"] == "open":
                    inc.meet_obligation(oid, by=by, at=self.now(), how="post-incident review recorded on the incident")
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def close(
        self, ref: str | uuid.UUID, *, by: str, reason: str = "", expected_version: int | None = None
    ) -> Incident:
        def act(inc: Incident) -> Incident:
            level = inc.grade["level"] if inc.grade else LEVELS[-1]
            inc.close(
                by=by,
                at=self.now(),
                reason=reason,
                review_required=at_least(level, self.playbook.review_required_from),
            )
            return inc

        result: Incident = self._command(ref, act, expected_version=expected_version)
        return result

    def issue_document(self, ref: str | uuid.UUID, kind: str, *, by: str, files: list[str], digest: str) -> Incident:
        def act(inc: Incident) -> Incident:
            inc.issue_document(kind, by=by, at=self.now(), files=files, digest=digest)
            return inc

        result: Incident = self._command(ref, act, expected_version=None)
        return result

    def apply(self, ref: str | uuid.UUID, fn: Callable[[Incident], Any], *, expected_version: int | None = None) -> Any:
        """Run ``fn`` on the loaded incident and save what it recorded (for notices and drills)."""
        return self._command(ref, fn, expected_version=expected_version)

    # ------------------------------------------------------------------ views
    def view(self, ref: str | uuid.UUID | Incident, *, now: datetime | None = None) -> dict[str, Any]:
        """The incident as plain data (the documents' ``incident`` context), clocks at ``now``."""
        inc = ref if isinstance(ref, Incident) else self.get(ref)
        at = now or self.clock()
        due_soon = self.playbook.due_soon_hours
        obligations = []
        for ob in inc.obligations.values():
            due = parse_time(ob["due_at"]) if ob.get("due_at") else None
            met = parse_time(ob["met_at"]) if ob.get("met_at") and ob["status"] == "met" else None
            state, left = clock_state(due_at=due, status=ob["status"], met_at=met, now=at, due_soon_hours=due_soon)
            obligations.append({**ob, "state": state, "seconds_left": left, "time_left": human_left(left)})
        obligations.sort(key=lambda o: (o["due_at"] is None, o["due_at"] or "", o["id"]))
        grade = None
        if inc.grade:
            level = inc.grade["level"]
            g = self.playbook.grade(level)
            grade = {
                **inc.grade,
                "name_zh": g.name_zh,
                "name_en": g.name_en,
                "colour": g.colour,
                "override_reason": inc.grade.get("override_reason"),
            }
        batches = list(inc.notices["batches"].values())
        latest = batches[-1] if batches else {}
        unknowns = [
            name
            for name in (
                "cause",
                "people_affected",
                "categories",
                "direct_loss_cny",
                "possible_harm",
                "location",
                "type",
            )
            if name not in inc.facts
        ]
        if not inc.measures:
            unknowns.append("measures")
        return {
            "id": str(inc.id),
            "ref": inc.ref,
            "version": inc.version,
            "title": inc.title,
            "title_message": _title_of(inc),
            "description_message": _description_of(inc),
            "description": inc.description,
            "status": inc.status,
            "drill": inc.drill,
            "source": inc.source,
            "playbook": dict(inc.playbook),
            "discovered_at": inc.discovered_at,
            "opened_at": inc.opened_at,
            "opened_by": inc.opened_by,
            "contained_at": inc.contained_at,
            "handling_ended_at": inc.handling_ended_at,
            "closed_at": inc.closed_at,
            "closed_by": inc.closed_by,
            "grade": grade,
            "grade_history": list(inc.grade_history),
            "facts": {k: dict(v) for k, v in inc.facts.items()},
            "evidence": inc.evidence,
            "alerts": list(inc.alerts),
            "measures": list(inc.measures),
            "updates": list(inc.updates),
            "steps": list(inc.steps.values()),
            "obligations": obligations,
            "documents": list(inc.documents),
            "reports": [
                {"kind": d["kind"], "at": d["at"], "by": d["by"], "reference": d["digest"][:12]} for d in inc.documents
            ],
            "notices": {
                "drafted": inc.notices["drafted"],
                "approved": inc.notices["approved"],
                "batches": batches,
                "sent": int(latest.get("sent", 0)),
                "failed": int(latest.get("failed", 0)),
                "pending": int(latest.get("pending", 0)),
                "in_doubt": int(latest.get("in_doubt", 0)),
            },
            "review": inc.review,
            "unknowns": unknowns,
            "flags": _flags(obligations),
        }

    def summaries(self, *, now: datetime | None = None, status: str | None = None) -> list[dict[str, Any]]:
        out = []
        for iid in self.ids():
            v = self.view(iid, now=now)
            if status and v["status"] != status:
                continue
            open_obs = [o for o in v["obligations"] if o["state"] in ("ok", "due_soon", "overdue")]
            nxt = min(open_obs, key=lambda o: o["seconds_left"]) if open_obs else None
            out.append(
                {
                    "ref": v["ref"],
                    "id": v["id"],
                    "title": v["title"],
                    "title_message": v["title_message"],
                    "status": v["status"],
                    "grade": v["grade"]["level"] if v["grade"] else "-",
                    "discovered_at": v["discovered_at"],
                    "drill": v["drill"],
                    "open_obligations": len(open_obs),
                    "overdue": sum(1 for o in open_obs if o["state"] == "overdue"),
                    "due_soon": sum(1 for o in open_obs if o["state"] == "due_soon"),
                    "next_deadline": nxt["due_at"] if nxt else None,
                    "next_obligation": nxt["id"] if nxt else None,
                    "time_left": nxt["time_left"] if nxt else "-",
                    "flags": v["flags"],
                }
            )
        return out

    def timeline(self, ref: str | uuid.UUID) -> list[dict[str, Any]]:
        """The incident's own history, one entry per recorded event (its audit trail)."""
        inc = ref if isinstance(ref, Incident) else self.get(ref)
        out = []
        for ev in self.app.repository.event_store.get(inc.id):
            data = {
                k: v for k, v in ev.__dict__.items() if k not in ("originator_id", "originator_version", "timestamp")
            }
            data.pop("originator_topic", None)
            kind = type(ev).__name__
            out.append(
                {
                    "version": ev.originator_version,
                    "recorded_at": rfc3339(ev.timestamp),  # type: ignore[attr-defined]
                    "at": data.get("at", ""),
                    "event": kind,
                    "by": data.get("by", ""),
                    "summary": _summary(kind, data),
                }
            )
        return out


_OPENED_TOPIC = f"{Incident.__module__}:Incident.Opened"


def _flags(obligations: Iterable[Mapping[str, Any]]) -> str:
    overdue = sum(1 for o in obligations if o["state"] == "overdue")
    soon = sum(1 for o in obligations if o["state"] == "due_soon")
    parts = []
    if overdue:
        parts.append(f"OVERDUE {overdue}")
    if soon:
        parts.append(f"DUE SOON {soon}")
    return ", ".join(parts)


def _opt_time(dt: datetime | None) -> str | None:
    return None if dt is None else rfc3339(dt)


def _window_time(alert: Mapping[str, Any]) -> datetime:
    """When what the alert is about happened (event time), for correlating alerts."""
    for key in ("window_start", "window_end", "detected_at"):
        value = alert.get(key)
        if value:
            return parse_time(str(value))
    return datetime.now(UTC)


def _alert_time(alert: Mapping[str, Any]) -> datetime:
    for key in ("detected_at", "window_end", "window_start"):
        value = alert.get(key)
        if value:
            return parse_time(str(value))
    return datetime.now(UTC)


def _title_of(inc: Incident) -> dict[str, Any] | None:
    """The title as a message, when it is still the one made from one of the incident's alerts."""
    if inc.source != "alerts":
        return None
    for alert in inc.alerts:
        m = _title_message(alert)
        if m.text("en") == inc.title:
            return m.as_dict()
    return None


def _description_of(inc: Incident) -> dict[str, Any] | None:
    """The description as a message, when it is still the summary of one of the incident's alerts."""
    if inc.source != "alerts":
        return None
    for alert in inc.alerts:
        m = from_dict(alert.get("message"))
        if m is not None and m.text("en") == inc.description:
            return m.as_dict()
    return None


def _title_message(alert: Mapping[str, Any]) -> Message:
    return Message("incident.title.from_alert", {"rule": alert.get("rule", "alert"), "actor": alert.get("actor", "?")})


def _title_for(alert: Mapping[str, Any]) -> str:
    return _title_message(alert).text("en")


def _alert_summary(alert: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": str(alert["alert_id"]),
        "rule": str(alert.get("rule", "")),
        "severity": str(alert.get("severity", "")),
        "actor": str(alert.get("actor", "")),
        "window_start": str(alert.get("window_start", "")),
        "window_end": str(alert.get("window_end", "")),
        "records": int(alert.get("records", 0) or 0),
        "evidence": [str(e) for e in alert.get("evidence", [])],
        "articles": [str(a) for a in alert.get("articles", [])],
        "summary": str(alert.get("summary", "")),
        "message": dict(alert.get("message") or {}),
    }


def _summary(kind: str, d: Mapping[str, Any]) -> str:
    if kind == "Opened":
        return f"opened ({d.get('source')}): {d.get('title')}; discovered {d.get('discovered_at')}"
    if kind == "AlertsAttached":
        return "alerts attached: " + ", ".join(f"{a['rule']} {a['alert_id'][:8]}" for a in d.get("alerts", []))
    if kind == "EvidenceFrozen":
        e = d.get("evidence", {})
        return (
            f"evidence frozen: {e.get('people_affected')} people ({e.get('sensitive_people')} sensitive), "
            f"{e.get('events')} events, digest {str(e.get('digest', ''))[:12]}"
        )
    if kind == "FactRecorded":
        return f"fact {d.get('name')} = {d.get('value')!r} (source: {d.get('source')})" + (
            f"; reason: {d['reason']}" if d.get("reason") else ""
        )
    if kind == "Graded":
        text = f"graded {d.get('level')}" + (f" (was {d['previous']})" if d.get("previous") else "")
        if d.get("overridden"):
            text += f" — override of computed {d.get('computed_level')}: {d.get('override_reason')}"
        else:
            text += " — " + "; ".join(d.get("reasons", []))
        return text
    if kind == "StepsPlanned":
        return "plan steps: " + ", ".join(s["id"] for s in d.get("steps", []))
    if kind == "StepChanged":
        return f"step {d.get('step_id')}: {d.get('action')}" + (f" — {d['note']}" if d.get("note") else "")
    if kind == "ObligationsOpened":
        return "obligations: " + ", ".join(
            f"{o['id']} due {o.get('due_at') or 'when handling ends'}" for o in d.get("obligations", [])
        )
    if kind == "DeadlinesSet":
        return "deadlines: " + ", ".join(f"{k} {v}" for k, v in d.get("deadlines", {}).items())
    if kind == "ObligationMet":
        return f"obligation {d.get('obligation_id')} met at {d.get('at')} — {d.get('how')}" + (
            f" (ref {d['reference']})" if d.get("reference") else ""
        )
    if kind == "ObligationsReopened":
        return f"obligations reopened: {', '.join(d.get('obligation_ids', []))} — {d.get('reason')}"
    if kind == "ObligationWaived":
        return f"obligation {d.get('obligation_id')} waived — {d.get('reason')}"
    if kind in ("MeasureRecorded", "UpdateRecorded"):
        return f"{'measure' if kind == 'MeasureRecorded' else 'development'}: {d.get('text')}"
    if kind == "DocumentIssued":
        return f"document {d.get('kind')} issued ({len(d.get('files', []))} files, digest {str(d.get('digest'))[:12]})"
    if kind == "NoticesDrafted":
        return f"notices drafted for {d.get('subjects')} subjects"
    if kind == "NoticesApproved":
        return "notices approved"
    if kind == "NoticeBatchRecorded":
        b = d.get("batch", {})
        return (
            f"notice batch {str(b.get('batch_id', ''))[:8]} {b.get('state')}: sent {b.get('sent', 0)}, "
            f"failed {b.get('failed', 0)}, in doubt {b.get('in_doubt', 0)}, pending {b.get('pending', 0)}"
        )
    if kind in ("Contained", "Resolved"):
        return kind.lower() + (f": {d['note']}" if d.get("note") else "")
    if kind == "Reviewed":
        return f"post-incident review recorded (cause: {d.get('cause')})"
    if kind == "Closed":
        return "closed" + (f": {d['reason']}" if d.get("reason") else "")
    return kind
