"""What a notice is: a contact, the resolver protocol, the rendered and the outgoing notice.

The trail never holds contact details. It knows a person only by *subject ref* (64 lowercase
hex characters, the keyed HMAC-SHA256 pseudonym the SDK stores). When notices go out, the
organisation's contact resolver maps refs to :class:`Contact` details, a chunk at a time, and
a channel delivers each rendered :class:`OutgoingNotice`. ``repr()`` of a contact or a notice
hides the personal data, so a stray ``print`` or a traceback does not show it either.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

LANGUAGES = ("zh", "en")
#: Refs per resolver call (and per process of a command resolver): memory stays flat at any batch size.
RESOLVE_CHUNK = 500
_REF_RE = re.compile(r"[0-9a-f]{64}")
_NOTICE_NAMESPACE = uuid.UUID("6f1d3c52-5a57-4c8e-9d0e-2b7f6a1e4c57")


def is_subject_ref(value: object) -> bool:
    return isinstance(value, str) and _REF_RE.fullmatch(value) is not None


def normalise_language(value: str | None) -> str:
    """``zh``/``en`` from a language tag (``zh-CN``, ``EN_us``); ValueError otherwise (not echoed)."""
    if value is None or value == "":
        return "zh"
    lang = value.replace("_", "-").split("-", 1)[0].lower()
    if lang not in LANGUAGES:
        raise ValueError("language must be one of zh, en (or a tag such as zh-CN)")
    return lang


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach one person. ``repr()`` shows only the ref: the rest is personal data."""

    subject_ref: str
    email: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    name: str | None = field(default=None, repr=False)
    language: str = "zh"

    def __post_init__(self) -> None:
        object.__setattr__(self, "language", normalise_language(self.language))


@runtime_checkable
class ContactResolver(Protocol):
    """Maps subject refs to contacts, a batch at a time. Refs it cannot resolve are left out."""

    def resolve(self, refs: Sequence[str]) -> Mapping[str, Contact]: ...


def notice_id_for(incident_id: str, subject_ref: str) -> str:
    """The deterministic id of the notice about ``incident_id`` to ``subject_ref`` (a UUIDv5).

    It is the Message-ID and the webhook's Idempotency-Key, so a receiver can drop a repeat.
    """
    return str(uuid.uuid5(_NOTICE_NAMESPACE, f"{incident_id}|{subject_ref}"))


def message_id(notice_id: str) -> str:
    """The RFC 5322 Message-ID header value for a notice."""
    return f"<{notice_id}@notice.trail>"


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    """What the incident engine's templates produce for one contact."""

    subject: str = field(repr=False)
    body_text: str = field(repr=False)
    body_html: str = field(repr=False)
    language: str = "zh"


@dataclass(frozen=True, slots=True)
class OutgoingNotice:
    """One notice to one person, ready for a channel. ``repr()`` hides the contact and the text."""

    notice_id: str
    incident_id: str
    subject_ref: str
    contact: Contact
    language: str
    subject: str = field(repr=False)
    body_text: str = field(repr=False)
    body_html: str = field(repr=False)

    def payload(self) -> dict[str, Any]:
        """The JSON document a webhook receives."""
        c = self.contact
        return {
            "notice_id": self.notice_id,
            "incident_id": self.incident_id,
            "subject_ref": self.subject_ref,
            "language": self.language,
            "subject": self.subject,
            "body_text": self.body_text,
            "body_html": self.body_html,
            "contact": {"email": c.email, "phone": c.phone, "name": c.name, "language": c.language},
        }
