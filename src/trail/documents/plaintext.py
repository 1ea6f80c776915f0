"""Markdown as plain text, for the text part of e-mails (and anywhere else marks would show).

The text is what a reader of the rendered page sees, laid out with plain characters: no ``#``,
no ``**``, no backslash escapes, no entities. Headings of level 1 and 2 are underlined with
``=`` and ``-``; list items keep a ``-`` or their number, nested items are indented; a table's
columns are aligned (Chinese characters count two columns), and a table too wide for the line
is written one row after the other as ``header: value`` lines; a link shows its address in
brackets after its text; a block quote is indented. Paragraphs are not re-wrapped.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from markdown_it.tree import SyntaxTreeNode

from trail.documents.markdown import parse

#: Columns of a line: tables wider than this are written row by row.
WIDTH: Final = 78
_INDENT: Final = "    "


def markdown_to_text(md: str, *, width: int = WIDTH) -> str:
    """Plain text for a Markdown text (see the module docstring for the layout)."""
    lines = _blocks(SyntaxTreeNode(parse(md)).children, width, tight=False)
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


def display_width(text: str) -> int:
    """Columns ``text`` takes in a fixed-width font: wide (CJK) characters count two."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text
    )


def _blocks(nodes: list[SyntaxTreeNode], width: int, *, tight: bool) -> list[str]:
    out: list[str] = []
    for node in nodes:
        lines = _block(node, width)
        if not lines:
            continue
        if out and not tight:
            out.append("")
        out.extend(lines)
    return out


def _block(node: SyntaxTreeNode, width: int) -> list[str]:
    kind = node.type
    if kind == "heading":
        lines = _inline(node.children[0]).split("\n") if node.children else [""]
        rule = {"h1": "=", "h2": "-"}.get(node.tag)
        if rule:
            lines.append(rule * min(width, max(display_width(line) for line in lines)))
        return lines
    if kind == "paragraph":
        return _inline(node.children[0]).split("\n") if node.children else []
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, width)
    if kind == "blockquote":
        return [_INDENT + line if line else "" for line in _blocks(node.children, width, tight=False)]
    if kind == "hr":
        return ["-" * min(width, 40)]
    if kind == "table":
        return _table(node, width)
    if kind in ("code_block", "fence", "html_block"):
        return [_INDENT + line for line in node.content.rstrip("\n").split("\n")]
    return _blocks(node.children, width, tight=False)


def _list(node: SyntaxTreeNode, width: int) -> list[str]:
    ordered = node.type == "ordered_list"
    start = node.attrs.get("start", 1)
    number = int(start) if isinstance(start, int | str) else 1
    # A tight list (no blank lines between items in the source) stays tight.
    tight = all(p.hidden for item in node.children for p in item.children if p.type == "paragraph")
    out: list[str] = []
    for i, item in enumerate(node.children):
        marker = f"{number + i}. " if ordered else "- "
        body = _blocks(item.children, width, tight=tight) or [""]
        if out and not tight:
            out.append("")
        out.append(marker + body[0])
        out += [" " * len(marker) + line if line else "" for line in body[1:]]
    return out


def _inline(node: SyntaxTreeNode) -> str:
    parts: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "link":
            text = _inline(child)
            href = str(child.attrs.get("href", ""))
            parts.append(text if not href or href in (text, f"mailto:{text}") else f"{text} ({href})")
        else:  # strong, em, image (its alt text)
            parts.append(_inline(child))
    return "".join(parts)


def _table(node: SyntaxTreeNode, width: int) -> list[str]:
    rows = [
        [" ".join(_inline(cell.children[0]).split("\n")) if cell.children else "" for cell in tr.children]
        for section in node.children
        for tr in section.children
    ]
    if not rows:
        return []
    columns = max(len(r) for r in rows)
    rows = [r + [""] * (columns - len(r)) for r in rows]
    widths = [max(display_width(r[i]) for r in rows) for i in range(columns)]
    if sum(widths) + 2 * (columns - 1) <= width:

        def line(cells: list[str]) -> str:
            return "  ".join(c + " " * (w - display_width(c)) for c, w in zip(cells, widths, strict=True))

        return [line(rows[0]), "  ".join("-" * w for w in widths), *(line(r) for r in rows[1:])]
    header, out = rows[0], list[str]()
    for r in rows[1:]:
        if out:
            out.append("")
        out += [f"{h}: {c}" if h else c for h, c in zip(header, r, strict=True) if h or c]
    return out
