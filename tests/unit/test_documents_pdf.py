"""Documents as PDF: in-process, in both languages, with a Chinese font embedded."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.unit.test_documents import incident_ctx, plan_ctx
from trail.documents import DOCUMENT_KINDS, DocumentError, pdf, render_bytes, write_documents


def _text_and_fonts(data: bytes) -> tuple[str, set[str]]:
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    fonts = set()
    for page in reader.pages:
        for font in (page.get("/Resources") or {}).get("/Font", {}).values():
            fonts.add(str(font.get_object().get("/BaseFont")))
    return text, fonts


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_initial_report_pdf_carries_its_text(lang: str) -> None:
    """The initial report renders to a PDF whose text is the document's, with a CJK font embedded."""
    data = render_bytes("initial_report", incident_ctx(), lang=lang, fmt="pdf")
    assert data.startswith(b"%PDF-")
    text, fonts = _text_and_fonts(data)
    html = render_bytes("initial_report", incident_ctx(), lang=lang, fmt="html").decode("utf-8")
    title = html.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.replace(" ", "")[:8] in text.replace(" ", "").replace("\n", "")
    if lang == "zh":
        assert "个人信息" in text
    assert any(name in font for font in fonts for name in ("WenQuanYi", "Noto", "SourceHan")), fonts


def test_plan_pdf_in_chinese() -> None:
    """The emergency plan (the Xiamen filing document) renders to a Chinese PDF of several pages."""
    data = render_bytes("emergency_plan", plan_ctx(), lang="zh", fmt="pdf")
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 2
    assert "应急预案" in reader.pages[0].extract_text()


def test_write_documents_writes_every_kind_as_pdf(tmp_path: Path) -> None:
    """write_documents writes PDFs beside Markdown and HTML, one per kind and language."""
    files = write_documents(incident_ctx(), tmp_path, DOCUMENT_KINDS, langs=("zh", "en"), fmts=("pdf",))
    assert sorted(p.name for p in files) == sorted(f"{k}.{lg}.pdf" for k in DOCUMENT_KINDS for lg in ("zh", "en"))
    assert all(p.read_bytes().startswith(b"%PDF-") for p in files)


def test_no_chinese_font_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a Chinese font the PDF is refused with what to install, not written with empty boxes."""
    monkeypatch.setattr(pdf, "chinese_font", lambda: None)
    with pytest.raises(DocumentError, match="fonts-wqy-microhei"):
        render_bytes("initial_report", incident_ctx(), lang="zh", fmt="pdf")
