"""Every exception trail raises on purpose, in one module.

All derive from :class:`TrailError`, so callers can catch one type. Messages carry what the
user needs to act on (field, kind of value, limit) and never a subject id or a personal data
value. Exit statuses and HTTP statuses are not properties of these classes: the command line
(``trail.cli``) and the API (``trail.api``) map them.

    TrailError
    ├── ConfigError               a setting is missing or invalid (names the variable)
    │   └── NoticeSpecError       a contact-resolver or channel spec is invalid (also a NoticeError)
    ├── ValidationError           an audit event is invalid (names the field and reason)
    │   └── UnknownSchemaError    the event names a schema this version does not know
    ├── SpoolFullError            the SDK's on-disk spool reached its bound
    ├── ClientClosedError         record() after close()
    ├── TransportUnavailable      the broker could not take a batch (control flow in the SDK)
    ├── StoreError                the store refused or could not be reached
    ├── BrokerError               the local broker could not be started or reached
    ├── UsageError                bad command-line or request input
    ├── Refused                   an incident command broke a rule; nothing was recorded
    ├── NotFound                  no incident (or other record) with this reference
    ├── Conflict                  the record changed between reading and saving
    ├── PlaybookError             a playbook is invalid (``file:line: key: reason``)
    ├── SinkHalted                the sink stopped on the dead-letter ratio; nothing past it committed
    ├── PublishError              trail.alerts did not acknowledge an alert; nothing past it committed
    ├── OffsetOutOfRange          a consumer's offset lies outside the partition's log: stop, never reset
    ├── WriteFailed               a consumer step's write failed and may succeed later (control flow)
    ├── WriteTimeout              a write did not finish within its time limit
    ├── StoppedWhileFailing       stop() came while a step's write kept failing
    ├── NoCommittedOffset         partitions the group has no offset for (control flow)
    ├── DocumentError             a document could not be rendered or written
    │   └── MissingElementError   a rendered document lacks a required element (its template regressed)
    ├── Unauthorized              no valid token: missing, unknown, expired or revoked (API: 401)
    │   └── LoginRequired         a console page without a live session (the login page)
    ├── Forbidden                 the principal's roles do not allow the request (API: 403)
    │   └── CsrfRefused           a console form without its session's CSRF token (403)
    ├── RateLimited               too many requests or failed authentications (API: 429)
    ├── TooLarge                  a request body over its limit (API: 413)
    ├── RequestTimeout            a request body that did not arrive in time (API: 408)
    └── NoticeError               contact resolution, channels, the notice ledger, batch runs
        ├── NoticeSpecError       (see above)
        ├── ResolverError         the contact resolver failed (names the resolver and line, never contact data)
        ├── DeliveryFailed        a channel did not deliver one notice; ``retryable`` says whether to retry
        │   └── ChannelError      the channel as a whole is unusable: the run stops
        ├── LedgerError           the notice ledger cannot be opened or used
        ├── BatchBusy             another process is running that batch
        └── RenderError           the notice template failed for one contact
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any


class TrailError(Exception):
    """Root of every error trail raises on purpose."""


class ConfigError(TrailError):
    """A setting is missing or invalid; the message names the variable."""


class ValidationError(TrailError):
    """An audit event failed validation.

    ``field`` is the dotted path of the offending field (``actor.kind``) and ``reason`` says
    what is wrong with it, without echoing personal data.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class UnknownSchemaError(ValidationError):
    """The event's ``schema`` is not one this version of trail accepts."""


class SpoolFullError(TrailError):
    """The SDK's on-disk spool is full: the event was not accepted (never dropped silently)."""


class ClientClosedError(TrailError):
    """The SDK client was closed; it takes no more events."""


class TransportUnavailable(TrailError):
    """The transport could not deliver a batch.

    Used for control flow inside the SDK: the worker answers it by spooling the batch and
    retrying later. It never reaches the caller of ``record()``.
    """


class StoreError(TrailError):
    """The store refused a write or query, or could not be reached."""


class BrokerError(TrailError):
    """The local Kafka-protocol broker could not be started or reached."""


class UsageError(TrailError):
    """Bad command-line or request input; the message is one line that says what to fix."""


class Refused(TrailError):
    """A command broke one of the rules of the record it addresses; nothing was recorded."""


class NotFound(TrailError):
    """No record (incident, alert, principal, ...) has this id or reference."""


class Conflict(TrailError):
    """The record changed between reading and saving; nothing of this command was saved."""


class PlaybookError(TrailError):
    """A playbook file is invalid; the message starts with ``file:line:``."""


class Unauthorized(TrailError):
    """The request carries no valid token (missing, unknown, expired, revoked, disabled)."""


class Forbidden(TrailError):
    """The principal is authenticated but none of its roles allows this request."""


class LoginRequired(Unauthorized):
    """A console page asked for without a live session: the answer is the login page."""


class CsrfRefused(Forbidden):
    """A console form sent without its session's CSRF token (or with another's)."""


class RateLimited(TrailError):
    """Too many requests (per principal) or failed authentications (per client address)."""

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TooLarge(TrailError):
    """A request body over its limit; it was not read to the end."""


class RequestTimeout(TrailError):
    """A client did not send its request body in time (the API answers 408)."""


# ---------------------------------------------------------------- consumers
class SinkHalted(TrailError):
    """The sink stopped on purpose (dead-letter ratio exceeded); nothing past it was committed."""


class PublishError(TrailError):
    """trail.alerts did not acknowledge an alert; nothing past the last commit was committed."""


class OffsetOutOfRange(TrailError):
    """The offset a role would read from is not in the partition's log: beyond its end (the
    broker's log was lost or replaced) or before its start (retention deleted records that
    were never read). The loop stops instead of resetting: for an audit trail a silent skip
    is data loss and a silent replay from the start is duplication."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        low: int | None,
        high: int | None,
        group: str | None = None,
        *,
        hint: str | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.low = low
        self.high = high
        self.group = group
        self.beyond_end = high is not None and offset > high
        if self.beyond_end:
            where, why = (
                "beyond the end of",
                "the broker's log was lost or replaced since this offset was stored; records of the old log "
                "that were not yet read are not in the trail",
            )
        elif low is not None and offset < low:
            where, why = "before the start of", "retention deleted records before they were read: they are lost"
        else:
            where, why = "outside", "the broker refused the offset"
        valid = f"{low if low is not None else '?'}..{high if high is not None else '?'}"
        who = f"consumer group {group}" if group else "this consumer"
        self.hint = hint or (
            "Check what is missing, then move the group's offsets explicitly (kafka-consumer-groups "
            f"--reset-offsets --group {group or 'GROUP'} --topic {topic}:{partition} --to-earliest, or "
            "--to-offset N, --execute) and restart"
        )
        super().__init__(
            f"{topic} partition {partition}: offset {offset} of {who} is {where} the log (valid offsets "
            f"{valid}): {why}. Nothing was reset or skipped. {self.hint}"
        )

    def with_hint(self, hint: str) -> OffsetOutOfRange:
        """The same error with another remedy (the role knows where the offset came from)."""
        return OffsetOutOfRange(self.topic, self.partition, self.offset, self.low, self.high, self.group, hint=hint)


class WriteFailed(TrailError):
    """A step's write (store insert, incident save) failed and may succeed later.

    Used for control flow: the loop answers it by pausing every partition, polling on so the
    group stays alive, waiting (exponential backoff with a cap) and calling the step again;
    nothing past the last commit is committed meanwhile. ``event`` names the log line
    (``<role>.<event>``); the cause is chained.
    """

    def __init__(self, event: str, message: str) -> None:
        self.event = event
        super().__init__(message)


class WriteTimeout(TrailError):
    """A write did not finish within its time limit; it is treated like a failed write."""


class StoppedWhileFailing(TrailError):
    """stop() was asked while a step's write kept failing: nothing past the last commit was
    committed, and the records will be read again by the next consumer of the group."""


class NoCommittedOffset(TrailError):
    """The group has no committed offset for these partitions.

    Used for control flow between a consumer adapter and the loop, which starts them where
    the role's policy says (see :class:`~trail.ingest.processor.Processor`)."""

    def __init__(self, partitions: Collection[Any]) -> None:
        self.partitions = frozenset(partitions)
        super().__init__(f"no committed offset for {sorted(self.partitions)}")


class DocumentError(TrailError):
    """A document could not be rendered or written.

    Raised for an unknown kind, language or format (the message lists the allowed values), a
    template that is missing or broken (the message names the file), a context that is not a
    mapping, or an output that fails a self-check. Messages never quote personal data.
    """


class MissingElementError(DocumentError):
    """A rendered document lacks elements the rules require: its template regressed."""

    def __init__(self, kind: str, lang: str, fmt: str, template: str, missing: Sequence[str]) -> None:
        self.kind = kind
        self.lang = lang
        self.fmt = fmt
        self.template = template
        self.missing = list(missing)
        shown = "; ".join(repr(m) for m in self.missing)
        super().__init__(
            f"{kind} ({lang}, {fmt}) rendered from {template} lacks required elements: {shown} "
            "(each must appear in a heading, table header or bold label; see documents.required_elements)"
        )


class NoticeError(TrailError):
    """Root of the errors of notice delivery."""


class NoticeSpecError(NoticeError, ConfigError):
    """A contact-resolver or channel spec is invalid; the message says what to fix (never a password)."""


class ResolverError(NoticeError):
    """The contact resolver failed; the message names the resolver (and line), never contact data."""


class DeliveryFailed(NoticeError):
    """A channel did not deliver one notice.

    ``reason`` is short and sanitised (no address, no server text that could echo one);
    ``retryable`` is true when trying again later may succeed (4xx, 429, 5xx from a webhook,
    connection errors) and false when it cannot (no address, 5xx from SMTP, other 4xx).
    """

    def __init__(self, reason: str, retryable: bool) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(reason)


class ChannelError(DeliveryFailed):
    """The channel itself is unusable (bad credentials, sender refused, wrong URL).

    Nothing was delivered for the notice at hand. A batch run records it as a retryable
    failure and stops, since every other notice would fail the same way.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=True)


class LedgerError(NoticeError):
    """The notice ledger cannot be opened or used."""


class BatchBusy(NoticeError):
    """Another process (or thread) is running this batch; wait for it or stop it first."""


class RenderError(NoticeError):
    """The notice template failed for one contact; nothing was sent to that person."""
