"""Notices to the people an incident affected: contact resolvers, channels, the delivery ledger.

- :mod:`~trail.notices.model` — a contact, the resolver protocol, rendered and outgoing notices;
- :mod:`~trail.notices.resolvers` — contact resolvers from a spec (Python object, entry point,
  external command);
- :mod:`~trail.notices.channels` — outbox, SMTP and webhook channels; :mod:`~trail.notices.mail`
  builds the e-mail;
- :mod:`~trail.notices.ledger` — who is to be told and where each delivery stands, in SQLite or
  PostgreSQL;
- :mod:`~trail.notices.runner` — plan and run a resumable batch;
- :mod:`~trail.notices.workflow` — an incident's notices: draft, approve, send, each recorded;
- :mod:`~trail.notices.errors` — the errors, rooted at :class:`NoticeError`.

An organisation's contact resolver needs only :class:`Contact` (and may declare itself a
:class:`ContactResolver`), both importable from here; see ``examples/contact_resolver.py``.
"""

from trail.notices.errors import NoticeError
from trail.notices.model import Contact, ContactResolver

__all__ = ["Contact", "ContactResolver", "NoticeError"]
