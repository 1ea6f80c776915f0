"""The operations behind the command line and the HTTP API, over a store and an SDK client.

``trail up`` serves these through its API; when no stack runs, the CLI builds the same
object over the data directory (store opened in-process, events written straight to it
through the SDK, with the same validation, pseudonymisation, sequencing and hashing).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trail import metrics
from trail.config import Settings
from trail.errors import Conflict, SpoolFullError, TrailError, ValidationError
from trail.events.intake import parse_line
from trail.events.model import parse_timestamp
from trail.ingest.progress import lost_tails, read_claims
from trail.integrity.checkpoint import AppendOnlyLog
from trail.integrity.keys import checkpoint_signing_key, load_public_key
from trail.integrity.lease import VERIFY_SCHEDULE_LOCK_KEY, Lease, shared_lease
from trail.integrity.proof import apply_retention, build_proof
from trail.integrity.sealer import make_sealer
from trail.integrity.verify import FINDING_KINDS, Verifier
from trail.logging import get_logger
from trail.sdk import policy_for
from trail.sdk.client import Client
from trail.sdk.transport import CallbackTransport
from trail.storage.store import Gap, Store, open_store
from trail.storage.writer import store_writer as store_writer

log = get_logger("trail.service")

MAX_ERRORS_REPORTED = 1000
#: The source service of the access log's events: analysts' views leave them out; auditors read them.
ACCESS_LOG_SERVICE = "trail-access"
#: Rows of one page of ``GET /v1/events`` at most (the client follows ``next`` for more).
PAGE_MAX = 10_000


@dataclass
class EmitResult:
    accepted: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "rejected": self.rejected, "errors": self.errors}
        if not self.delivered:
            out["pending"] = "accepted events are spooled and will be delivered when the broker returns"
        return out


def emit_lines(
    client: Client,
    lines: Iterable[bytes | str],
    *,
    progress: Callable[[int], None] | None = None,
    flush_timeout: float = 60.0,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> EmitResult:
    """Record one event per JSON line; a bad line is reported by number and costs nothing else.
    ``check`` may refuse (ValidationError) or complete an event before it is recorded."""
    result = EmitResult()
    lines_of: dict[str, int] = {}  # event id -> line, to name a line the worker could not send
    for number, line in enumerate(lines, start=1):
        if progress is not None:
            progress(number)
        try:
            raw = parse_line(line)
        except ValidationError as exc:
            _reject(result, number, str(exc))
            continue
        if raw is None:
            continue
        try:
            if check is not None:
                check(raw)
            lines_of[client.record_event(raw)] = number
            result.accepted += 1
        except ValidationError as exc:
            _reject(result, number, str(exc))
        except SpoolFullError as exc:
            _reject(result, number, str(exc))
    result.delivered = client.flush(timeout=flush_timeout)
    for event_id, reason in list(client.refused_events):
        if event_id in lines_of:  # accepted by validation, yet not sent: not "accepted"
            result.accepted -= 1
            _reject(result, lines_of.pop(event_id), f"could not be sent ({reason}); nothing was stored")
    result.errors.sort(key=lambda e: e["line"])
    return result


def _reject(result: EmitResult, line: int, error: str) -> None:
    result.rejected += 1
    if len(result.errors) < MAX_ERRORS_REPORTED:
        result.errors.append({"line": line, "error": error})


@dataclass
class QueryFilters:
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    category: str | None = None
    limit: int = 100
    system: str | None = None
    outcome: str | None = None
    destination: str | None = None

    def narrowed(self, limit: int) -> QueryFilters:
        """The same filters with another limit."""
        return dataclasses.replace(self, limit=limit)

    @classmethod
    def parse(
        cls,
        since: str | None,
        until: str | None,
        action: str | None,
        category: str | None,
        limit: int,
        destination: str | None = None,
        *,
        prefix: str = "",
    ) -> QueryFilters:
        """Filters from text (an API query or command-line options); a bad time names its field
        as the caller spells it (``prefix``: ``"--"`` on the command line)."""
        return cls(
            since=parse_timestamp(f"{prefix}since", since) if since else None,
            until=parse_timestamp(f"{prefix}until", until) if until else None,
            action=action or None,
            category=category or None,
            limit=limit,
            destination=destination or None,
        )

    def as_params(self) -> dict[str, str]:
        out: dict[str, str] = {"limit": str(self.limit)}
        if self.since:
            out["since"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        if self.action:
            out["action"] = self.action
        if self.category:
            out["category"] = self.category
        for name in ("system", "outcome", "destination"):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out


def query(
    store: Store,
    kind: str,
    ref_or_id: str | None,
    f: QueryFilters,
    *,
    after: tuple[datetime, str] | None = None,
) -> list[dict[str, Any]]:
    """``kind`` is events, subject (by subject_ref), actor (by actor id) or access (the access
    log, by principal). The trail's own access log is left out of the first three."""
    return store.find_events(
        since=f.since,
        until=f.until,
        action=f.action,
        category=f.category,
        actor_id=ref_or_id if kind in ("actor", "access") else None,
        subject_ref=ref_or_id if kind == "subject" else None,
        limit=f.limit,
        after=after,
        service=ACCESS_LOG_SERVICE if kind == "access" else None,
        exclude_service=None if kind == "access" else ACCESS_LOG_SERVICE,
        system=f.system,
        outcome=f.outcome,
        destination=f.destination,
    )


def encode_cursor(row: dict[str, Any]) -> str:
    import base64

    raw = json.dumps([row["occurred_at"], row["event_id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    import base64
    import uuid

    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, eid = json.loads(raw)
        return parse_timestamp("cursor", str(at)), str(uuid.UUID(str(eid)))
    except (ValueError, TypeError, ValidationError):
        raise ValidationError("cursor", "not a cursor this API returned (pass the 'next' value as is)") from None


#: The columns of an event export as CSV (the API's and the console's).
CSV_COLUMNS = (
    "occurred_at", "event_id", "actor_kind", "actor_id", "action", "record_count", "subjects", "data_categories",
    "purpose", "legal_basis", "source_service", "target_system", "target_dataset", "destination_kind", "outcome",
    "producer_id", "producer_seq",
)  # fmt: skip


def csv_row(ev: dict[str, Any]) -> list[Any]:
    return [
        ev["occurred_at"], ev["event_id"], ev["actor"]["kind"], ev["actor"]["id"], ev["action"], ev["record_count"],
        len(ev["subject_refs"]), ";".join(ev["data_categories"]), ev["purpose"], ev["legal_basis"],
        ev["source"]["service"], ev["target"]["system"], ev["target"].get("dataset", ""),
        (ev.get("destination") or {}).get("kind", ""), ev["outcome"], ev["producer"]["id"], ev["producer"]["seq"],
    ]  # fmt: skip


def gaps_as_dicts(gaps: list[Gap]) -> list[dict[str, Any]]:
    return [
        {
            "producer_id": g.producer_id,
            "first_missing": g.first_missing,
            "last_missing": g.last_missing,
            "missing": g.count,
            "detail": f"seq {g.first_missing}..{g.last_missing} missing",
        }
        for g in gaps
    ]


def progress_reader(settings: Settings, bootstrap: str | None) -> Callable[[], dict[str, dict[str, Any]]] | None:
    """The producers' progress claims on ``trail.producers`` of the broker, if there is one."""
    if not bootstrap:
        return None
    from trail.config import kafka_options

    topic, options = settings.topic("producers"), kafka_options(settings)
    return lambda: read_claims(bootstrap, topic, options)


class StoreBackend:
    """The API's operations over a store and an SDK client (used by the stack and the CLI)."""

    def __init__(
        self,
        store: Store,
        client: Client,
        extra_health: Any = None,
        *,
        settings: Settings,
        seal: Any = None,
        progress: Callable[[], dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.progress = progress
        self.client = client
        self.settings = settings
        self.incidents: Any = None
        self.seal = seal
        self._extra_health = extra_health
        self._emit_lock = threading.Lock()
        self._verifying = threading.Lock()  # one verification at a time: each is a full scan
        self._verifying_since = ""

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "store": self.store.ping()}
        s = self.client.stats
        out["sdk"] = {"recorded": s.recorded, "sent": s.sent, "spooled": s.spooled, "last_error": s.last_error}
        if self._extra_health:
            out.update(self._extra_health())
        return out

    def emit(self, lines: list[bytes], check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        with self._emit_lock:
            return emit_lines(self.client, lines, check=check).as_dict()

    def query(self, kind: str, key: str | None, filters: QueryFilters) -> list[dict[str, Any]]:
        return query(self.store, kind, key, filters)

    def page(
        self, kind: str, key: str | None, filters: QueryFilters, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page (at most PAGE_MAX rows) and the cursor of the next, if there may be one."""
        size = min(filters.limit, PAGE_MAX)
        f = filters.narrowed(size)
        rows = query(self.store, kind, key, f, after=decode_cursor(cursor) if cursor else None)
        return rows, (encode_cursor(rows[-1]) if len(rows) == size else None)

    def export(
        self, kind: str, key: str | None, filters: QueryFilters, block: int = 5000
    ) -> Iterator[list[dict[str, Any]]]:
        """Every matching event (up to ``filters.limit``), in blocks read one query at a time, so
        the store is never held for the whole export."""
        left = filters.limit
        after: tuple[datetime, str] | None = None
        while left > 0:
            f = filters.narrowed(min(block, left))
            rows = query(self.store, kind, key, f, after=after)
            if not rows:
                return
            yield rows
            left -= len(rows)
            if len(rows) < f.limit:
                return
            after = decode_cursor(encode_cursor(rows[-1]))

    def subject_ref(self, subject_id: str) -> str:
        """The reference of a raw subject id, made here with the organisation's key (never by clients)."""
        from trail.sdk.pseudonymise import Pseudonymiser

        if not isinstance(subject_id, str) or not subject_id.strip() or len(subject_id) > 256:
            raise ValidationError("subject_id", "give the person's id (1-256 characters)")
        return Pseudonymiser(self.settings.require_subject_key()).ref(subject_id)

    def gaps(self, producer: str | None) -> list[dict[str, Any]]:
        """Missing ranges inside each producer's sequence, then lost tails: a producer that claimed
        (on ``trail.producers``) more than the trail holds."""
        rows = gaps_as_dicts(self.store.gaps(producer))
        if self.progress is not None:
            claims = {p: c for p, c in self.progress().items() if producer is None or p == producer}
            if claims:
                held = {str(r["producer_id"]): int(r["last_seq"]) for r in self.store.producers()}
                rows += lost_tails(claims, held)
        return rows

    def counts(self) -> dict[str, Any]:
        out = self.store.counts(exclude_service=ACCESS_LOG_SERVICE)
        access = self.store.counts().get("events", 0) - out.get("events", 0)
        out["access_log_events"] = int(access)
        return out

    def checkpoints(self, limit: int = 100) -> list[dict[str, Any]]:
        from trail.storage import integrity as sql

        if self.seal is not None:
            self.seal()
        out = []
        for record in sql.checkpoint_records(self.store)[-limit:]:
            rec = json.loads(record)
            out.append({k: rec.get(k) for k in ("seq", "created_at", "count", "root", "key_id", "hash", "prev")})
        return out

    # -- integrity --------------------------------------------------------------------
    def verify(
        self, since: int | None, strict: bool, public_key: str | None = None, *, key_text_only: bool = False
    ) -> dict[str, Any]:
        """``key_text_only`` (the API): ``public_key`` is the key's 64 hex characters, never a file name."""
        return self.begin_verify(since, strict, public_key, key_text_only=key_text_only)()

    def begin_verify(
        self, since: int | None, strict: bool, public_key: str | None = None, *, key_text_only: bool = False
    ) -> Callable[[], dict[str, Any]]:
        """Check the request and claim this process's one verification now (a bad key is a
        ValidationError, one already running a Conflict); the verification itself runs when the
        returned function is called, which must be called exactly once (it releases the claim)."""
        s = self.settings
        if public_key and key_text_only:
            text = public_key.strip()
            if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
                raise ValidationError("public_key", "the public key's 64 hex characters (not a file name)")
        public = load_public_key(public_key or s.public_key_path)
        # A verification scans the whole trail (minutes at 100 M events): a second one asked for
        # meanwhile (a retry after a proxy's timeout, a second click) would only double the load.
        if not self._verifying.acquire(blocking=False):
            raise Conflict(
                f"a verification has been running since {self._verifying_since}; wait for its result "
                "(GET /v1/verifications, or the console's integrity page) and ask again"
            )
        self._verifying_since = datetime.now(UTC).isoformat(timespec="seconds")

        def run() -> dict[str, Any]:
            try:
                started = time.monotonic()
                if self.seal is not None:
                    self.seal()  # seal what is stored so far, so the report covers it
                report = Verifier(self.store, public, AppendOnlyLog(s.checkpoint_log_path), strict=strict).run(since)
                _count_verification(report, time.monotonic() - started)
            finally:
                self._verifying.release()
            return {"summary": report.summary(), "findings": [f.as_dict() for f in report.findings]}

        return run

    def proof(self, event_id: str) -> dict[str, Any]:
        if self.seal is not None:
            self.seal()
        return build_proof(self.store, event_id)

    def retention(self, before: str, reason: str) -> dict[str, Any]:
        s = self.settings
        rec = apply_retention(
            self.store,
            checkpoint_signing_key(s),
            AppendOnlyLog(s.checkpoint_log_path),
            parse_timestamp("--before", before),
            reason,
        )
        return {"applied": rec is not None, "record": rec.record() if rec else None}


def _count_verification(report: Any, seconds: float) -> None:
    kinds = report.summary()["findings"]
    metrics.VERIFICATIONS.labels(result="intact" if report.intact else "findings").inc()
    for kind in FINDING_KINDS:
        metrics.VERIFY_FINDINGS.labels(kind=kind).set(kinds.get(kind, 0))
    metrics.VERIFY_LAST_RUN.set_to_current_time()
    metrics.VERIFY_SECONDS.set(seconds)


def direct_backend(settings: Settings, service: str = "trail-cli") -> StoreBackend:
    """Open the data directory in-process: the store, and an SDK client writing straight to it."""
    store = open_store(settings.store_dsn, settings.clickhouse_database)
    client = Client(
        service=service,
        transport=CallbackTransport(store_writer(store)),
        subject_key=settings.require_subject_key(),
        spool_dir=settings.effective_spool_dir,
        spool_max_bytes=settings.spool_max_bytes,
        environment=settings.mode,
        policy=policy_for(settings),
    )
    return StoreBackend(
        store,
        client,
        settings=settings,
        seal=_direct_sealer(settings, store),
        progress=progress_reader(settings, settings.kafka_bootstrap),
    )


def _direct_sealer(settings: Settings, store: Store) -> Any:
    """Without a running sink, direct writes are sealed by this process (if sealing is on)."""
    sealer = make_sealer(settings, store, None)
    if sealer is None:
        return None

    def seal() -> None:
        sealer.refresh_from_store()  # everything stored beyond the sealed tips
        sealer.seal()

    return seal


# --------------------------------------------------------------------------- the API's services
@dataclass
class ApiServices:
    """Everything the API serves, built once per process (``trail up`` or ``trail serve``)."""

    settings: Settings
    backend: StoreBackend
    access: Any  # trail.access.store.AccessStore
    recorder: Any  # trail.access.recorder.AccessRecorder
    retention: Any  # trail.access.retention.RetentionService
    sql: Any  # trail.access.sql.SqlRunner
    alerts: Any  # trail.detect.review.Alerts: read from the store, reviews published to trail.alerts
    incidents: Any = None  # trail.incidents.commands.LocalIncidents
    bootstrap: str | None = None  # the broker (the delivery audit events of notices the console sends)
    verifications: Verifications | None = None  # verifications as jobs (the API and the console)
    scheduled: PeriodicVerification | None = None  # TRAIL_VERIFY_EVERY

    def close(self) -> None:
        if self.scheduled is not None:
            self.scheduled.stop()
        self.recorder.client.close(timeout=10)
        self.backend.client.close(timeout=10)
        self.sql.close()
        self.access.close()


@dataclass
class VerificationJob:
    """One verification run in the background of the API's process."""

    id: str
    by: str  # the principal who asked, or "schedule"
    since: int | None
    strict: bool
    started_at: str
    status: str = "running"  # running, done (its result: intact or not), failed (it could not finish)
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "by": self.by,
            "since": self.since,
            "strict": self.strict,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.result is not None:
            out.update(self.result)
        if self.error is not None:
            out["error"] = self.error
        return out


class Verifications:
    """Verifications as jobs: started by a request that answers at once (``POST
    /v1/verifications``, the console's "Verify now", the schedule), run in a thread, their
    status and result read later by id. A full verification takes minutes at 100 M events, longer
    than a proxy or a browser waits for one answer. One runs at a time per process (the
    backend's claim); the last ``keep`` are remembered, in this process's memory."""

    def __init__(self, backend: StoreBackend, keep: int = 20) -> None:
        self.backend = backend
        self.keep = keep
        self._jobs: dict[str, VerificationJob] = {}
        self._lock = threading.Lock()

    def start(
        self, since: int | None, strict: bool, public_key: str | None = None, *, by: str, key_text_only: bool = True
    ) -> VerificationJob:
        """Start one (a ValidationError for a bad request, a Conflict naming the job that runs)."""
        with self._lock:
            running = next((j for j in self._jobs.values() if j.status == "running"), None)
            if running is not None:
                raise Conflict(
                    f"verification {running.id} has been running since {running.started_at}; "
                    f"GET /v1/verifications/{running.id} gives its result when it ends"
                )
            run = self.backend.begin_verify(since, strict, public_key, key_text_only=key_text_only)
            job = VerificationJob(
                id=uuid.uuid4().hex,
                by=by,
                since=since,
                strict=strict,
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            self._jobs[job.id] = job
            for old in list(self._jobs)[: max(0, len(self._jobs) - self.keep)]:
                if self._jobs[old].status != "running":
                    del self._jobs[old]
        threading.Thread(target=self._run, args=(job, run), name=f"trail-verify-{job.id[:8]}", daemon=True).start()
        log.info("verify.started", job=job.id, by=by, since=since)
        return job

    def _run(self, job: VerificationJob, run: Callable[[], dict[str, Any]]) -> None:
        try:
            job.result = run()
            job.status = "done"
        except TrailError as exc:  # a store outage, a missing checkpoint log: said, not hidden
            job.status, job.error = "failed", f"{type(exc).__name__}: {str(exc)[:500]}"
            log.error("verify.failed", job=job.id, error=type(exc).__name__, reason=str(exc)[:500])
        except Exception:  # a bug: the job still ends, so nobody waits for ever
            job.status, job.error = "failed", "internal error (see the API's log)"
            log.exception("verify.failed", job=job.id, internal=True)
        finally:
            job.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
            job.done.set()
        if job.result is not None:
            summary = job.result["summary"]
            if summary["intact"]:
                log.info("verify.intact", job=job.id, events=summary["events_checked"],
                         copy_rows=summary["copy_rows_checked"])  # fmt: skip
            else:
                log.error("verify.findings", job=job.id, findings=summary["findings"], events=summary["events_checked"])

    def get(self, job_id: str) -> VerificationJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[VerificationJob]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def latest(self) -> VerificationJob | None:
        jobs = self.recent()
        return jobs[0] if jobs else None


class PeriodicVerification:
    """A full verification every ``every`` seconds in a thread of the API's process
    (``TRAIL_VERIFY_EVERY``), as a job of :class:`Verifications` (``by`` "schedule", listed with
    the others): its result goes to the log (``verify.findings`` at error level) and to the
    metrics (``trail_verify_findings``, ``trail_verify_last_run_timestamp_seconds``), so a
    tampered trail is noticed without anyone asking. A scheduled run that finds another
    verification running skips its turn."""

    def __init__(self, jobs: Verifications, every: float, lease: Lease | None = None) -> None:
        self.jobs = jobs
        self.every = every
        self.lease = lease
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trail-verify", daemon=True)

    def start(self) -> PeriodicVerification:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.run_once()

    def run_once(self) -> VerificationJob | None:
        if self.lease is not None and not self.lease.acquire():
            log.info("verify.scheduled_skipped", reason=f"another process holds the schedule ({self.lease.name})")
            self.runs += 1
            return None
        try:
            job = self.jobs.start(None, False, by="schedule", key_text_only=False)
        except Conflict:
            log.info("verify.scheduled_skipped", reason="another verification is running")
            self.runs += 1
            return None
        except TrailError as exc:  # a missing key: the next turn tries again
            log.error("verify.scheduled_failed", error=type(exc).__name__, reason=str(exc)[:500])
            self.runs += 1
            return None
        while not job.done.wait(1.0):
            if self._stop.is_set():
                return job
        self.runs += 1
        if job.status == "failed":
            log.error("verify.scheduled_failed", job=job.id, reason=job.error)
        return job

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.lease is not None:
            self.lease.release()


def schedule_lease(settings: Settings) -> Lease:
    """Which API process runs ``TRAIL_VERIFY_EVERY``'s verifications: the one holding this lease
    (an advisory lock in the PostgreSQL incident store, else a lock file in the data directory).
    Held until the process ends, so replicas do not each verify the whole trail every period; when
    the holder dies, another replica takes the schedule over at its next turn."""
    return shared_lease(settings.incident_store, settings.data_dir / "verify-schedule.lock", VERIFY_SCHEDULE_LOCK_KEY)


def build_api_services(
    settings: Settings,
    store: Store,
    bootstrap: str,
    *,
    incidents: Any = None,
    seal: Any = None,
    extra_health: Any = None,
    access: Any = None,
    transport: Callable[[], Any] | None = None,
) -> ApiServices:
    """The API's services over a store and a broker: one SDK client for the events services send
    (``trail-api``), another for the access log (``trail-access``: its own producer chain)."""
    from trail.access.recorder import ACCESS_SERVICE, AccessRecorder
    from trail.access.retention import RetentionService, incident_holds
    from trail.access.sql import SqlRunner
    from trail.access.store import open_access_store
    from trail.config import kafka_options
    from trail.detect.review import SplitAlerts, StoreAlerts, TopicAlerts
    from trail.sdk.transport import KafkaTransport

    options = kafka_options(settings)

    def client(service: str) -> Client:
        return Client(
            service=service,
            transport=transport() if transport else KafkaTransport(bootstrap, settings.topic("events"), extra=options),
            subject_key=settings.require_subject_key(),
            spool_dir=settings.effective_spool_dir,
            spool_max_bytes=settings.spool_max_bytes,
            environment=settings.mode,
            policy=policy_for(settings),
        )

    access = access or open_access_store(settings)
    backend = StoreBackend(
        store,
        client("trail-api"),
        extra_health,
        settings=settings,
        seal=seal,
        progress=progress_reader(settings, bootstrap),
    )
    backend.incidents = incidents
    holds = incident_holds(incidents.service) if incidents is not None else None
    store.warm_up()  # the first lookups after a restart would otherwise wait for the indexes
    jobs = Verifications(backend)
    return ApiServices(
        settings=settings,
        backend=backend,
        access=access,
        recorder=AccessRecorder(client(ACCESS_SERVICE)),
        retention=RetentionService(settings, store, access, incident_holds=holds),
        sql=SqlRunner(
            settings.store_dsn,
            settings.clickhouse_database,
            max_rows=settings.sql_max_rows,
            timeout_s=settings.sql_timeout,
        ),
        alerts=SplitAlerts(StoreAlerts(store), TopicAlerts(bootstrap, settings.topic("alerts"), options=options)),
        incidents=incidents,
        bootstrap=None if transport else bootstrap,
        verifications=jobs,
        scheduled=PeriodicVerification(jobs, settings.verify_every, schedule_lease(settings)).start()
        if settings.verify_every > 0
        else None,
    )
