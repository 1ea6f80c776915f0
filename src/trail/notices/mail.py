"""The e-mail of a notice: plain text with an HTML alternative, and its bytes for the outbox.

Every person of a batch gets the same text, so the MIME body is built once per text and the
per-person headers are added to it (:func:`email_bytes`); building the MIME parts is most of
the cost of a message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime

from trail.notices.errors import DeliveryFailed
from trail.notices.model import OutgoingNotice, message_id


class _CachedHeaderRegistry(HeaderRegistry):
    """The stdlib registry builds a new class for every header it parses; this reuses them (~10% per message)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


_POLICY = policy.SMTP.clone(header_factory=_CachedHeaderRegistry())


def build_email(
    notice: OutgoingNotice, sender: str, *, internal_headers: bool = False, headers_only: bool = False
) -> EmailMessage:
    """The RFC 5322 message for a notice: plain text with an HTML alternative.

    ``internal_headers`` adds ``X-Trail-*`` headers (notice id, incident, subject ref, phone) for the
    organisation's own outbox processing; they are not sent to the person.
    """
    c = notice.contact
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = " ".join(notice.subject.split())  # a template's stray newline must not break the header
    msg["From"] = sender
    if c.email:
        try:
            msg["To"] = Address(display_name=c.name or "", addr_spec=c.email)
        except (ValueError, IndexError, TypeError):
            raise DeliveryFailed("invalid e-mail address", retryable=False) from None
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id(notice.notice_id)
    msg["Auto-Submitted"] = "auto-generated"
    if internal_headers:
        msg["X-Trail-Notice-Id"] = notice.notice_id
        msg["X-Trail-Incident"] = notice.incident_id
        msg["X-Trail-Ref"] = notice.subject_ref  # short name: the header fits on one line
        if c.phone:
            msg["X-Trail-Phone"] = c.phone
    if headers_only:
        return msg
    msg.set_content(notice.body_text)
    msg.add_alternative(notice.body_html, subtype="html")
    msg["Content-Language"] = "zh-CN" if notice.language == "zh" else "en"  # after set_content, which drops it
    return msg


_BODY_CACHE: dict[tuple[str, str, str], bytes] = {}


def _body_bytes(notice: OutgoingNotice) -> bytes:
    """The MIME body (text + HTML alternative, with its own headers), built once per text.

    Every person of a batch gets the same text, and building the MIME parts is ~90 % of the
    cost of a message; the headers that differ per person are added in :func:`email_bytes`.
    """
    key = (notice.language, notice.body_text, notice.body_html)
    cached = _BODY_CACHE.get(key)
    if cached is None:
        part = EmailMessage(policy=_POLICY)
        part.set_content(notice.body_text)
        part.add_alternative(notice.body_html, subtype="html")
        part["Content-Language"] = "zh-CN" if notice.language == "zh" else "en"
        cached = part.as_bytes()
        if len(_BODY_CACHE) >= 16:
            _BODY_CACHE.clear()
        _BODY_CACHE[key] = cached
    return cached


def email_bytes(notice: OutgoingNotice, sender: str, *, internal_headers: bool = False) -> bytes:
    """The same message as :func:`build_email`, serialised, with the body built once per text."""
    head = build_email(
        OutgoingNotice(
            notice_id=notice.notice_id,
            incident_id=notice.incident_id,
            subject_ref=notice.subject_ref,
            contact=notice.contact,
            language=notice.language,
            subject=notice.subject,
            body_text="",
            body_html="",
        ),
        sender,
        internal_headers=internal_headers,
        headers_only=True,
    ).as_bytes()
    return head.rstrip(b"\r\n") + b"\r\n" + _body_bytes(notice)
