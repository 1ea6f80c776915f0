"""The errors of notices: contact resolution, channels, the ledger and batch runs.

All are :class:`~trail.errors.TrailError`; none of their messages carries contact data::

    NoticeError
    ├── NoticeSpecError     a resolver or channel spec is invalid (also a ConfigError; says what to fix)
    ├── ResolverError       the contact resolver failed (names the resolver and line, never contact data)
    ├── DeliveryFailed      a channel did not deliver one notice; ``retryable`` says whether to try again
    │   └── ChannelError    the channel as a whole is unusable (credentials, sender, URL): the run stops
    ├── LedgerError         the ledger cannot be opened or used
    ├── BatchBusy           another process is running that batch
    └── RenderError         the notice template failed for one contact
"""

from __future__ import annotations

from trail.errors import ConfigError, TrailError


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
