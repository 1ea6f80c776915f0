"""Notices to every affected person (PIPL Art. 57): plan a batch, then run it, resumably.

::

    with open_ledger(settings.data_dir / "incidents.db") as ledger:
        batch_id = plan_batch(ledger, incident_id, subject_refs, channel.name)
        summary = run_batch(ledger, batch_id, resolver=load_resolver(spec), channel=channel,
                            render=render_notice, on_result=record_event,
                            progress=show_progress, stop=stop_event)

A run never prints and never touches signal handlers: the caller passes a
:class:`threading.Event` to stop it (the notice in flight is finished and recorded first) and a
``progress(done, total)`` callback to show where it is.

- On the next run, a row a killed run left in ``sending`` becomes ``in_doubt`` — the notice may
  or may not have gone out — and is reported (``on_result`` and the summary) but not sent again
  unless the caller passes ``resend_in_doubt=True``. A resend is safe for receivers that
  de-duplicate: the notice id is the e-mail's Message-ID, the webhook's Idempotency-Key and
  the outbox file's name (the outbox skips a notice whose file exists).
- ``pending`` rows and ``failed`` rows whose failure was retryable are tried again, up to
  ``max_attempts`` times per run, in passes with a growing pause between them.
- One run per batch at a time: a second one gets :class:`~trail.notices.errors.BatchBusy`.
- Contacts are resolved in chunks (500 refs), so memory stays flat at 100,000 people.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from trail.logging import get_logger
from trail.notices.channels import Channel
from trail.notices.errors import ChannelError, DeliveryFailed, NoticeError, RenderError
from trail.notices.ledger import STATUSES, BatchInfo, DeliveryRow, NoticeLedger
from trail.notices.model import (
    RESOLVE_CHUNK,
    Contact,
    ContactResolver,
    OutgoingNotice,
    RenderedNotice,
    normalise_language,
)
from trail.notices.resolvers import resolve_checked

__all__ = [
    "BatchSummary",
    "DeliveryResult",
    "Render",
    "batch_status",
    "deliveries",
    "in_doubt_refs",
    "plan_batch",
    "requeue_failed",
    "run_batch",
]

log = get_logger("trail.notices")

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: Renders the notice for one contact (every person of a batch may get the same text).
Render = Callable[[Contact], RenderedNotice]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one attempt, for the incident's audit history (no contact data)."""

    batch_id: str
    incident_id: str
    notice_id: str
    subject_ref: str
    channel: str
    status: str  # sent | failed | in_doubt | skipped
    attempt: int
    error: str | None
    retryable: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """Where a batch stands after a run; counts are read back from the ledger."""

    batch_id: str
    incident_id: str
    channel: str
    total: int
    sent: int
    failed: int  # all failed rows, including the retryable ones
    retryable: int  # failed rows a later run will try again
    in_doubt: int
    pending: int
    skipped: int
    interrupted: bool
    elapsed: float
    stopped_reason: str | None = None

    @property
    def finished(self) -> bool:
        """True when no person of the batch is left to try or to check."""
        return self.pending == 0 and self.retryable == 0 and self.in_doubt == 0


# -- the public operations ------------------------------------------------------------------
def plan_batch(ledger: NoticeLedger, incident_id: str, subject_refs: Iterable[str], channel_name: str) -> str:
    """Record who is to be told about ``incident_id`` on ``channel_name``; returns the batch id.

    Idempotent: refs already sent, in progress or planned for this incident (on this channel,
    or anywhere unless they failed for good there) are left out; new refs join the incident's
    open batch on that channel if there is one. A ref that failed for good on another channel
    can be planned again here (e.g. no e-mail address → the SMS webhook). All or nothing: one
    transaction; a malformed ref plans nothing.
    """
    if not _ID_RE.fullmatch(incident_id):
        raise NoticeError("incident id must be 1-128 letters, digits or . _ : - (starting with a letter or digit)")
    if not _ID_RE.fullmatch(channel_name):
        raise NoticeError("channel name must be 1-128 letters, digits or . _ : -")
    batch_id, added, total = ledger._plan(incident_id, subject_refs, channel_name)
    log.info(
        "notices.batch_planned",
        batch_id=batch_id,
        incident_id=incident_id,
        channel=channel_name,
        added=added,
        total=total,
    )
    return batch_id


def batch_status(ledger: NoticeLedger, batch_id: str) -> BatchInfo:
    """A batch with its counts per delivery status (``trail incidents show``)."""
    info = ledger.batch(batch_id)
    if info is None:
        raise NoticeError(f"no notice batch {batch_id}")
    return info


def deliveries(ledger: NoticeLedger, incident_id: str) -> dict[str, int]:
    """Counts per delivery status over every batch of an incident (plus ``retryable``)."""
    return ledger.counts(incident_id=incident_id)


def in_doubt_refs(ledger: NoticeLedger, batch_id: str) -> list[str]:
    """Subject refs whose notice may or may not have gone out (to check in the outbox or mail log)."""
    return ledger.refs_in(batch_id, "in_doubt")


def requeue_failed(ledger: NoticeLedger, batch_id: str) -> int:
    """Make every failed delivery of a batch pending again (after fixing the cause); returns how many."""
    n = ledger._requeue_failed(batch_id)
    log.info("notices.failed_requeued", batch_id=batch_id, count=n)
    return n


class _Run:
    """One run of one batch: the state shared by its passes."""

    def __init__(
        self,
        ledger: NoticeLedger,
        info: BatchInfo,
        channel: Channel,
        resolver: ContactResolver,
        render: Render,
        on_result: Callable[[DeliveryResult], None] | None,
        progress: Callable[[int, int], None] | None,
        stop: threading.Event | None,
        max_consecutive_failures: int,
    ) -> None:
        self.ledger = ledger
        self.info = info
        self.channel = channel
        self.resolver = resolver
        self.render = render
        self.on_result = on_result
        self.progress = progress
        self.stop = stop
        self.max_consecutive_failures = max_consecutive_failures
        self.done = 0
        self.consecutive_failures = 0
        self.retry: list[DeliveryRow] = []
        self.interrupted = False
        self.stopped_reason: str | None = None

    def emit(
        self,
        row: DeliveryRow,
        status: str,
        attempt: int,
        error: str | None = None,
        retryable: bool = False,
        *,
        counted: bool = True,
    ) -> None:
        if counted and (status != "failed" or not retryable):
            self.done += 1
        if self.on_result is not None:
            self.on_result(
                DeliveryResult(
                    self.info.batch_id,
                    self.info.incident_id,
                    row.notice_id,
                    row.ref,
                    self.channel.name,
                    status,
                    attempt,
                    error,
                    retryable,
                    _now(),
                )
            )
        if counted and self.progress is not None:
            self.progress(self.done, self.info.total)

    def pause(self, seconds: float) -> bool:
        """Wait between passes; True when told to stop meanwhile."""
        if seconds > 0:
            if self.stop is not None:
                self.stop.wait(seconds)
            else:
                time.sleep(seconds)
        return self.should_stop()

    def should_stop(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            self.interrupted = True
            self.stopped_reason = self.stopped_reason or "stopped on request"
        return self.interrupted

    def chunk(self, rows: Sequence[DeliveryRow]) -> None:
        contacts = resolve_checked(self.resolver, [r.ref for r in rows])
        for row in rows:
            if self.should_stop():
                return
            self.one(row, contacts.get(row.ref))
            if self.interrupted:
                return

    def one(self, row: DeliveryRow, contact: Contact | None) -> None:
        attempt = row.attempts + 1
        batch_id = self.info.batch_id
        if contact is None:
            self.ledger._finish(batch_id, row.ref, "failed", attempt, "no contact", retryable=False)
            self.emit(row, "failed", attempt, "no contact")
            return
        notice = self.build(row, contact)
        if not self.ledger._start(batch_id, row.ref, attempt):
            error = "already delivered in another batch of this incident"
            self.ledger._finish(batch_id, row.ref, "skipped", row.attempts, error)
            self.emit(row, "skipped", row.attempts, error)
            return
        try:
            self.channel.send(notice)
        except ChannelError as exc:
            self.ledger._finish(batch_id, row.ref, "failed", attempt, exc.reason, retryable=True)
            self.emit(row, "failed", attempt, exc.reason, retryable=True)
            raise
        except DeliveryFailed as exc:
            self.ledger._finish(batch_id, row.ref, "failed", attempt, exc.reason, retryable=exc.retryable)
            log.debug(
                "notices.delivery_failed",
                batch_id=batch_id,
                ref=row.ref[:12],
                attempt=attempt,
                error=exc.reason,
                retryable=exc.retryable,
            )
            self.emit(row, "failed", attempt, exc.reason, retryable=exc.retryable)
            if exc.retryable:
                self.retry.append(DeliveryRow(row.ref, row.notice_id, attempt))
                self.consecutive_failures += 1
                if self.consecutive_failures >= self.max_consecutive_failures:
                    self.interrupted = True
                    self.stopped_reason = (
                        f"the channel failed {self.consecutive_failures} times in a row (last: {exc.reason}); "
                        "run the batch again when it works"
                    )
                    log.warning(
                        "notices.channel_failing",
                        batch_id=batch_id,
                        channel=self.channel.name,
                        failures=self.consecutive_failures,
                        error=exc.reason,
                    )
            return
        except BaseException as exc:
            # Unknown whether it went out: say so, then let the exception through.
            error = f"channel raised {type(exc).__name__}; delivery unknown"
            with contextlib.suppress(Exception):
                self.ledger._finish(batch_id, row.ref, "in_doubt", attempt, error)
                self.emit(row, "in_doubt", attempt, error)
            raise
        self.consecutive_failures = 0
        self.ledger._finish(batch_id, row.ref, "sent", attempt)
        self.emit(row, "sent", attempt)

    def build(self, row: DeliveryRow, contact: Contact) -> OutgoingNotice:
        try:
            rendered = self.render(contact)
            language = normalise_language(rendered.language)
        except Exception as exc:
            # The template's own error stays chained for its developer; this message holds no contact data.
            raise RenderError(
                f"rendering the notice for subject {row.ref[:12]}… failed: {type(exc).__name__}; nothing was sent to it"
            ) from exc
        return OutgoingNotice(
            notice_id=row.notice_id,
            incident_id=self.info.incident_id,
            subject_ref=row.ref,
            contact=contact,
            language=language,
            subject=rendered.subject,
            body_text=rendered.body_text,
            body_html=rendered.body_html,
        )


def run_batch(
    ledger: NoticeLedger,
    batch_id: str,
    *,
    resolver: ContactResolver,
    channel: Channel,
    render: Render,
    on_result: Callable[[DeliveryResult], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    max_attempts: int = 3,
    retry_backoff_s: float = 5.0,
    resend_in_doubt: bool = False,
    max_consecutive_failures: int = 50,
    chunk_size: int = RESOLVE_CHUNK,
) -> BatchSummary:
    """Deliver a planned batch, or what is left of it; safe to call again after any interruption.

    - Rows left in ``sending`` by a killed run become ``in_doubt``; they are reported through
      ``on_result`` and the summary, and sent again only with ``resend_in_doubt=True``.
    - ``pending`` rows and retryable failures are tried, each up to ``max_attempts`` times in
      this run; passes after the first wait ``retry_backoff_s``, doubling each time.
    - A ref the resolver does not know fails for good with ``no contact``.
    - ``on_result`` gets every attempt's outcome once the ledger holds it; ``progress(done,
      total)`` counts people settled (sent, failed for good, skipped, in doubt), once when the
      run starts (what earlier runs settled) and after each person.
    - Setting ``stop`` finishes the notice in flight, records it and returns with
      ``interrupted=True``; so does a channel that failed ``max_consecutive_failures`` times in
      a row (with ``stopped_reason``). :class:`ChannelError`, :class:`ResolverError` and
      :class:`RenderError` are raised after the ledger is brought up to date.
    """
    if max_attempts < 1:
        raise NoticeError("max_attempts must be at least 1")
    info = batch_status(ledger, batch_id)
    if info.channel != channel.name:
        raise NoticeError(f"notice batch {batch_id} was planned for channel {info.channel}, not {channel.name}")
    started = time.monotonic()
    run = _Run(ledger, info, channel, resolver, render, on_result, progress, stop, max(1, max_consecutive_failures))
    with ledger._lock(batch_id):
        run.info = info = batch_status(ledger, batch_id)  # planning may have added people meanwhile
        recovered = ledger._recover(batch_id)
        if recovered:
            log.warning(
                "notices.in_doubt_found",
                batch_id=batch_id,
                count=len(recovered),
                hint="interrupted while sending; resend with resend_in_doubt=True after checking",
            )
        for row in recovered:
            run.emit(row, "in_doubt", row.attempts, "interrupted while sending; delivery unknown", counted=False)
        counts = ledger.counts(batch_id=batch_id)
        run.done = info.total - counts["pending"] - counts["retryable"] - (counts["in_doubt"] if resend_in_doubt else 0)
        if progress is not None:
            progress(run.done, info.total)
        try:
            after = ""
            while not run.should_stop():
                page = ledger._page(batch_id, after, chunk_size, resend_in_doubt)
                if not page:
                    break
                run.chunk(page)
                after = page[-1].ref
            for attempt_pass in range(2, max_attempts + 1):
                if not run.retry or run.should_stop():
                    break
                if run.pause(retry_backoff_s * 2 ** (attempt_pass - 2)):
                    break
                todo, run.retry = run.retry, []
                for start in range(0, len(todo), chunk_size):
                    run.chunk(todo[start : start + chunk_size])
                    if run.interrupted:
                        break
        finally:
            ledger._close_batch(batch_id)
    final = ledger.counts(batch_id=batch_id)
    summary = BatchSummary(
        batch_id=batch_id,
        incident_id=info.incident_id,
        channel=info.channel,
        total=sum(final[status] for status in STATUSES),
        sent=final["sent"],
        failed=final["failed"],
        retryable=final["retryable"],
        in_doubt=final["in_doubt"],
        pending=final["pending"],
        skipped=final["skipped"],
        interrupted=run.interrupted,
        elapsed=time.monotonic() - started,
        stopped_reason=run.stopped_reason,
    )
    log.info(
        "notices.batch_run",
        batch_id=batch_id,
        incident_id=info.incident_id,
        channel=info.channel,
        total=summary.total,
        sent=summary.sent,
        failed=summary.failed,
        retryable=summary.retryable,
        in_doubt=summary.in_doubt,
        pending=summary.pending,
        skipped=summary.skipped,
        interrupted=summary.interrupted,
        stopped_reason=summary.stopped_reason,
        elapsed_s=round(summary.elapsed, 3),
    )
    return summary
