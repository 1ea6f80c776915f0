"""The errors of rendering documents.

TrailError
└── DocumentError           a document could not be rendered or written
    └── MissingElementError a rendered document lacks a required element (its template regressed)
"""

from __future__ import annotations

from collections.abc import Sequence

from trail.errors import TrailError


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
