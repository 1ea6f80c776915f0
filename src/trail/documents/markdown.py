"""Markdown for the documents: escaping values into it, and HTML and labels out of it.

Templates write Markdown; every value put into a template goes through :func:`md_escape`, so
a value can never open a heading, a list, a table cell, a link or an HTML tag. The Markdown is
parsed by markdown-it-py (CommonMark with pipe tables) with raw HTML turned off: whatever HTML
a template or a value holds is shown as text. The one tag the documents use, ``<br>`` (a line
break inside a line or a table cell, which is what :func:`md_escape` makes of a value's line
breaks), is parsed as a hard break.

The HTML keeps lists and table rows compact (``<ul><li>a</li></ul>``, ``<tr><td>…</td></tr>``)
so a row reads as one line of the page's source.

:func:`labels` returns the texts of headings, table headers and bold spans: where
the renderer's self-check looks for each document's required elements.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

# --------------------------------------------------------------------------- escaping values
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>|#~&])")
_LINE_BREAKS: Final = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_ORDERED_START: Final = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")


def md_escape(text: str) -> str:
    """Escape a value for use anywhere in a Markdown line: inline text, list item or table cell.

    Markdown-significant characters are backslash-escaped, a leading list or heading marker is
    neutralised, control characters are dropped, and line breaks become ``<br>``, so the value
    always stays inside the line (and the table cell) it was put in.
    """
    out: list[str] = []
    for raw in _LINE_BREAKS.split(text):
        line = _CONTROL.sub("", raw).replace("\t", " ").strip()
        line = _MD_SPECIAL.sub(r"\\\1", line)
        line = "\\" + line if line[:1] in ("-", "+", "=") else _ORDERED_START.sub(r"\1\\\2", line)
        out.append(line)
    return "<br>".join(out)


# --------------------------------------------------------------------------- the parser
_BR: Final = "<br>"


def _br_tag(state: StateInline, silent: bool) -> bool:
    """``<br>`` as a hard break (raw HTML is otherwise off, so it would show as text)."""
    if not state.src.startswith(_BR, state.pos):
        return False
    if not silent:
        state.push("hardbreak", "br", 0)
    state.pos += len(_BR)
    return True


#: Tokens rendered as bare tags (no line break after them), so lists and table rows stay compact.
_COMPACT: Final = frozenset(
    f"{name}_{side}"
    for name in ("bullet_list", "ordered_list", "list_item", "table", "thead", "tbody", "tr", "th", "td")
    for side in ("open", "close")
)
#: After these, a line break: the table's frame and each row on a line of its own.
_LINE_AFTER: Final = frozenset({"table_open", "thead_close", "tbody_open", "tbody_close", "table_close"})


class _Renderer(RendererHTML):
    """markdown-it's HTML, with lists and table rows compact and ``<br>`` without a line break."""

    def renderToken(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        """One tag (markdown-it's name for it): bare for lists and tables, as markdown-it does for the rest."""
        token = tokens[idx]
        if token.type not in _COMPACT:
            return super().renderToken(tokens, idx, options, env)
        tag = f"<{token.tag}{self.renderAttrs(token)}>" if token.nesting == 1 else f"</{token.tag}>"
        following = tokens[idx + 1].type if idx + 1 < len(tokens) else ""
        if token.type in _LINE_AFTER or (token.type == "tr_close" and following != "thead_close"):
            return tag + "\n"
        if token.type in ("bullet_list_close", "ordered_list_close") and token.level == 0:
            return tag + "\n"
        return tag

    def hardbreak(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return _BR


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "xhtmlOut": False}, renderer_cls=_Renderer)
    md.enable("table")
    md.inline.ruler.before("autolink", "br_tag", _br_tag)
    return md


MD: Final = _parser()


def parse(md: str) -> list[Token]:
    """The token stream of a Markdown text (the documents' dialect)."""
    return MD.parse(md)


def to_html(tokens: Sequence[Token]) -> str:
    """HTML for a parsed Markdown text (see :func:`parse`)."""
    return str(MD.renderer.render(tokens, MD.options, {}))


def markdown_to_html(md: str) -> str:
    """HTML for a Markdown text; all text is HTML-escaped and no raw HTML passes through."""
    return to_html(parse(md))


# --------------------------------------------------------------------------- labels
def inline_text(children: Sequence[Token] | None) -> str:
    """The plain text of inline tokens; line breaks read as spaces."""
    parts: list[str] = []
    for t in children or ():
        if t.type in ("text", "code_inline"):
            parts.append(t.content)
        elif t.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif t.children:
            parts.append(inline_text(t.children))
    return "".join(parts)


def _strong_spans(children: Sequence[Token]) -> list[str]:
    spans: list[str] = []
    depth = 0
    span: list[Token] = []
    for t in children:
        if t.type == "strong_open":
            depth += 1
        elif t.type == "strong_close":
            depth -= 1
            if depth == 0:
                spans.append(inline_text(span))
                span = []
        elif depth:
            span.append(t)
    return spans


def labels(tokens: Sequence[Token]) -> list[str]:
    """Texts of the headings, table headers and bold spans of a parsed Markdown text (where labels live).

    A value cannot forge any of these: values are escaped and kept on one line.
    """
    labels: list[str] = []
    for i, t in enumerate(tokens):
        if t.type != "inline":
            continue
        if i and tokens[i - 1].type in ("heading_open", "th_open"):
            labels.append(inline_text(t.children))
        labels += _strong_spans(t.children or [])
    return labels


def title(tokens: Sequence[Token]) -> str | None:
    """The text of the first level-1 heading of a parsed Markdown text, if any."""
    for i, t in enumerate(tokens[:-1]):
        if t.type == "heading_open" and t.tag == "h1":
            return inline_text(tokens[i + 1].children)
    return None
