"""Rendering documents: Jinja2 templates → Markdown → HTML, with the self-checks on every render.

Each document kind has one template per language, ``<kind>.<lang>.md.j2``, shipped with this
package in ``templates/`` and read through :mod:`importlib.resources` (so an installed wheel
renders as a source checkout does); ``templates_dir`` points at a directory of one's own
instead (a copy to try changes). Markdown is the source; the HTML is that Markdown converted
(:mod:`trail.documents.markdown`) and wrapped in ``_layout.html.j2`` (autoescaped) as a
standalone, printable page. So the same record drives both formats, and the HTML says exactly
what the Markdown says.

Every ``{{ value }}`` in a Markdown template goes through the environment's ``finalize``, which
formats it (numbers, lists, yes/no, "unknown") and escapes it for Markdown, so a value can
never open a heading, a list, a table cell or an HTML tag.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from trail.documents import checks, markdown, views
from trail.documents.errors import DocumentError
from trail.documents.formatting import Formatter, display
from trail.documents.kinds import (
    ALL_KINDS,
    DOCUMENT_KINDS,
    FORMATS,
    LANGS,
    OUTPUT_FORMATS,
    PLAN_KIND,
    PUBLIC_KINDS,
    check_choice,
    template_name,
)
from trail.documents.pdf import html_to_pdf
from trail.files import FILE_MODE, private_dir

LAYOUT_TEMPLATE: Final = "_layout.html.j2"
_HTML_LANG: Final = {"zh": "zh-CN", "en": "en"}


# --------------------------------------------------------------------------- where templates are
def packaged_templates() -> Traversable:
    """The templates shipped with trail, as an :mod:`importlib.resources` resource."""
    return resources.files(__package__).joinpath("templates")


def default_templates_dir() -> Path:
    """The shipped templates as a directory (where the package is installed as files, as pip does)."""
    root = packaged_templates()
    if not isinstance(root, Path):
        raise DocumentError("the packaged templates are not files on disk here; read them with packaged_templates()")
    return root


class _PackagedTemplates(jinja2.BaseLoader):
    """Templates read from the package through :mod:`importlib.resources` (a wheel, a zip, a tree)."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str | None, Callable[[], bool]]:
        node = self.root.joinpath(template)
        if "/" in template or "\\" in template or not node.is_file():
            raise jinja2.TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), None, lambda: True


def _loader(templates_dir: str | None) -> jinja2.BaseLoader:
    if templates_dir is None:
        return _PackagedTemplates(packaged_templates())
    return jinja2.FileSystemLoader(templates_dir)


# --------------------------------------------------------------------------- environments
@jinja2.pass_context
def _md_finalize(context: jinja2.runtime.Context, value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        return str(value)  # StrictUndefined raises: a template names something the view lacks
    lang = context.get("lang", "en")
    unknown = context.get("unknown_text", "unknown")
    return markdown.md_escape(display(value, str(lang), str(unknown)))


@functools.lru_cache(maxsize=16)
def _md_env(templates_dir: str | None) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=_loader(templates_dir),
        # Markdown, not HTML: finalize escapes every value for Markdown, and the HTML is made from
        # it by markdown_to_html, which escapes all text.
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_md_finalize,
    )


@functools.lru_cache(maxsize=16)
def _html_env(templates_dir: str | None) -> SandboxedEnvironment:
    return SandboxedEnvironment(loader=_loader(templates_dir), autoescape=True, undefined=jinja2.StrictUndefined)


def _render_template(env: SandboxedEnvironment, name: str, where: str, values: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(values)
    except jinja2.TemplateNotFound:
        raise DocumentError(f"template {name} not found in {where}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise DocumentError(f"template {exc.name or name} line {exc.lineno}: syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise DocumentError(f"template {name} uses a name the renderer does not provide: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise DocumentError(f"template {name} failed: {type(exc).__name__}") from None


def _unknown_text(kind: str, f: Formatter) -> str:
    return f.phrase("still_investigated" if kind in PUBLIC_KINDS else "to_be_supplemented")


# --------------------------------------------------------------------------- API
def render(kind: str, ctx: Mapping[str, Any], *, lang: str, fmt: str, templates_dir: Path | None = None) -> str:
    """Render one document of ``kind`` from ``ctx`` in ``lang`` (zh|en) as ``fmt`` (md|html).

    ``kind`` is one of :data:`DOCUMENT_KINDS` (from the incident context) or :data:`PLAN_KIND`
    (from the playbook context). Raises :class:`DocumentError` for unknown choices or a broken
    template, and :class:`MissingElementError` when the output lacks a required element.
    """
    check_choice("document kind", kind, ALL_KINDS)
    check_choice("language", lang, LANGS)
    check_choice("format", fmt, FORMATS)
    if not isinstance(ctx, Mapping):
        raise DocumentError(f"the context must be a mapping, got {type(ctx).__name__}")
    if kind == PLAN_KIND and not isinstance(ctx.get("playbook"), Mapping):
        raise DocumentError("emergency_plan renders from the playbook context: ctx['playbook'] is missing")
    if kind != PLAN_KIND and not isinstance(ctx.get("incident"), Mapping):
        raise DocumentError(f"{kind} renders from the incident context: ctx['incident'] is missing")
    tdir = str(templates_dir.resolve()) if templates_dir is not None else None
    where = tdir or "trail's packaged templates"
    f = Formatter.for_zone(lang, ctx.get("timezone"))
    if kind == PLAN_KIND:
        view = views.plan_view(ctx, f)
    elif kind in PUBLIC_KINDS:
        view = views.notice_view(ctx, f)
    else:
        view = views.incident_view(ctx, f)
    name = template_name(kind, lang)
    values = {"v": view, "lang": lang, "kind": kind, "unknown_text": _unknown_text(kind, f)}
    md = _render_template(_md_env(tdir), name, where, values)
    tokens = markdown.parse(md)
    checks.check_markdown(kind, lang, name, tokens)
    if kind in PUBLIC_KINDS:
        checks.check_no_identifiers(kind, lang, md, ctx)
    if fmt == "md":
        return md
    body = Markup(markdown.to_html(tokens))  # noqa: S704 -- the HTML escapes all text; only its own tags remain
    page = _render_template(
        _html_env(tdir),
        LAYOUT_TEMPLATE,
        where,
        {"title": markdown.title(tokens) or kind, "html_lang": _HTML_LANG[lang], "body": body},
    )
    checks.check_html(kind, lang, LAYOUT_TEMPLATE, page)
    if kind in PUBLIC_KINDS:
        checks.check_no_identifiers(kind, lang, page, ctx)
    return page


def render_bytes(kind: str, ctx: Mapping[str, Any], *, lang: str, fmt: str, templates_dir: Path | None = None) -> bytes:
    """One document as the bytes of a file: UTF-8 Markdown or HTML, or a PDF."""
    check_choice("format", fmt, OUTPUT_FORMATS)
    if fmt == "pdf":
        return html_to_pdf(render(kind, ctx, lang=lang, fmt="html", templates_dir=templates_dir), lang=lang)
    return render(kind, ctx, lang=lang, fmt=fmt, templates_dir=templates_dir).encode("utf-8")


def render_plan(plan_ctx: Mapping[str, Any], *, lang: str, fmt: str, templates_dir: Path | None = None) -> str:
    """The graded emergency plan as a filing document (Xiamen Art. 8(4))."""
    return render(PLAN_KIND, plan_ctx, lang=lang, fmt=fmt, templates_dir=templates_dir)


def write_documents(
    ctx: Mapping[str, Any],
    out_dir: Path,
    kinds: Iterable[str] = DOCUMENT_KINDS,
    langs: Iterable[str] = LANGS,
    fmts: Iterable[str] = FORMATS,
    *,
    templates_dir: Path | None = None,
) -> list[Path]:
    """Render every kind × language × format (md, html, pdf) and write ``out_dir/<kind>.<lang>.<fmt>``.

    Everything is rendered before anything is written, so a failing document leaves no
    partial set behind; each file is written to a temporary file and moved into place with
    :func:`os.replace`, so a reader never sees half a document.
    """
    kinds, langs, fmts = list(kinds), list(langs), list(fmts)
    for k in kinds:
        check_choice("document kind", k, ALL_KINDS)
    for lg in langs:
        check_choice("language", lg, LANGS)
    for ft in fmts:
        check_choice("format", ft, OUTPUT_FORMATS)
    rendered = [
        (f"{k}.{lg}.{ft}", render_bytes(k, ctx, lang=lg, fmt=ft, templates_dir=templates_dir))
        for k in kinds
        for lg in langs
        for ft in fmts
    ]
    private_dir(out_dir)
    written: list[Path] = []
    for filename, text in rendered:
        target = out_dir / filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".tmp", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), FILE_MODE)
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written
