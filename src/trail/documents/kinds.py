"""The kinds of document, their languages and formats, and the check of a choice among them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from trail.documents.errors import DocumentError

#: The incident documents (the kinds a playbook obligation may name as its template).
DOCUMENT_KINDS: Final = (
    "initial_report",
    "followup_report",
    "closing_summary",
    "individual_notice",
    "public_announcement",
    "post_incident_review",
)
#: The graded emergency plan itself, rendered from the playbook context.
PLAN_KIND: Final = "emergency_plan"
ALL_KINDS: Final = (*DOCUMENT_KINDS, PLAN_KIND)
LANGS: Final = ("zh", "en")
#: Text formats (``render`` returns text) and every format a document can be written in.
FORMATS: Final = ("md", "html")
OUTPUT_FORMATS: Final = (*FORMATS, "pdf")
#: Documents that reach individuals or the public: no identifiers may appear in them.
PUBLIC_KINDS: Final = frozenset({"individual_notice", "public_announcement"})


def check_choice(what: str, value: object, allowed: Sequence[str]) -> None:
    """Raise :class:`DocumentError` naming the allowed values unless ``value`` is one of them."""
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value)[:40]
        raise DocumentError(f"unknown {what} {shown}; choose one of: {', '.join(allowed)}")


def template_name(kind: str, lang: str) -> str:
    """The file of ``kind`` in ``lang`` inside the templates directory."""
    return f"{kind}.{lang}.md.j2"
