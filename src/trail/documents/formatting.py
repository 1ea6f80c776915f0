"""How values read in a document: dates, clocks, counts and lists in the document's language.

A :class:`Formatter` is made for one language and one time zone (the organisation's, passed in
the context as an IANA name). Times are shown as local time with the zone's name; a value that
cannot be read is shown as it is, never dropped. The helpers at the top read the plain-dict
contexts defensively: a missing or malformed part reads as empty, not as an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trail.documents.errors import DocumentError
from trail.documents.labels import CATEGORY_LABELS, GRADE_NAMES, MONTHS_EN, PHRASES, Pair


# --------------------------------------------------------------------------- reading contexts
def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` as a list if it is a list or tuple, else an empty list."""
    return list(value) if isinstance(value, list | tuple) else []


def blank(value: Any) -> bool:
    """True for None, blank text and empty collections."""
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, list | tuple | dict) and not value)
    )


def first(*values: Any) -> Any:
    """The first value that is not blank, else None."""
    for v in values:
        if not blank(v):
            return v
    return None


def parse_ts(value: Any) -> datetime | None:
    """An RFC 3339 text as an aware datetime (UTC when it names no zone); None when it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- the formatter
@dataclass(frozen=True)
class Formatter:
    """Display helpers for one language and time zone."""

    lang: str
    tz: ZoneInfo
    tz_name: str

    @classmethod
    def for_zone(cls, lang: str, zone: Any) -> Formatter:
        """A formatter for ``lang`` in the IANA zone ``zone`` (UTC when empty)."""
        name = zone or "UTC"
        if not isinstance(name, str):
            raise DocumentError("timezone: must be an IANA zone name such as Asia/Shanghai")
        try:
            tz = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise DocumentError(f"timezone: {name[:40]!r} is not a known IANA zone (e.g. Asia/Shanghai)") from None
        return cls(lang=lang, tz=tz, tz_name=name)

    @property
    def zh(self) -> bool:
        return self.lang == "zh"

    def pick(self, pair: Pair | tuple[str, str]) -> str:
        return pair[0] if self.zh else pair[1]

    def either(self, zh: Any, en: Any) -> Any:
        """The value given in this language, else the one given in the other."""
        return (zh or en) if self.zh else (en or zh)

    def phrase(self, key: str, **values: Any) -> str:
        """A phrase of ``labels.yaml`` in this language, with ``values`` filled in."""
        text = self.pick(PHRASES[key])
        return text.format(**values) if values else text

    def label(self, table: Mapping[str, Pair], code: Any) -> str | None:
        """The label of ``code`` in ``table``; an unknown code is shown as it is."""
        if blank(code):
            return None
        key = str(code)
        return self.pick(table[key]) if key in table else key

    def ts(self, value: Any) -> str | None:
        """An RFC 3339 time as local time in the context's zone, with the zone's name."""
        dt = parse_ts(value)
        if dt is None:
            return None if blank(value) else str(value)
        return f"{dt.astimezone(self.tz):%Y-%m-%d %H:%M} {self.tz_name}"

    def day(self, value: Any) -> str | None:
        """A date for readers: 2026年11月22日 / 22 November 2026."""
        dt = parse_ts(value)
        if dt is None:
            return None if blank(value) else str(value)
        d = dt.astimezone(self.tz)
        return self.phrase("date", year=d.year, month=d.month, month_name=MONTHS_EN[d.month - 1], day=d.day)

    def offset_note(self, at: Any) -> str:
        """Which zone the document's times are in, with its offset at ``at``."""
        dt = parse_ts(at) or datetime.now(UTC)
        off = dt.astimezone(self.tz).strftime("%z")
        off = f"UTC{off[:3]}:{off[3:]}" if off else "UTC"
        return self.phrase("offset_note", zone=self.tz_name, offset=off)

    def hours(self, hours: Any) -> str:
        """A clock length: "4 小时" / "4 h"; whole days from 48 h on."""
        if not isinstance(hours, int | float) or isinstance(hours, bool):
            return self.phrase("immediately")
        h = float(hours)
        if h >= 48 and h % 24 == 0:
            return self.phrase("days", n=int(h // 24))
        return self.phrase("hours", n=f"{int(h)}" if h.is_integer() else f"{h:g}")

    def grade(self, level: Any, name_zh: Any = None, name_en: Any = None) -> str | None:
        """The grade as "III级 较大 / Level III – Relatively serious" (the same in both languages)."""
        if blank(level):
            return None
        lv = str(level)
        zh_name, en_name = GRADE_NAMES.get(lv, ("", ""))
        zh_name = str(name_zh) if not blank(name_zh) else zh_name
        en_name = str(name_en) if not blank(name_en) else en_name
        return f"{lv}级 {zh_name} / Level {lv} – {en_name}".strip()

    def categories(self, codes: Any) -> list[str] | None:
        """Data category codes as words."""
        if blank(codes):
            return None
        items = codes if isinstance(codes, list | tuple) else [codes]
        return [self.label(CATEGORY_LABELS, c) or "" for c in items]

    def count_approx(self, n: Any) -> str | None:
        """A rounded count for the public: "约 120 万人" / "about 1.2 million people"."""
        if not isinstance(n, int | float) or isinstance(n, bool) or n < 0:
            return None
        n = int(n)
        if n < 100:
            return f"{n} 人" if self.zh else f"{n} people"
        factor = 10 ** (len(str(n)) - 2)
        r = round(n / factor) * factor
        if self.zh:
            if r >= 100_000_000:
                return f"约 {r / 100_000_000:g} 亿人"
            if r >= 10_000:
                return f"约 {r / 10_000:g} 万人"
            return f"约 {r} 人"
        if r >= 1_000_000:
            return f"about {r / 1_000_000:g} million people"
        return f"about {r:,} people"


def display(value: Any, lang: str, unknown: str) -> str:
    """How a value reads in a document of ``lang`` (before Markdown escaping); None reads as ``unknown``."""
    if value is None:
        return unknown
    if isinstance(value, bool):
        return PHRASES["answer_yes" if value else "answer_no"].pick(lang)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() else f"{value:,}"
    if isinstance(value, str):
        return value if value.strip() else unknown
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(value, list | tuple | set | frozenset):
        if not value:
            return PHRASES["none"].pick(lang)
        return PHRASES["list_separator"].pick(lang).join(display(v, lang, unknown) for v in value)
    return str(value)
