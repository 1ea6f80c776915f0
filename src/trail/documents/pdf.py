"""Documents as PDF, rendered in-process from their HTML (WeasyPrint).

The regulator and the people affected get documents, not Markdown. The HTML layout already
sets A4 pages and print styles; this adds the fonts: the Chinese font the install provides
(``scripts/system-packages.sh`` installs WenQuanYi Micro Hei on Debian; Noto Sans CJK or
Source Han Sans are used when present), so a fresh install renders Chinese text, not boxes.
A PDF whose text cannot be shaped with a Chinese font is refused rather than written with
missing glyphs.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import Any

from trail.errors import DocumentError

#: Font families tried in order, for both languages (the Latin glyphs of these fonts are fine too).
FONT_FAMILIES = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei")

_PRINT_CSS = (
    "body { font-family: %s, sans-serif; max-width: none; margin: 0; padding: 0; }"
    " @page { size: A4; margin: 18mm 16mm; @bottom-right { content: counter(page) ' / ' counter(pages);"
    " font-size: 8pt; color: #666; } }"
)


@functools.cache
def chinese_font() -> str | None:
    """The first of :data:`FONT_FAMILIES` that fontconfig knows on this machine, else None."""
    if shutil.which("fc-list") is None:
        return None
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    known = {name.strip() for line in out.splitlines() for name in line.split(",")}
    return next((f for f in FONT_FAMILIES if f in known), None)


def html_to_pdf(html: str, *, lang: str) -> bytes:
    """The PDF of one of trail's HTML documents. Raises :class:`DocumentError` when no Chinese
    font is installed (say which to install) or rendering fails."""
    try:
        import weasyprint  # heavy (Pango, cairo bindings): loaded only when a PDF is asked for
    except (ImportError, OSError) as exc:
        raise DocumentError(f"PDF output needs WeasyPrint and Pango ({exc}); install trail[server]") from None
    font = chinese_font()
    if font is None:
        raise DocumentError(
            "PDF output needs a Chinese font: install fonts-wqy-microhei or fonts-noto-cjk "
            "(scripts/system-packages.sh does it on Debian)"
        )
    families = ", ".join(f'"{f}"' for f in (font, *[x for x in FONT_FAMILIES if x != font]))
    try:
        doc: Any = weasyprint.HTML(string=html)
        pdf: bytes = doc.write_pdf(stylesheets=[weasyprint.CSS(string=_PRINT_CSS % families)])
    except Exception as exc:  # noqa: BLE001  # any rendering failure becomes one clear error
        raise DocumentError(f"the PDF ({lang}) could not be rendered: {type(exc).__name__}") from None
    return pdf
