"""The reports as documents: Jinja2 templates (``templates/``) → Markdown → HTML → PDF.

The Markdown is the source; every value put into a template is escaped for Markdown by the
environment's ``finalize`` (so a purpose or a recipient's name can never open a heading, a
table cell or a tag); the HTML is that Markdown through trail.documents' converter, in its
printable layout; the PDF is that HTML through WeasyPrint with an installed Chinese font.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Final

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from trail.documents import markdown
from trail.documents.pdf import html_to_pdf
from trail.errors import ValidationError
from trail.rights import labels

KINDS: Final = ("subject_report", "compliance_report")
LANGS: Final = ("zh", "en")
FORMATS: Final = ("md", "html", "pdf", "json")
_HTML_LANG: Final = {"zh": "zh-CN", "en": "en"}


def _finalize(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✓" if value else "—"
    if isinstance(value, (list, tuple)):
        return markdown.md_escape(", ".join(str(v) for v in value)) or "—"
    if isinstance(value, Markup):
        return str(value)
    return markdown.md_escape(str(value))


@functools.cache
def _env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(
            [jinja2.PackageLoader("trail.rights", "templates"), jinja2.PackageLoader("trail.documents", "templates")]
        ),
        autoescape=False,  # Markdown: finalize escapes every value for it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    return env


@functools.cache
def _html_env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.PackageLoader("trail.documents", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )


def _filters(lang: str) -> dict[str, Any]:
    def actor(a: Mapping[str, Any]) -> str:
        text = labels.label(labels.ACTOR_KINDS, str(a.get("kind", "")), lang)
        if a.get("id"):
            text += f" {a['id']}"
        if a.get("role"):
            text += f" ({a['role']})"
        return text

    def recipient(r: Mapping[str, Any] | None) -> str:
        if not r:
            return ""
        parts = [labels.label(labels.RECIPIENT_KINDS, str(r.get("kind", "")), lang)]
        parts += [str(r[k]) for k in ("name", "region") if r.get(k)]
        return " ".join(parts)

    return {
        "action": lambda c: labels.label(labels.ACTIONS, str(c), lang),
        "basis": lambda c: labels.label(labels.LEGAL_BASES, str(c), lang) if c else "",
        "cats": lambda cs: [labels.category(str(c), lang) for c in cs or []],
        "rkind": lambda c: labels.label(labels.RECIPIENT_KINDS, str(c), lang),
        "actor": actor,
        "recipient": recipient,
        "when": lambda t: (str(t)[:19].replace("T", " ") + " UTC") if t else None,
        "pretty": lambda obj: json.dumps(obj, ensure_ascii=False, sort_keys=True),
        "code": code_block,
        "cite": lambda arts: [f"{a['source']} {a['article']} ({a['status']})" for a in arts or []],
    }


def code_block(text: Any) -> Markup:
    """A query as a fenced code block (shown verbatim; backticks and line breaks cannot end it)."""
    body = " ".join(str(text or "").replace("`", "'").split())
    return Markup(f"\n````sql\n{body}\n````\n")  # noqa: S704 -- Markdown source, not HTML; the converter escapes it


def check_choices(kind: str, lang: str, fmt: str) -> None:
    if kind not in KINDS:
        raise ValidationError("kind", f"one of {', '.join(KINDS)}")
    if lang not in LANGS:
        raise ValidationError("lang", "zh or en")
    if fmt not in FORMATS:
        raise ValidationError("format", "md, html, pdf or json")


def render_markdown(kind: str, report: Mapping[str, Any], lang: str) -> str:
    check_choices(kind, lang, "md")
    env = _env()
    template = env.get_template(f"{kind}.{lang}.md.j2")
    return template.render({"r": report, "lang": lang, **_filters(lang)})


def render_report(kind: str, report: Mapping[str, Any], *, lang: str, fmt: str) -> bytes:
    """One report as the bytes of a file in ``fmt`` (md, html, pdf, json)."""
    check_choices(kind, lang, fmt)
    if fmt == "json":
        return (json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")
    md = render_markdown(kind, report, lang)
    if fmt == "md":
        return md.encode("utf-8")
    tokens = markdown.parse(md)
    body = Markup(markdown.to_html(tokens))  # noqa: S704 -- the converter escapes all text; only its own tags remain
    page = (
        _html_env()
        .get_template("_layout.html.j2")
        .render({"title": markdown.title(tokens) or kind, "html_lang": _HTML_LANG[lang], "body": body})
    )
    if fmt == "html":
        return page.encode("utf-8")
    return html_to_pdf(page, lang=lang)
