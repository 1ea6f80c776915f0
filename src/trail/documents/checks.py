"""The renderer's self-checks: a template regression or a leaking notice fails loudly, never silently.

* Every element of :func:`required_elements` must appear in a heading, a table header or a bold
  label of the output (a value cannot forge one: values are escaped), in Markdown and in HTML.
* Notices to individuals and the public announcement must not carry anything that looks like a
  subject reference (64 hex characters), the incident id, or any string the evidence holds
  under a subject/ref key.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from markdown_it.token import Token

from trail.documents.errors import DocumentError, MissingElementError
from trail.documents.formatting import as_map
from trail.documents.kinds import ALL_KINDS, LANGS, check_choice
from trail.documents.labels import REQUIRED
from trail.documents.markdown import labels

_HEX64: Final = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_HTML_LABEL: Final = re.compile(r"<(h[1-6]|strong|th)(?:\s[^>]*)?>(.*?)</\1>", re.DOTALL)
_TAG: Final = re.compile(r"<[^>]*>")


def required_elements(kind: str, lang: str) -> list[str]:
    """The headings and labels a document of ``kind`` in ``lang`` must contain."""
    check_choice("document kind", kind, ALL_KINDS)
    check_choice("language", lang, LANGS)
    return [pair.pick(lang) for pair in REQUIRED[kind]]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _missing(required: Sequence[str], labels: Sequence[str]) -> list[str]:
    normed = [_norm(label) for label in labels]
    return [r for r in required if not any(_norm(r) in n for n in normed)]


def _html_labels(page: str) -> list[str]:
    return [html.unescape(_TAG.sub(" ", m.group(2))) for m in _HTML_LABEL.finditer(page)]


def check_markdown(kind: str, lang: str, template: str, tokens: Sequence[Token]) -> None:
    """Raise :class:`MissingElementError` unless the parsed Markdown holds every required element."""
    if missing := _missing(required_elements(kind, lang), labels(tokens)):
        raise MissingElementError(kind, lang, "md", template, missing)


def check_html(kind: str, lang: str, template: str, page: str) -> None:
    """Raise :class:`MissingElementError` unless the HTML page holds every required element."""
    if missing := _missing(required_elements(kind, lang), _html_labels(page)):
        raise MissingElementError(kind, lang, "html", template, missing)


def _forbidden_strings(ctx: Mapping[str, Any]) -> set[str]:
    """Strings that must never appear in a notice: the incident id and subject refs in evidence."""
    inc = as_map(ctx.get("incident"))
    found: set[str] = set()
    if isinstance(inc.get("id"), str) and len(inc["id"]) >= 8:
        found.add(inc["id"])

    def walk(node: Any, subjecty: bool) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, subjecty or "subject" in str(k).lower() or "ref" in str(k).lower())
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v, subjecty)
        elif subjecty and isinstance(node, str) and len(node) >= 8:
            found.add(node)

    walk(inc.get("evidence"), False)
    return found


def check_no_identifiers(kind: str, lang: str, output: str, ctx: Mapping[str, Any]) -> None:
    """Refuse a notice that carries a subject reference, the incident id or a ref from the evidence."""
    if _HEX64.search(output):
        raise DocumentError(
            f"{kind} ({lang}) contains what looks like a subject reference (64 hex characters); "
            "notices must not carry identifiers — check the measures and notice texts"
        )
    if any(s in output for s in _forbidden_strings(ctx)):
        raise DocumentError(
            f"{kind} ({lang}) contains the incident id or a subject reference from the evidence; "
            "notices must not carry identifiers — check the measures and notice texts"
        )
