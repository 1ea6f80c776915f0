"""The documents' labels in Chinese and English, as data: ``labels.yaml`` beside this module.

The file is read through :mod:`importlib.resources` (so it ships in a wheel) and checked when
loaded: every entry must be ``{zh: ..., en: ...}``. Each table maps a code the record holds
(a fact name, a data category, a status) to its :class:`Pair` of labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any, Final, NamedTuple

import yaml

from trail.documents.errors import DocumentError
from trail.documents.kinds import ALL_KINDS

_FILE: Final = "labels.yaml"


class Pair(NamedTuple):
    """One label in both languages; ``pair[0]`` is Chinese, ``pair[1]`` English."""

    zh: str
    en: str

    def pick(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


def _load() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(_FILE).read_text(encoding="utf-8")
    # libyaml's loader where PyYAML has it: the pure-Python one took a tenth of every command's start
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506  # a safe loader
    if not isinstance(data, dict):
        raise DocumentError(f"{_FILE}: expected a mapping of tables")
    return data


def _pair(value: Any, where: str) -> Pair:
    if not isinstance(value, Mapping) or set(value) != {"zh", "en"}:
        raise DocumentError(f"{_FILE}: {where}: expected {{zh: ..., en: ...}}")
    zh, en = value["zh"], value["en"]
    if not isinstance(zh, str) or not isinstance(en, str):
        raise DocumentError(f"{_FILE}: {where}: zh and en must be text")
    return Pair(zh, en)


def _table(data: Mapping[str, Any], name: str) -> dict[str, Pair]:
    table = data.get(name)
    if not isinstance(table, Mapping):
        raise DocumentError(f"{_FILE}: {name}: expected a mapping of code to {{zh, en}}")
    return {str(code): _pair(value, f"{name}.{code}") for code, value in table.items()}


class OperatorClass(NamedTuple):
    """An organisation type's reporting line (CAC 2025 measures Art. 4)."""

    label: Pair
    recipient: Pair
    hours: int


def _operator_classes(data: Mapping[str, Any]) -> dict[str, OperatorClass]:
    out: dict[str, OperatorClass] = {}
    for code, entry in dict(data.get("operator_class") or {}).items():
        where = f"operator_class.{code}"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("hours"), int):
            raise DocumentError(f"{_FILE}: {where}: expected label, recipient and hours (a whole number)")
        label = _pair(entry.get("label"), f"{where}.label")
        out[str(code)] = OperatorClass(label, _pair(entry.get("recipient"), f"{where}.recipient"), entry["hours"])
    return out


def _required(data: Mapping[str, Any]) -> dict[str, tuple[Pair, ...]]:
    raw = data.get("required")
    if not isinstance(raw, Mapping):
        raise DocumentError(f"{_FILE}: required: expected a mapping of document kind to labels")
    if missing := [kind for kind in ALL_KINDS if kind not in raw]:
        raise DocumentError(f"{_FILE}: required: no entry for {', '.join(missing)}")
    return {
        str(kind): tuple(_pair(p, f"required.{kind}[{i}]") for i, p in enumerate(pairs or []))
        for kind, pairs in raw.items()
    }


def _months(data: Mapping[str, Any]) -> tuple[str, ...]:
    months = (data.get("month_names") or {}).get("en")
    if not isinstance(months, list) or len(months) != 12 or not all(isinstance(m, str) for m in months):
        raise DocumentError(f"{_FILE}: month_names.en: expected the twelve month names")
    return tuple(months)


_DATA: Final = _load()

#: Headings and labels each document kind must contain (the renderer's self-check).
REQUIRED: Final = _required(_DATA)
#: Facts and derived items; unknown items are listed with these labels.
FACT_LABELS: Final = _table(_DATA, "facts")
#: Data categories of the audit event model (``trail.events.model.DATA_CATEGORIES``).
CATEGORY_LABELS: Final = _table(_DATA, "categories")
JURISDICTIONS: Final = _table(_DATA, "jurisdictions")
SECTORS: Final = _table(_DATA, "sectors")
INCIDENT_STATUS: Final = _table(_DATA, "incident_status")
OBLIGATION_STATUS: Final = _table(_DATA, "obligation_status")
OBLIGATION_STATE: Final = _table(_DATA, "obligation_state")
STEP_STATUS: Final = _table(_DATA, "step_status")
SOURCES: Final = _table(_DATA, "sources")
REPORT_KINDS: Final = _table(_DATA, "report_kinds")
COLOURS: Final = _table(_DATA, "colours")
APPLIES_TO: Final = _table(_DATA, "applies_to")
UNITS: Final = _table(_DATA, "units")
INCIDENT_TYPES: Final = _table(_DATA, "incident_types")
GRADE_NAMES: Final = _table(_DATA, "grade_names")
OPERATOR_CLASS: Final = _operator_classes(_DATA)
#: Words and sentence patterns (``{name}`` placeholders) the views and the formatter use.
PHRASES: Final = _table(_DATA, "phrases")
MONTHS_EN: Final = _months(_DATA)
