"""Markdown as plain text: the e-mails' text part reads as text, with no Markdown marks left."""

from __future__ import annotations

import itertools
import re

import pytest

from tests.unit.test_documents import _hostile_ctx, incident_ctx
from trail.documents import LANGS, md_escape, render, required_elements
from trail.documents.plaintext import markdown_to_text

#: A backslash escape of ASCII punctuation, as Markdown writes one.
ESCAPE = re.compile(r"\\[!-/:-@\[-`{-~]")


def test_headings_lose_their_marks_and_are_underlined() -> None:
    """# and ## headings become their text, underlined with = and -; deeper ones plain."""
    text = markdown_to_text("# Notice about you\n\n## What happened\n\n### Detail\n\nA paragraph.\n")
    assert text.splitlines() == [
        "Notice about you",
        "================",
        "",
        "What happened",
        "-------------",
        "",
        "Detail",
        "",
        "A paragraph.",
    ]


def test_escaped_values_read_as_written() -> None:
    """A value escaped for Markdown comes back as the value itself: no backslashes, no entities."""
    value = "a*b_c [x](y) #1 <tag> & 1. x | ~z~ `q`"
    text = markdown_to_text(f"**Cause:** {md_escape(value)}\n")
    assert text == f"Cause: {value}\n"


def test_lists_tables_and_links_read_well() -> None:
    """Lists keep their markers and nesting, tables align their columns, links show their address."""
    md = "\n".join(
        [
            "- one",
            "  - one and a half",
            "- two<br>second line",
            "",
            "1. first",
            "2. second",
            "",
            "| 项目 | value |",
            "| --- | --- |",
            "| 受影响人数 | 1,200,000 |",
            "",
            "See [the notice page](https://bank.example/notice).",
        ]
    )
    assert markdown_to_text(md).splitlines() == [
        "- one",
        "  - one and a half",
        "- two",
        "  second line",
        "",
        "1. first",
        "2. second",
        "",
        "项目        value",
        "----------  ---------",
        "受影响人数  1,200,000",
        "",
        "See the notice page (https://bank.example/notice).",
    ]


def test_a_table_too_wide_for_a_line_is_written_row_by_row() -> None:
    """Rows of a table wider than the line become "header: value" lines, one block per row."""
    wide = "x" * 60
    md = f"| Recipient | Basis |\n| --- | --- |\n| {wide} | {wide} |\n| a | b |\n"
    assert markdown_to_text(md).splitlines() == [f"Recipient: {wide}", f"Basis: {wide}", "", "Recipient: a", "Basis: b"]


@pytest.mark.parametrize("lang", LANGS)
def test_the_notice_as_text_has_no_markdown_marks(lang: str) -> None:
    """The individual notice's text part: headings as lines of their own, no #, **, escapes or <br>."""
    text = markdown_to_text(render("individual_notice", incident_ctx(), lang=lang, fmt="md"))
    lines = text.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("#")]
    assert "**" not in text and "<br>" not in text and "&amp;" not in text
    assert not ESCAPE.search(text)
    for element in required_elements("individual_notice", lang)[:-1]:  # the last is a bold label in a list item
        underlined = [line for line, under in itertools.pairwise(lines) if set(under) in ({"="}, {"-"})]
        assert any(line.endswith(element) for line in underlined), element  # a heading of its own
    first_advice = {"en": "- Be wary of calls claiming to be from the bank.", "zh": "- 警惕自称本行工作人员的来电。"}
    assert first_advice[lang] in lines


def test_hostile_values_come_through_as_plain_text() -> None:
    """Markup in a measure or in advice is shown as the characters it is, on its own lines."""
    text = markdown_to_text(render("individual_notice", _hostile_ctx(), lang="en", fmt="md"))
    assert "- blocked | host" in text
    assert "  === <b>x</b>" in text
    assert "- <script>x</script>" in text
    assert not ESCAPE.search(text)
