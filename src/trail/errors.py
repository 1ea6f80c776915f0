"""Every exception trail raises on purpose, in one module.

All derive from :class:`TrailError`, so callers can catch one type. Messages carry what the
user needs to act on (field, kind of value, limit) and never a subject id or a personal data
value. Exit statuses and HTTP statuses are not properties of these classes: the command line
(``trail.cli``) and the API (``trail.api``) map them.

    TrailError
    ├── ConfigError               a setting is missing or invalid (names the variable)
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
    ├── Unauthorized              no valid token: missing, unknown, expired or revoked (API: 401)
    ├── Forbidden                 the principal's roles do not allow the request (API: 403)
    ├── RateLimited               too many requests or failed authentications (API: 429)
    └── TooLarge                  a request body over its limit (API: 413)
"""

from __future__ import annotations


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


class RateLimited(TrailError):
    """Too many requests (per principal) or failed authentications (per client address)."""

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TooLarge(TrailError):
    """A request body over its limit; it was not read to the end."""
