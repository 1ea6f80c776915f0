"""Graded emergency plans as data: load, validate and query playbook files (YAML).

trail ships one, ``playbooks/default.yaml`` beside this module (package data, read through
:mod:`importlib.resources`); an organisation points ``TRAIL_PLAYBOOK`` at its own copy.

A playbook holds the organisation profile, the grades with their criteria (every threshold
with its source, the date it took effect and whether it has been verified), the plan steps
per grade, the reporting and notification obligations per grade, organisation type and
jurisdiction, the texts of notices and the drill schedule. Every number is a configurable
default (REGULATORY-DEFAULTS.md); nothing about grading or clocks is hard-coded elsewhere.

Errors point at the file and line: ``playbooks/acme.yaml:42: grades[2].criteria[0].value:
must be a number, got 'ten'``. The loader keeps each node's line while it builds plain data,
so a mistake anywhere in the file is reported where it is, not where it is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

import yaml

from trail.documents.kinds import DOCUMENT_KINDS
from trail.errors import PlaybookError as PlaybookError
from trail.events.model import DATA_CATEGORIES
from trail.messages import fact_label, unit_label

#: Grades from most to least severe (2017 National Cybersecurity Incident Emergency Plan).
LEVELS: Final = ("I", "II", "III", "IV")
GRADE_NAMES: Final = {
    "I": ("特别重大", "Extraordinarily serious", "red"),
    "II": ("重大", "Serious", "orange"),
    "III": ("较大", "Relatively serious", "yellow"),
    "IV": ("一般", "General", "blue"),
}
#: Facts the grading criteria may test, with their kind.
GRADING_FACTS: Final = {
    "people_affected": "number",
    "sensitive_people": "number",
    "direct_loss_cny": "number",
    "systems_down_hours": "number",
    "cii_involved": "bool",
    "serious_threat": "bool",
    "suspected_crime": "bool",
}
OPS: Final = (">=", ">", "==")
ORG_TYPES: Final = ("cii", "state_organ", "other")
JURISDICTIONS: Final = {
    "national": "PRC national (CAC, PIPL)",
    "miit_telecom": "MIIT telecom and internet (Order No. 24)",
    "shenzhen": "Shenzhen SEZ Data Regulations",
    "xiamen": "Xiamen PI protection measures",
    "dalian": "Dalian PI protection specification",
}
OBLIGATION_KINDS: Final = (
    "regulator_report",
    "followup_report",
    "closing_summary",
    "individual_notice",
    "public_announcement",
    "stakeholder_notice",
    "police_report",
    "post_incident_review",
)
CLOCK_FROM: Final = ("discovery", "handling_end")
STATUSES: Final = ("verified", "verify")
#: The documents an obligation may name as its template.
TEMPLATES: Final = DOCUMENT_KINDS


def as_bool(value: Any) -> bool | None:
    """A yes/no fact: real booleans, or the words true/false/yes/no/1/0; anything else is unknown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "1", "y"):
            return True
        if word in ("false", "no", "0", "n"):
            return False
    return None


def level_rank(level: str) -> int:
    """0 for I (most severe) ... 3 for IV."""
    return LEVELS.index(level)


def at_least(level: str, threshold: str) -> bool:
    """``level`` is ``threshold`` or more severe (III is at least IV; II is at least III)."""
    return level_rank(level) <= level_rank(threshold)


# --------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Criterion:
    fact: str
    op: str
    value: float | bool
    source: str
    effective: str
    status: str
    note: str = ""
    unit: str = ""
    #: The source in Chinese, for Chinese documents (else ``source`` is shown).
    source_zh: str = ""

    def holds(self, facts: Mapping[str, Any]) -> bool | None:
        """True/False when the fact is known, None when it is not."""
        if self.fact not in facts or facts[self.fact] is None:
            return None
        actual = facts[self.fact]
        if GRADING_FACTS[self.fact] == "bool":
            flag = as_bool(actual)
            return None if flag is None else flag == bool(self.value)
        try:
            number = float(actual)
        except (TypeError, ValueError):
            return None
        limit = float(self.value)
        if self.op == ">=":  # "以上" includes the number itself
            return number >= limit
        if self.op == ">":
            return number > limit
        return number == limit

    def describe(self, lang: str = "en") -> str:
        value = self.value
        zh = lang == "zh"
        fact = fact_label(self.fact, lang)
        if isinstance(value, bool):
            shown = ("是" if value else "否") if zh else ("yes" if value else "no")
            text = f"{fact}：{shown}" if zh else f"{fact} = {shown}"
        else:
            num = int(value) if float(value).is_integer() else value
            unit = unit_label(self.unit, lang)
            text = f"{fact} {self.op} {num:,}{(' ' + unit) if unit else ''}"
        mark = "" if self.status == "verified" else (" (待核实)" if zh else " (verify)")
        source = (self.source_zh or self.source) if zh else self.source
        return f"{text} — {source}{mark}"


@dataclass(frozen=True)
class Grade:
    level: str
    name_zh: str
    name_en: str
    colour: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class Overlay:
    """A sector's additional criterion for a grade (e.g. MIIT's 2024 plan for telecom)."""

    sectors: tuple[str, ...]
    grade: str
    criterion: Criterion


@dataclass(frozen=True)
class Step:
    id: str
    title_zh: str
    title_en: str
    role: str
    grades: tuple[str, ...]
    due_hours: float


@dataclass(frozen=True)
class Obligation:
    id: str
    kind: str
    jurisdiction: str
    recipient_zh: str
    recipient_en: str
    basis: str
    grades: tuple[str, ...]
    applies_to: tuple[str, ...]
    clock_from: str
    hours: float
    template: str
    status_note: str = ""
    #: Only when this boolean fact is true (e.g. ``suspected_crime`` for the police).
    when_fact: str = ""

    def applies(self, *, level: str, org_type: str, jurisdictions: Sequence[str], facts: Mapping[str, Any]) -> bool:
        if level not in self.grades:
            return False
        if "all" not in self.applies_to and org_type not in self.applies_to:
            return False
        if self.jurisdiction != "national" and self.jurisdiction not in jurisdictions:
            return False
        return not (self.when_fact and as_bool(facts.get(self.when_fact)) is not True)


@dataclass(frozen=True)
class Role:
    id: str
    name_zh: str
    name_en: str
    contact: str


@dataclass(frozen=True)
class Organisation:
    name: str
    name_en: str
    sector: str
    cii_operator: bool
    state_organ: bool
    jurisdictions: tuple[str, ...]
    address: str
    licence: str
    pi_officer: dict[str, str]
    public_contact: dict[str, str]

    @property
    def org_type(self) -> str:
        """How the CAC 2025 measures (Art. 4) treat this organisation's reports."""
        if self.cii_operator:
            return "cii"
        if self.state_organ:
            return "state_organ"
        return "other"


@dataclass(frozen=True)
class NoticeTexts:
    possible_harm: dict[str, str]
    advice: dict[str, list[str]]
    remedies: dict[str, str]
    advice_by_category: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Drills:
    every_months: int
    last: str | None


@dataclass(frozen=True)
class Playbook:
    name: str
    version: str
    effective_from: str
    source_file: str
    digest: str
    organisation: Organisation
    grades: tuple[Grade, ...]
    overlays: tuple[Overlay, ...]
    steps: tuple[Step, ...]
    obligations: tuple[Obligation, ...]
    roles: tuple[Role, ...]
    notice: NoticeTexts
    drills: Drills
    review_required_from: str
    due_soon_hours: float

    def grade(self, level: str) -> Grade:
        for g in self.grades:
            if g.level == level:
                return g
        raise KeyError(level)

    def steps_for(self, level: str) -> list[Step]:
        return [s for s in self.steps if level in s.grades]

    def obligations_for(self, level: str, facts: Mapping[str, Any]) -> list[Obligation]:
        org = self.organisation
        return [
            o
            for o in self.obligations
            if o.applies(level=level, org_type=org.org_type, jurisdictions=org.jurisdictions, facts=facts)
        ]

    def obligation(self, obligation_id: str) -> Obligation | None:
        return next((o for o in self.obligations if o.id == obligation_id), None)

    def with_organisation(self, **changes: Any) -> Playbook:
        """A copy with parts of the organisation profile replaced (drills, tests, what-ifs)."""
        from dataclasses import replace

        return replace(self, organisation=replace(self.organisation, **changes))

    def org_dict(self) -> dict[str, Any]:
        org = asdict(self.organisation)
        org["jurisdictions"] = list(self.organisation.jurisdictions)
        org["org_type"] = self.organisation.org_type
        return org

    def notice_dict(self, categories: Sequence[str] = ()) -> dict[str, Any]:
        """Notice texts for the documents, with advice for the categories involved first."""
        advice: dict[str, list[str]] = {}
        for lang in ("zh", "en"):
            by_cat = self.notice.advice_by_category
            specific = [by_cat[c][lang] for c in categories if c in by_cat]
            advice[lang] = specific + list(self.notice.advice.get(lang, []))
        return {
            "possible_harm": dict(self.notice.possible_harm),
            "advice": advice,
            "remedies": dict(self.notice.remedies),
        }

    def to_plan_dict(self, next_drill_due: str | None = None) -> dict[str, Any]:
        """The plan as plain data, for ``trail playbook render``."""

        def crit(c: Criterion, **extra: Any) -> dict[str, Any]:
            return {
                "fact": c.fact,
                "op": c.op,
                "value": c.value,
                "unit": c.unit,
                "source": c.source,
                "effective": c.effective,
                "status": c.status,
                "note": c.note,
                **extra,
            }

        return {
            "name": self.name,
            "version": self.version,
            "effective_from": self.effective_from,
            "source_file": self.source_file,
            "digest": self.digest,
            "grades": [
                {
                    "level": g.level,
                    "name_zh": g.name_zh,
                    "name_en": g.name_en,
                    "colour": g.colour,
                    "criteria": [crit(c) for c in g.criteria],
                }
                for g in self.grades
            ],
            "org_overrides": [crit(o.criterion, grade=o.grade, sectors=list(o.sectors)) for o in self.overlays],
            "steps": [
                {
                    "id": s.id,
                    "title_zh": s.title_zh,
                    "title_en": s.title_en,
                    "role": s.role,
                    "grades": list(s.grades),
                    "due_hours": s.due_hours,
                }
                for s in self.steps
            ],
            "obligations": [
                {
                    "id": o.id,
                    "kind": o.kind,
                    "jurisdiction": o.jurisdiction,
                    "recipient_zh": o.recipient_zh,
                    "recipient_en": o.recipient_en,
                    "basis": o.basis,
                    "grades": list(o.grades),
                    "applies_to": "all" if "all" in o.applies_to else ",".join(o.applies_to),
                    "clock": {"from": o.clock_from, "hours": o.hours},
                    "template": o.template,
                    "status_note": o.status_note,
                    "when_fact": o.when_fact,
                }
                for o in self.obligations
            ],
            "roles": [asdict(r) for r in self.roles],
            "drills": {"every_months": self.drills.every_months, "last": self.drills.last, "next_due": next_drill_due},
            "review_required_from": self.review_required_from,
        }


# --------------------------------------------------------------------------- loading
def default_playbook() -> Traversable:
    """The playbook trail ships (``playbooks/default.yaml`` beside this module), as a package resource."""
    return resources.files(__package__).joinpath("playbooks", "default.yaml")


def default_playbook_path() -> Path:
    """The shipped playbook as a file (where the package is installed as files, as pip does)."""
    return Path(str(default_playbook()))


def load_playbook(path: Path | str | None = None) -> Playbook:
    """Load and validate a playbook file (default: the shipped one); raises :class:`PlaybookError` (file:line)."""
    p: Path | Traversable = Path(path) if path is not None else default_playbook()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PlaybookError(f"{p}: no such playbook file (set TRAIL_PLAYBOOK or pass --playbook)") from None
    except OSError as exc:
        raise PlaybookError(f"{p}: cannot read the playbook: {exc.strerror}") from None
    return parse_playbook(raw.decode("utf-8", errors="replace"), source=str(p))


def parse_playbook(text: str, *, source: str = "<playbook>") -> Playbook:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise PlaybookError(f"{source}:{line}: not valid YAML: {exc.problem}") from None
    if node is None:
        raise PlaybookError(f"{source}:1: the playbook is empty")
    data = _Node(node, source, "")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _build(data, source, digest)


class _Node:
    """A YAML node with its path, for validation messages that name file, line and key."""

    def __init__(self, node: yaml.Node, source: str, path: str) -> None:
        self.node = node
        self.source = source
        self.path = path

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def fail(self, reason: str) -> PlaybookError:
        where = f"{self.path}: " if self.path else ""
        return PlaybookError(f"{self.source}:{self.line}: {where}{reason}")

    # -- structure
    def mapping(self, *, allowed: Sequence[str] | None = None) -> dict[str, _Node]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail(f"must be a mapping of keys, got {_kind(self.node)}")
        out: dict[str, _Node] = {}
        for k, v in self.node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            child = _Node(v, self.source, f"{self.path}.{key}" if self.path else str(key))
            if not isinstance(key, str):
                raise _Node(k, self.source, self.path).fail("keys must be plain words")
            if key in out:
                raise _Node(k, self.source, child.path).fail("key appears twice")
            if allowed is not None and key not in allowed:
                raise _Node(k, self.source, child.path).fail(f"unknown key; expected one of: {', '.join(allowed)}")
            out[key] = child
        return out

    def sequence(self) -> list[_Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail(f"must be a list, got {_kind(self.node)}")
        return [_Node(v, self.source, f"{self.path}[{i}]") for i, v in enumerate(self.node.value)]

    def scalar(self) -> Any:
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.fail(f"must be a single value, got {_kind(self.node)}")
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(self.node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise self.fail(f"not a valid value ({problem})") from None

    # -- typed values
    def text(self, *, empty: bool = False) -> str:
        value = self.scalar()
        if value is None and empty:
            return ""
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            raise self.fail(f"must be text, got {_show(value)}")
        s = value.isoformat() if isinstance(value, date) else str(value)
        if not s.strip() and not empty:
            raise self.fail("must not be empty")
        return s

    def number(self, *, minimum: float = 0.0) -> float:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"must be a number, got {_show(value)}")
        if value < minimum:
            raise self.fail(f"must be at least {minimum:g}, got {value:g}")
        return float(value)

    def boolean(self) -> bool:
        value = self.scalar()
        if not isinstance(value, bool):
            raise self.fail(f"must be true or false, got {_show(value)}")
        return value

    def choice(self, allowed: Sequence[str]) -> str:
        value = self.text()
        if value not in allowed:
            raise self.fail(f"{_show(value)} is not one of: {', '.join(allowed)}")
        return value

    def choices(self, allowed: Sequence[str]) -> tuple[str, ...]:
        items = self.sequence()
        if not items:
            raise self.fail("must list at least one of: " + ", ".join(allowed))
        return tuple(i.choice(allowed) for i in items)

    def day(self) -> str:
        value = self.scalar()
        if isinstance(value, date):
            return value.isoformat()
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise self.fail(f"must be a date YYYY-MM-DD, got {_show(value)}") from None

    def lang_text(self) -> dict[str, str]:
        m = self.mapping(allowed=("zh", "en"))
        for lang in ("zh", "en"):
            if lang not in m:
                raise self.fail(f"needs both zh and en texts (missing {lang})")
        return {k: v.text() for k, v in m.items()}


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a single value"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _required(m: dict[str, _Node], parent: _Node, *keys: str) -> None:
    for key in keys:
        if key not in m:
            raise parent.fail(f"missing required key {key!r}")


_CRITERION_KEYS = ("fact", "op", "value", "unit", "source", "source_zh", "effective", "status", "note")


def _criterion(n: _Node) -> Criterion:
    m = n.mapping(allowed=_CRITERION_KEYS)
    _required(m, n, "fact", "value", "source", "effective", "status")
    fact = m["fact"].choice(tuple(GRADING_FACTS))
    op = m["op"].choice(OPS) if "op" in m else ">="
    value: float | bool
    if GRADING_FACTS[fact] == "bool":
        value = m["value"].boolean()
        if op != "==" and "op" in m:
            raise m["op"].fail(f"{fact} is true or false: use op '==' (or leave op out)")
        op = "=="
    else:
        value = m["value"].number()
    return Criterion(
        fact=fact,
        op=op,
        value=value,
        source=m["source"].text(),
        effective=m["effective"].day(),
        status=m["status"].choice(STATUSES),
        note=m["note"].text(empty=True) if "note" in m else "",
        unit=m["unit"].text(empty=True) if "unit" in m else "",
        source_zh=m["source_zh"].text() if "source_zh" in m else "",
    )


def _build(root: _Node, source: str, digest: str) -> Playbook:
    top = root.mapping(
        allowed=(
            "playbook",
            "organisation",
            "grades",
            "overlays",
            "roles",
            "steps",
            "obligations",
            "notice",
            "drills",
            "review_required_from",
            "due_soon_hours",
        )
    )
    _required(top, root, "playbook", "organisation", "grades", "steps", "obligations", "notice")

    meta = top["playbook"].mapping(allowed=("name", "version", "effective_from"))
    _required(meta, top["playbook"], "name", "version", "effective_from")

    o = top["organisation"].mapping(
        allowed=(
            "name",
            "name_en",
            "sector",
            "cii_operator",
            "state_organ",
            "jurisdictions",
            "address",
            "licence",
            "pi_officer",
            "public_contact",
        )
    )
    _required(o, top["organisation"], "name", "sector", "cii_operator", "state_organ", "jurisdictions", "pi_officer")
    officer = o["pi_officer"].mapping(allowed=("name", "phone", "email"))
    _required(officer, o["pi_officer"], "name")
    public = o["public_contact"].mapping(allowed=("phone", "email", "web")) if "public_contact" in o else {}
    org = Organisation(
        name=o["name"].text(),
        name_en=o["name_en"].text() if "name_en" in o else o["name"].text(),
        sector=o["sector"].text(),
        cii_operator=o["cii_operator"].boolean(),
        state_organ=o["state_organ"].boolean(),
        jurisdictions=o["jurisdictions"].choices(tuple(JURISDICTIONS)),
        address=o["address"].text(empty=True) if "address" in o else "",
        licence=o["licence"].text(empty=True) if "licence" in o else "",
        pi_officer={k: v.text() for k, v in officer.items()},
        public_contact={k: v.text() for k, v in public.items()},
    )

    grades: list[Grade] = []
    seen_levels: set[str] = set()
    criteria_nodes: dict[str, _Node] = {}
    for g in top["grades"].sequence():
        gm = g.mapping(allowed=("level", "name_zh", "name_en", "colour", "criteria"))
        _required(gm, g, "level", "criteria")
        level = gm["level"].choice(LEVELS)
        if level in seen_levels:
            raise gm["level"].fail(f"grade {level} is defined twice")
        seen_levels.add(level)
        criteria_nodes[level] = gm["criteria"]
        zh, en, colour = GRADE_NAMES[level]
        grades.append(
            Grade(
                level=level,
                name_zh=gm["name_zh"].text() if "name_zh" in gm else zh,
                name_en=gm["name_en"].text() if "name_en" in gm else en,
                colour=gm["colour"].text() if "colour" in gm else colour,
                criteria=tuple(_criterion(c) for c in gm["criteria"].sequence()),
            )
        )
    missing = [lv for lv in LEVELS if lv not in seen_levels]
    if missing:
        raise top["grades"].fail(f"every grade I-IV needs an entry (missing {', '.join(missing)})")
    grades.sort(key=lambda gr: level_rank(gr.level))
    if grades[-1].criteria:
        raise criteria_nodes["IV"].fail("grade IV is the default (everything below III): give it `criteria: []`")

    overlays: list[Overlay] = []
    for ov in top["overlays"].sequence() if "overlays" in top else []:
        om = ov.mapping(allowed=("sectors", "grade", *_CRITERION_KEYS))
        _required(om, ov, "sectors", "grade")
        crit_map = {k: v for k, v in om.items() if k in _CRITERION_KEYS}
        # Build the criterion from the same node so lines stay right.
        fake = _Node(ov.node, ov.source, ov.path)
        sub = yaml.MappingNode(
            tag="tag:yaml.org,2002:map",
            value=[(k_node, v_node) for k_node, v_node in ov.node.value if k_node.value in crit_map],
            start_mark=ov.node.start_mark,
            end_mark=ov.node.end_mark,
        )
        fake.node = sub
        overlays.append(
            Overlay(
                sectors=tuple(s.text() for s in om["sectors"].sequence()),
                grade=om["grade"].choice(LEVELS[:-1]),
                criterion=_criterion(fake),
            )
        )

    roles: list[Role] = []
    for r in top["roles"].sequence() if "roles" in top else []:
        rm = r.mapping(allowed=("id", "name_zh", "name_en", "contact"))
        _required(rm, r, "id", "name_zh", "name_en")
        roles.append(
            Role(
                id=rm["id"].text(),
                name_zh=rm["name_zh"].text(),
                name_en=rm["name_en"].text(),
                contact=rm["contact"].text(empty=True) if "contact" in rm else "",
            )
        )
    role_ids = {r.id for r in roles}

    steps: list[Step] = []
    step_ids: set[str] = set()
    for s in top["steps"].sequence():
        sm = s.mapping(allowed=("id", "title_zh", "title_en", "role", "grades", "due_hours"))
        _required(sm, s, "id", "title_zh", "title_en", "role", "grades", "due_hours")
        sid = sm["id"].text()
        if sid in step_ids:
            raise sm["id"].fail(f"step id {sid!r} is used twice")
        step_ids.add(sid)
        role = sm["role"].text()
        if role_ids and role not in role_ids:
            raise sm["role"].fail(f"unknown role {role!r}; roles: {', '.join(sorted(role_ids))}")
        steps.append(
            Step(
                id=sid,
                title_zh=sm["title_zh"].text(),
                title_en=sm["title_en"].text(),
                role=role,
                grades=sm["grades"].choices(LEVELS),
                due_hours=sm["due_hours"].number(),
            )
        )

    obligations: list[Obligation] = []
    ob_ids: set[str] = set()
    for ob in top["obligations"].sequence():
        om = ob.mapping(
            allowed=(
                "id",
                "kind",
                "jurisdiction",
                "recipient_zh",
                "recipient_en",
                "basis",
                "grades",
                "applies_to",
                "clock",
                "template",
                "status_note",
                "when",
            )
        )
        _required(om, ob, "id", "kind", "jurisdiction", "recipient_zh", "recipient_en", "basis", "grades", "clock")
        oid = om["id"].text()
        if oid in ob_ids:
            raise om["id"].fail(f"obligation id {oid!r} is used twice")
        ob_ids.add(oid)
        clock = om["clock"].mapping(allowed=("from", "hours"))
        _required(clock, om["clock"], "hours")
        kind = om["kind"].choice(OBLIGATION_KINDS)
        when_fact = ""
        if "when" in om:
            wm = om["when"].mapping(allowed=("fact",))
            _required(wm, om["when"], "fact")
            when_fact = wm["fact"].choice([f for f, k in GRADING_FACTS.items() if k == "bool"])
        obligations.append(
            Obligation(
                id=oid,
                kind=kind,
                jurisdiction=om["jurisdiction"].choice(tuple(JURISDICTIONS)),
                recipient_zh=om["recipient_zh"].text(),
                recipient_en=om["recipient_en"].text(),
                basis=om["basis"].text(),
                grades=om["grades"].choices(LEVELS),
                applies_to=om["applies_to"].choices((*ORG_TYPES, "all")) if "applies_to" in om else ("all",),
                clock_from=clock["from"].choice(CLOCK_FROM) if "from" in clock else "discovery",
                hours=clock["hours"].number(),
                template=om["template"].choice(TEMPLATES) if "template" in om else "",
                status_note=om["status_note"].text(empty=True) if "status_note" in om else "",
                when_fact=when_fact,
            )
        )

    nm = top["notice"].mapping(allowed=("possible_harm", "advice", "remedies", "advice_by_category"))
    _required(nm, top["notice"], "possible_harm", "advice", "remedies")
    advice_map = nm["advice"].mapping(allowed=("zh", "en"))
    _required(advice_map, nm["advice"], "zh", "en")
    by_cat: dict[str, dict[str, str]] = {}
    if "advice_by_category" in nm:
        for cat, node in nm["advice_by_category"].mapping().items():
            if cat not in DATA_CATEGORIES:
                raise node.fail(f"unknown data category {cat!r}; categories: {', '.join(DATA_CATEGORIES)}")
            by_cat[cat] = node.lang_text()
    notice = NoticeTexts(
        possible_harm=nm["possible_harm"].lang_text(),
        advice={lang: [i.text() for i in advice_map[lang].sequence()] for lang in ("zh", "en")},
        remedies=nm["remedies"].lang_text(),
        advice_by_category=by_cat,
    )

    drills = Drills(every_months=12, last=None)
    if "drills" in top:
        dm = top["drills"].mapping(allowed=("every_months", "last"))
        every_f = dm["every_months"].number(minimum=1) if "every_months" in dm else 12.0
        if not float(every_f).is_integer():
            raise dm["every_months"].fail("must be a whole number of months")
        every = int(every_f)
        if every > 12:
            raise dm["every_months"].fail(
                "drills are due at least once a year (GB/T 35273 §10.1, verify): use 12 or fewer months"
            )
        last = None
        if "last" in dm and dm["last"].scalar() is not None:
            last = dm["last"].day()
        drills = Drills(every_months=every, last=last)

    return Playbook(
        name=meta["name"].text(),
        version=meta["version"].text(),
        effective_from=meta["effective_from"].day(),
        source_file=source,
        digest=digest,
        organisation=org,
        grades=tuple(grades),
        overlays=tuple(overlays),
        steps=tuple(steps),
        obligations=tuple(obligations),
        roles=tuple(roles),
        notice=notice,
        drills=drills,
        review_required_from=top["review_required_from"].choice(LEVELS) if "review_required_from" in top else "III",
        due_soon_hours=top["due_soon_hours"].number() if "due_soon_hours" in top else 1.0,
    )
