"""Documents rendered from plain-dict records, in Chinese and English, as Markdown and HTML.

Shared by every part of trail that issues documents (an incident's reports and notices, the
graded emergency plan). It renders the context it is given and knows nothing of where the
record came from: no incident store, no ledger, no settings.

- :mod:`~trail.documents.kinds` — the document kinds, languages and formats;
- :mod:`~trail.documents.labels` — labels in both languages, from ``labels.yaml``;
- :mod:`~trail.documents.formatting` — dates, clocks, counts in the document's language and zone;
- :mod:`~trail.documents.views` — the context each document kind needs, from the record;
- :mod:`~trail.documents.markdown` — escaping values into Markdown; Markdown → HTML (markdown-it-py);
- :mod:`~trail.documents.plaintext` — Markdown → plain text (the e-mails' text part);
- :mod:`~trail.documents.checks` — the self-checks run on every render;
- :mod:`~trail.documents.rendering` — templates (``templates/``, package data) → documents;
- :mod:`~trail.documents.pdf` — HTML → PDF in-process (WeasyPrint) with an installed Chinese font.

The names below are importable from ``trail.documents`` itself; the ones that need Jinja2 or
markdown-it are loaded on first use, so importing the kinds (as the playbook loader does) stays
cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trail.documents.errors import DocumentError, MissingElementError
from trail.documents.kinds import (
    ALL_KINDS,
    DOCUMENT_KINDS,
    FORMATS,
    LANGS,
    OUTPUT_FORMATS,
    PLAN_KIND,
    PUBLIC_KINDS,
    template_name,
)

if TYPE_CHECKING:
    from trail.documents.checks import required_elements
    from trail.documents.labels import CATEGORY_LABELS, FACT_LABELS
    from trail.documents.markdown import markdown_to_html, md_escape
    from trail.documents.pdf import html_to_pdf
    from trail.documents.plaintext import markdown_to_text
    from trail.documents.rendering import (
        default_templates_dir,
        packaged_templates,
        render,
        render_bytes,
        render_plan,
        write_documents,
    )

_LAZY = {
    "required_elements": "checks",
    "CATEGORY_LABELS": "labels",
    "FACT_LABELS": "labels",
    "markdown_to_html": "markdown",
    "md_escape": "markdown",
    "markdown_to_text": "plaintext",
    "default_templates_dir": "rendering",
    "packaged_templates": "rendering",
    "render": "rendering",
    "render_bytes": "rendering",
    "html_to_pdf": "pdf",
    "render_plan": "rendering",
    "write_documents": "rendering",
}

__all__ = [
    "ALL_KINDS",
    "CATEGORY_LABELS",
    "DOCUMENT_KINDS",
    "FACT_LABELS",
    "FORMATS",
    "LANGS",
    "OUTPUT_FORMATS",
    "PLAN_KIND",
    "PUBLIC_KINDS",
    "DocumentError",
    "MissingElementError",
    "default_templates_dir",
    "html_to_pdf",
    "markdown_to_html",
    "markdown_to_text",
    "md_escape",
    "packaged_templates",
    "render",
    "render_bytes",
    "render_plan",
    "required_elements",
    "template_name",
    "write_documents",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
