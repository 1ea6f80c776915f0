"""Breach-response documents, rendered in Chinese and English from one incident record.

The incident engine hands this module a plain-dict *context* (the record as data: organisation,
incident, facts, evidence, measures, obligations, notice texts). Each document kind has one
Jinja2 template per language in ``playbooks/templates/`` (``<kind>.<lang>.md.j2``): Markdown is
the source, and HTML is produced from that Markdown by a small converter that escapes
everything, then wrapped in ``_layout.html.j2`` (autoescaped) as a standalone, printable page.
So the same record drives both formats, and the HTML says exactly what the Markdown says.

Safety of values:

* Every ``{{ value }}`` in a Markdown template goes through the environment's ``finalize``,
  which formats it (numbers, lists, yes/no, "unknown") and escapes Markdown: ``|``, ``*``,
  ``<`` and friends are backslash-escaped and line breaks become ``<br>``, so a value can never
  open a heading, a list, a table cell or an HTML tag.
* The HTML converter knows only the subset the templates use (headings, paragraphs, bullet
  lists, tables, bold, ``<br>``, block quotes, rules) and HTML-escapes all text.

Self-checks, run on every render (a template regression fails loudly, never silently):

* every element of :func:`required_elements` must appear in a heading, a table header or a bold
  label of the output (a value cannot forge one: values are escaped), in Markdown and in HTML;
* notices to individuals and the public announcement must not carry anything that looks like a
  subject reference (64 hex characters), the incident id, or any string the evidence holds
  under a subject/ref key.

Public API: :data:`DOCUMENT_KINDS`, :data:`PLAN_KIND`, :func:`render`, :func:`render_plan`,
:func:`write_documents`, :func:`required_elements`, :func:`markdown_to_html`,
:func:`default_templates_dir`, :class:`DocumentError`, :class:`MissingElementError`.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import string
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

import trail
from trail.errors import TrailError
from trail.incidents.playbook import TEMPLATES

#: The incident documents (the kinds a playbook obligation may name as its template).
DOCUMENT_KINDS: Final = TEMPLATES
#: The graded emergency plan itself, rendered from the playbook context (``plan_ctx``).
PLAN_KIND: Final = "emergency_plan"
ALL_KINDS: Final = (*DOCUMENT_KINDS, PLAN_KIND)
LANGS: Final = ("zh", "en")
FORMATS: Final = ("md", "html")
#: Documents that reach individuals or the public: no identifiers may appear in them.
PUBLIC_KINDS: Final = frozenset({"individual_notice", "public_announcement"})

LAYOUT_TEMPLATE: Final = "_layout.html.j2"
_HTML_LANG: Final = {"zh": "zh-CN", "en": "en"}


class DocumentError(TrailError):
    """A document could not be rendered or written.

    Raised for an unknown kind, language or format (the message lists the allowed values), a
    template that is missing or broken (the message names the file), a context that is not a
    mapping, or an output that fails a self-check. Messages never quote personal data.
    """


class MissingElementError(DocumentError):
    """A rendered document lacks elements the rules require: its template regressed."""

    def __init__(self, kind: str, lang: str, fmt: str, template: str, missing: Sequence[str]) -> None:
        self.kind = kind
        self.lang = lang
        self.fmt = fmt
        self.template = template
        self.missing = list(missing)
        shown = "; ".join(repr(m) for m in self.missing)
        super().__init__(
            f"{kind} ({lang}, {fmt}) rendered from {template} lacks required elements: {shown} "
            "(each must appear in a heading, table header or bold label; see documents.required_elements)"
        )


# --------------------------------------------------------------------------- required elements
#: Headings and labels each document must contain, per language (zh, en). The self-check looks
#: for each inside a heading, a table header or a bold label of the output.
_REQUIRED: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "initial_report": (
        ("个人信息安全事件初报", "initial report"),
        ("报送对象及法律依据", "Recipients and legal basis of this report"),
        ("报告单位", "Reporting unit"),
        ("受影响设施或系统", "Affected facility or system"),
        ("发现时间", "Time of discovery"),
        ("发生地点", "Place"),
        ("事件类型", "Type of incident"),
        ("事件分级及所达标准", "Grade and criteria met"),
        ("影响和危害", "Impact and harm"),
        ("受影响人数", "People affected"),
        ("其中涉及敏感个人信息的人数", "Of them, people whose sensitive personal information is involved"),
        ("个人信息类别", "Categories of personal information"),
        ("时间范围", "Time window"),
        ("审计日志证据", "Evidence from the audit trail"),
        ("已采取的措施及效果", "Measures taken and their effect"),
        ("事态发展趋势及可能的进一步影响", "Trend and possible further impact"),
        ("初步原因", "Preliminary cause"),
        ("调查线索", "Investigation leads"),
        ("下一步工作及需要的支持", "Next steps and support requested"),
        ("现场保护情况", "Scene preservation"),
        ("待补充事项", "Items to be supplemented"),
        ("联系人", "Contact person"),
    ),
    "followup_report": (
        ("个人信息安全事件续报", "follow-up report"),
        ("初报情况", "Reference to the initial report"),
        ("重大进展", "Significant developments"),
        ("事实和分级的变化", "Changed facts and grade"),
        ("初报以来采取的措施", "Measures since the initial report"),
        ("仍待查明事项", "Still unknown"),
        ("联系人", "Contact person"),
    ),
    "closing_summary": (
        ("个人信息安全事件总结报告", "closing summary"),
        ("报送时限", "Deadline of this summary"),
        ("事件原因", "Cause"),
        ("处置措施", "Measures taken"),
        ("危害情况", "Harm"),
        ("责任认定及追究", "Accountability"),
        ("整改情况", "Remediation"),
        ("经验教训", "Lessons learned"),
        ("义务履行时间线", "Timeline of obligations met"),
        ("应履行时间", "Due"),
        ("实际履行时间", "Met"),
        ("联系人", "Contact person"),
    ),
    "individual_notice": (
        ("个人信息安全事件告知书", "Notice about your personal information"),
        ("发生了什么", "What happened"),
        ("涉及的个人信息", "Personal information involved"),
        ("事件原因", "Cause"),
        ("可能造成的危害", "Possible harm"),
        ("我们已采取的补救措施", "What we have done"),
        ("您可以采取的措施", "What you can do"),
        ("您可获得的救济", "Your remedies"),
        ("联系我们", "How to contact us"),
        ("个人信息保护负责人", "Personal information protection officer"),
    ),
    "public_announcement": (
        ("关于个人信息安全事件的公告", "Announcement of a personal information security incident"),
        ("事件经过", "What happened"),
        ("影响范围", "Scale"),
        ("涉及的个人信息", "Personal information involved"),
        ("事件原因", "Cause"),
        ("可能造成的危害", "Possible harm"),
        ("已采取的补救措施", "What we have done"),
        ("公众可以采取的措施", "What you can do"),
        ("救济途径", "Remedies"),
        ("咨询渠道", "Where to ask"),
        ("个人信息保护负责人", "Personal information protection officer"),
    ),
    "post_incident_review": (
        ("个人信息安全事件复盘报告", "Post-incident review"),
        ("时间线", "Timeline"),
        ("分级变化", "Grade history"),
        ("原因分析", "Cause"),
        ("责任", "Responsibility"),
        ("对策", "Countermeasures"),
        ("预防措施", "Prevention"),
        ("经验教训", "Lessons"),
        ("义务履行情况", "Obligations: due and met"),
        ("原因和责任的公布", "Publication of cause and responsibility"),
        ("改进及预防措施的跟踪", "Follow-up of corrective and preventive actions"),
    ),
    PLAN_KIND: (
        ("个人信息安全事件应急预案", "emergency plan"),
        ("目的和依据", "Purpose and legal basis"),
        ("组织", "Organisation"),
        ("事件分级及标准", "Grades and criteria"),
        ("行业补充标准", "Sector overlays"),
        ("分级响应步骤", "Response steps by grade"),
        ("报告和通知义务", "Reporting and notification obligations"),
        ("角色及联系方式", "Roles and contacts"),
        ("演练和自查", "Drills and self-checks"),
        ("核实状态", "Verification status"),
    ),
}


def required_elements(kind: str, lang: str) -> list[str]:
    """The headings and labels a document of ``kind`` in ``lang`` must contain."""
    _check_choice("document kind", kind, ALL_KINDS)
    _check_choice("language", lang, LANGS)
    i = LANGS.index(lang)
    return [pair[i] for pair in _REQUIRED[kind]]


def _check_choice(what: str, value: object, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value)[:40]
        raise DocumentError(f"unknown {what} {shown}; choose one of: {', '.join(allowed)}")


def default_templates_dir() -> Path:
    """``playbooks/templates`` of the source tree trail is installed from (editable install)."""
    return Path(trail.__file__).resolve().parents[2] / "playbooks" / "templates"


# --------------------------------------------------------------------------- labels
_Pair = tuple[str, str]

#: Facts and derived items, as labels (zh, en). Unknown items are listed with these labels.
FACT_LABELS: Final[dict[str, _Pair]] = {
    "people_affected": ("受影响人数", "people affected"),
    "sensitive_people": ("其中涉及敏感个人信息的人数", "people whose sensitive personal information is involved"),
    "categories": ("个人信息类别", "categories of personal information"),
    "sensitive_categories": ("敏感个人信息类别", "sensitive categories"),
    "cause": ("初步原因", "cause"),
    "possible_harm": ("可能造成的危害", "possible harm"),
    "direct_loss_cny": ("直接经济损失（元）", "direct economic loss (CNY)"),
    "cii_involved": ("是否涉及关键信息基础设施", "critical information infrastructure involved"),
    "systems_down_hours": ("系统中断时长（小时）", "systems down (hours)"),
    "suspected_crime": ("是否涉嫌违法犯罪", "suspected crime"),
    "serious_threat": ("是否构成严重威胁", "serious threat"),
    "location": ("发生地点", "place"),
    "type": ("事件类型", "type of incident"),
    "discovered_at": ("发现时间", "time of discovery"),
    "affected_systems": ("受影响设施或系统", "affected facility or system"),
    "window": ("时间范围", "time window"),
    "trend": ("事态发展趋势", "trend"),
    "leads": ("调查线索", "investigation leads"),
    "support_requested": ("需要的支持", "support requested"),
    "scene_preservation": ("现场保护情况", "scene preservation"),
    "measures_effect": ("措施效果", "effect of the measures"),
    "ransom": ("勒索情况（金额、支付方式、日期）", "ransom (amount, payment method, date)"),
    "evidence": ("审计日志影响分析（证据）", "impact analysis from the audit trail (evidence)"),
    "measures": ("已采取的措施", "measures taken"),
    "pi_officer": ("联系人", "contact person"),
}

#: Items the initial report checks; any left unknown is listed under "to be supplemented".
INITIAL_REPORT_ITEMS: Final = (
    "discovered_at",
    "location",
    "type",
    "affected_systems",
    "people_affected",
    "sensitive_people",
    "categories",
    "window",
    "evidence",
    "measures",
    "measures_effect",
    "trend",
    "possible_harm",
    "cause",
    "leads",
    "scene_preservation",
    "direct_loss_cny",
)

#: Data categories of the audit event model (``trail.events.model.DATA_CATEGORIES``).
CATEGORY_LABELS: Final[dict[str, _Pair]] = {
    "name": ("姓名", "name"),
    "birth_date": ("出生日期", "date of birth"),
    "id_number": ("身份证件号码", "identity document number"),
    "address": ("住址", "address"),
    "phone": ("电话号码", "phone number"),
    "email": ("电子邮箱", "e-mail address"),
    "account": ("账号", "account"),
    "credential": ("密码等身份鉴别信息", "password or other credentials"),
    "location": ("位置信息", "location"),
    "device_id": ("设备标识", "device identifier"),
    "communication": ("通信内容和记录", "communication content and records"),
    "marital_status": ("婚姻状况", "marital status"),
    "employment": ("工作经历", "employment history"),
    "income": ("收入", "income"),
    "financial": ("金融账户信息", "financial account information"),
    "health": ("医疗健康信息", "health information"),
    "biometric": ("生物识别信息", "biometric information"),
    "religion": ("宗教信仰", "religious belief"),
    "political": ("政治观点", "political opinion"),
    "sexual_life": ("性生活信息", "sex life"),
    "criminal_record": ("犯罪记录", "criminal record"),
    "minor": ("不满十四周岁未成年人的个人信息", "personal information of minors under 14"),
    "other": ("其他个人信息", "other personal information"),
}

_JURISDICTIONS: Final[dict[str, _Pair]] = {
    "national": ("全国（国家网信部门、个人信息保护法）", "national (CAC, PIPL)"),
    "cac": ("全国（国家网信部门）", "national (CAC)"),
    "miit_telecom": ("电信和互联网（工业和信息化部令第24号）", "telecom and internet (MIIT Order No. 24)"),
    "shenzhen": ("深圳经济特区", "Shenzhen SEZ"),
    "xiamen": ("厦门市", "Xiamen"),
    "dalian": ("大连市", "Dalian"),
}
_SECTORS: Final[dict[str, _Pair]] = {
    "finance": ("金融", "finance"),
    "telecom": ("电信", "telecom"),
    "internet": ("互联网", "internet"),
    "health": ("医疗卫生", "health"),
    "software": ("软件和信息服务", "software and information services"),
    "industry": ("工业", "industry"),
    "other": ("其他", "other"),
}
_INCIDENT_STATUS: Final[dict[str, _Pair]] = {
    "open": ("处置中", "open"),
    "contained": ("已控制", "contained"),
    "reviewed": ("已复盘", "reviewed"),
    "closed": ("已结案", "closed"),
}
_OBLIGATION_STATUS: Final[dict[str, _Pair]] = {
    "open": ("未履行", "open"),
    "met": ("已履行", "met"),
    "waived": ("已豁免", "waived"),
}
_OBLIGATION_STATE: Final[dict[str, _Pair]] = {
    "ok": ("期限内", "on time so far"),
    "due_soon": ("即将到期", "due soon"),
    "overdue": ("已逾期", "OVERDUE"),
    "met": ("按时履行", "met on time"),
    "met_late": ("逾期履行", "met late"),
    "not_started": ("时限未起算", "clock not started"),
}
_STEP_STATUS: Final[dict[str, _Pair]] = {
    "pending": ("待办", "pending"),
    "todo": ("待办", "to do"),
    "started": ("进行中", "started"),
    "in_progress": ("进行中", "in progress"),
    "done": ("已完成", "done"),
    "completed": ("已完成", "completed"),
    "skipped": ("已跳过", "skipped"),
}
_SOURCES: Final[dict[str, _Pair]] = {
    "alerts": ("检测告警", "detection alerts"),
    "manual": ("人工报告", "manual report"),
    "drill": ("演练", "drill"),
}
_DONE_STEPS: Final = frozenset({"done", "completed", "skipped", "cancelled"})
_REPORT_KINDS: Final[dict[str, _Pair]] = {
    "initial": ("初报", "initial report"),
    "initial_report": ("初报", "initial report"),
    "regulator_report": ("向监管部门报告", "report to the regulator"),
    "followup": ("续报", "follow-up report"),
    "followup_report": ("续报", "follow-up report"),
    "closing": ("总结报告", "closing summary"),
    "closing_summary": ("总结报告", "closing summary"),
    "police_report": ("向公安机关报案", "report to the police"),
    "individual_notice": ("个人告知", "notice to individuals"),
    "public_announcement": ("公告", "public announcement"),
    "stakeholder_notice": ("告知利害关系人", "notice to stakeholders"),
    "post_incident_review": ("事件复盘", "post-incident review"),
}
_INITIAL_REPORT_KINDS: Final = frozenset({"initial", "initial_report", "regulator_report"})
#: Obligation kinds addressed to an authority (the rest reach individuals, the public or the file).
REGULATOR_OBLIGATION_KINDS: Final = frozenset(
    {"regulator_report", "followup_report", "closing_summary", "police_report"}
)
_COLOURS: Final[dict[str, _Pair]] = {
    "red": ("红色", "red"),
    "orange": ("橙色", "orange"),
    "yellow": ("黄色", "yellow"),
    "blue": ("蓝色", "blue"),
}
_APPLIES_TO: Final[dict[str, _Pair]] = {
    "cii": ("关键信息基础设施运营者", "CII operators"),
    "state_organ": ("中央和国家机关及其直属单位", "central and state organs"),
    "other": ("其他网络运营者", "other network operators"),
    "all": ("所有单位", "all"),
}
_UNITS: Final[dict[str, _Pair]] = {
    "people": ("人", "people"),
    "CNY": ("元", "CNY"),
    "cny": ("元", "CNY"),
    "hours": ("小时", "hours"),
}
_INCIDENT_TYPES: Final[dict[str, _Pair]] = {
    "leak": ("个人信息泄露", "leak of personal information"),
    "tampering": ("个人信息篡改", "tampering with personal information"),
    "loss": ("个人信息丢失", "loss of personal information"),
    "damage": ("个人信息损毁", "damage to personal information"),
    "misuse": ("个人信息不当使用", "misuse of personal information"),
    "unauthorised_access": ("未经授权访问个人信息", "unauthorised access to personal information"),
    "unauthorized_access": ("未经授权访问个人信息", "unauthorised access to personal information"),
    "ransomware": ("勒索软件", "ransomware"),
}
_LEVEL_RANK: Final = {"I": 0, "II": 1, "III": 2, "IV": 3}
_GRADE_NAMES: Final[dict[str, tuple[str, str]]] = {
    "I": ("特别重大", "Extraordinarily serious"),
    "II": ("重大", "Serious"),
    "III": ("较大", "Relatively serious"),
    "IV": ("一般", "General"),
}
#: CAC 2025 measures Art. 4: who reports where, within how many hours of discovery.
_OPERATOR_CLASS: Final[dict[str, tuple[_Pair, _Pair, int]]] = {
    "cii": (
        ("关键信息基础设施运营者", "critical information infrastructure operator"),
        ("保护工作部门和公安机关", "its protection department and the public security organ"),
        1,
    ),
    "state_organ": (
        ("中央和国家机关及其直属单位", "central or state organ, or a unit directly under one"),
        ("本单位网信工作机构", "its own cyberspace affairs body"),
        2,
    ),
    "other": (
        ("其他网络运营者", "other network operator"),
        ("省级网信部门", "the provincial cyberspace administration"),
        4,
    ),
}
_MONTHS_EN: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


# --------------------------------------------------------------------------- formatting
def _m(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, list | tuple | dict) and not value)
    )


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Fmt:
    """Display helpers for one language and time zone."""

    lang: str
    tz: ZoneInfo
    tz_name: str

    @classmethod
    def for_ctx(cls, ctx: Mapping[str, Any], lang: str) -> _Fmt:
        name = ctx.get("timezone") or "UTC"
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

    def pick(self, pair: _Pair) -> str:
        return pair[0] if self.zh else pair[1]

    def label(self, table: Mapping[str, _Pair], code: Any) -> str | None:
        if _blank(code):
            return None
        key = str(code)
        return self.pick(table[key]) if key in table else key

    def ts(self, value: Any) -> str | None:
        """An RFC 3339 time as local time in the context's zone, with the zone's name."""
        dt = _parse_ts(value)
        if dt is None:
            return None if _blank(value) else str(value)
        return f"{dt.astimezone(self.tz):%Y-%m-%d %H:%M} {self.tz_name}"

    def day(self, value: Any) -> str | None:
        """A date for readers: 2026年11月22日 / 22 November 2026."""
        dt = _parse_ts(value)
        if dt is None:
            return None if _blank(value) else str(value)
        d = dt.astimezone(self.tz)
        return f"{d.year}年{d.month}月{d.day}日" if self.zh else f"{d.day} {_MONTHS_EN[d.month - 1]} {d.year}"

    def offset_note(self, at: Any) -> str:
        dt = _parse_ts(at) or datetime.now(UTC)
        off = dt.astimezone(self.tz).strftime("%z")
        off = f"UTC{off[:3]}:{off[3:]}" if off else "UTC"
        if self.zh:
            return f"文中时间均为 {self.tz_name} 当地时间（{off}）"
        return f"all times are local time in {self.tz_name} ({off})"

    def hours(self, hours: Any) -> str:
        """A clock length: "4 小时" / "4 h"; whole days from 48 h on."""
        if not isinstance(hours, int | float) or isinstance(hours, bool):
            return self.pick(("立即", "immediately"))
        h = float(hours)
        if h >= 48 and h % 24 == 0:
            d = int(h // 24)
            return f"{d} 日" if self.zh else f"{d} days"
        shown = f"{int(h)}" if h.is_integer() else f"{h:g}"
        return f"{shown} 小时" if self.zh else f"{shown} h"

    def grade(self, level: Any, name_zh: Any = None, name_en: Any = None) -> str | None:
        """The grade as "III级 较大 / Level III – Relatively serious" (the same in both languages)."""
        if _blank(level):
            return None
        lv = str(level)
        zh_name, en_name = _GRADE_NAMES.get(lv, ("", ""))
        zh_name = str(name_zh) if not _blank(name_zh) else zh_name
        en_name = str(name_en) if not _blank(name_en) else en_name
        return f"{lv}级 {zh_name} / Level {lv} – {en_name}".strip()

    def categories(self, codes: Any) -> list[str] | None:
        if _blank(codes):
            return None
        items = codes if isinstance(codes, list | tuple) else [codes]
        return [self.label(CATEGORY_LABELS, c) or "" for c in items]

    def count_approx(self, n: Any) -> str | None:
        """A rounded count for the public: "约120万人" / "about 1.2 million people"."""
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


def _display(value: Any, lang: str, unknown: str) -> str:
    """How a value reads in a document (before Markdown escaping)."""
    if isinstance(value, jinja2.Undefined):
        return str(value)  # StrictUndefined raises: a template names something the view lacks
    if value is None:
        return unknown
    if isinstance(value, bool):
        return ("是" if value else "否") if lang == "zh" else ("yes" if value else "no")
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
            return "无" if lang == "zh" else "none"
        sep = "、" if lang == "zh" else ", "
        return sep.join(_display(v, lang, unknown) for v in value)
    return str(value)


# --------------------------------------------------------------------------- Markdown escaping
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~&])")
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_ORDERED_START = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")


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


@jinja2.pass_context
def _md_finalize(context: jinja2.runtime.Context, value: Any) -> str:
    lang = context.get("lang", "en")
    unknown = context.get("unknown_text", "unknown")
    return md_escape(_display(value, str(lang), str(unknown)))


# --------------------------------------------------------------------------- Markdown -> HTML
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*)$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_BULLET = re.compile(r"^( *)[-*+][ \t]+(.*)$")
_QUOTE = re.compile(r"^ {0,3}>[ ]?(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?(?:\s*:?-+:?\s*\|)*\s*:?-+:?\s*\|?\s*$")
_PUNCT = frozenset(string.punctuation)


def _inline_tokens(text: str) -> list[tuple[str, str]]:
    """Tokens of one line: ("text", s), ("strong", ""), ("br", "")."""
    tokens: list[tuple[str, str]] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            tokens.append(("text", "".join(buf)))
            buf.clear()

    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in _PUNCT:
            buf.append(text[i + 1])
            i += 2
        elif text.startswith("**", i):
            flush()
            tokens.append(("strong", ""))
            i += 2
        elif text.startswith("<br>", i):
            flush()
            tokens.append(("br", ""))
            i += 4
        else:
            buf.append(c)
            i += 1
    flush()
    strong = [k for k, (kind, _) in enumerate(tokens) if kind == "strong"]
    if len(strong) % 2:  # an unpaired ** is literal text
        tokens[strong[-1]] = ("text", "**")
    return tokens


def _inline(text: str) -> str:
    out: list[str] = []
    bold = False
    for kind, value in _inline_tokens(text):
        if kind == "text":
            out.append(html.escape(value, quote=True))
        elif kind == "br":
            out.append("<br>")
        else:
            out.append("</strong>" if bold else "<strong>")
            bold = not bold
    return "".join(out)


def _plain(text: str) -> str:
    return "".join(v if k == "text" else (" " if k == "br" else "") for k, v in _inline_tokens(text))


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    cells: list[str] = []
    buf: list[str] = []
    ended_on_pipe = False
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            buf.append(s[i : i + 2])
            i += 2
            ended_on_pipe = False
            continue
        if s[i] == "|":
            cells.append("".join(buf).strip())
            buf = []
            ended_on_pipe = True
        else:
            buf.append(s[i])
            if not s[i].isspace():
                ended_on_pipe = False
        i += 1
    if (buf and "".join(buf).strip()) or not ended_on_pipe:
        cells.append("".join(buf).strip())
    return cells


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    width = max([len(header), *(len(r) for r in rows)])
    parts = ["<table>", "<thead><tr>"]
    parts += [f"<th>{_inline(c)}</th>" for c in header + [""] * (width - len(header))]
    parts.append("</tr></thead>")
    if rows:
        parts.append("<tbody>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r + [""] * (width - len(r))) + "</tr>")
        parts.append("</tbody>")
    parts.append("</table>")
    return "\n".join(parts)


def _list_html(items: list[tuple[int, str]]) -> str:
    parts: list[str] = []
    stack: list[int] = []
    for indent, text in items:
        if not stack or indent > stack[-1]:
            parts.append("<ul>")
            stack.append(indent)
        else:
            parts.append("</li>")
            while len(stack) > 1 and indent < stack[-1]:
                parts.append("</ul></li>")
                stack.pop()
        parts.append("<li>" + _inline(text))
    parts.append("</li>")
    while len(stack) > 1:
        parts.append("</ul></li>")
        stack.pop()
    parts.append("</ul>")
    return "".join(parts)


def markdown_to_html(md: str) -> str:
    """HTML for the Markdown subset the templates use; all text is HTML-escaped.

    Supported: ATX headings, paragraphs, bullet lists (nested by indentation), pipe tables,
    block quotes, horizontal rules, ``**bold**``, ``<br>`` and backslash escapes. Anything else
    is shown as text; no raw HTML passes through.
    """
    lines = md.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + "\n".join(_inline(p) for p in para) + "</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            flush()
            i += 1
            continue
        if heading := _HEADING.match(line):
            flush()
            n = len(heading.group(1))
            out.append(f"<h{n}>{_inline(heading.group(2).strip())}</h{n}>")
            i += 1
            continue
        if _RULE.match(line):
            flush()
            out.append("<hr>")
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]):
            flush()
            header = _cells(line)
            i += 2
            rows: list[list[str]] = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append(_table_html(header, rows))
            continue
        if _BULLET.match(line):
            flush()
            items: list[tuple[int, str]] = []
            while i < len(lines) and (b := _BULLET.match(lines[i].rstrip())):
                items.append((len(b.group(1)), b.group(2).strip()))
                i += 1
            out.append(_list_html(items))
            continue
        if _QUOTE.match(line):
            flush()
            inner: list[str] = []
            while i < len(lines) and (q := _QUOTE.match(lines[i].rstrip())):
                inner.append(q.group(1))
                i += 1
            out.append("<blockquote>\n" + markdown_to_html("\n".join(inner)) + "\n</blockquote>")
            continue
        para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out)


def _md_labels(md: str) -> list[str]:
    """Texts of the headings, table headers and bold spans of a Markdown document (where labels live).

    A value cannot forge any of these: values are escaped and kept on one line.
    """
    labels: list[str] = []
    lines = md.split("\n")
    for i, line in enumerate(lines):
        if heading := _HEADING.match(line):
            labels.append(_plain(heading.group(2)))
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]):
            labels += [_plain(c) for c in _cells(line)]
        tokens = _inline_tokens(line)
        bold = False
        span: list[str] = []
        for kind, value in tokens:
            if kind == "strong":
                if bold:
                    labels.append("".join(span))
                    span = []
                bold = not bold
            elif bold:
                span.append(value if kind == "text" else " ")
    return labels


_HTML_LABEL = re.compile(r"<(h[1-6]|strong|th)>(.*?)</\1>", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _html_labels(page: str) -> list[str]:
    return [html.unescape(_TAG.sub(" ", m.group(2))) for m in _HTML_LABEL.finditer(page)]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _missing(required: Sequence[str], labels: Sequence[str]) -> list[str]:
    normed = [_norm(label) for label in labels]
    return [r for r in required if not any(_norm(r) in n for n in normed)]


# --------------------------------------------------------------------------- views
def _org_view(org_raw: Any, f: _Fmt) -> dict[str, Any]:
    org = _m(org_raw)
    juris = [str(j) for j in _seq(org.get("jurisdictions"))]
    if org.get("cii_operator") is True:
        op = "cii"
    elif org.get("state_organ") is True:
        op = "state_organ"
    else:
        op = "other"
    op_label, recipient, hours = _OPERATOR_CLASS[op]
    name_zh = org.get("name")
    name_en = org.get("name_en")
    officer = _m(org.get("pi_officer"))
    public = _m(org.get("public_contact"))
    return {
        "name": (name_zh or name_en) if f.zh else (name_en or name_zh),
        "name_zh": name_zh,
        "name_en": name_en,
        "sector": f.label(_SECTORS, org.get("sector")),
        "address": org.get("address"),
        "licence": org.get("licence") or ("无" if f.zh else "none"),
        "operator_class": f.pick(op_label),
        "report_recipient": f.pick(recipient),
        "report_clock": f.hours(hours),
        "jurisdictions": [f.label(_JURISDICTIONS, j) for j in juris] or None,
        "miit": "miit_telecom" in juris,
        "shenzhen": "shenzhen" in juris,
        "xiamen": "xiamen" in juris,
        "dalian": "dalian" in juris,
        "pi_officer": {"name": officer.get("name"), "phone": officer.get("phone"), "email": officer.get("email")},
        "public_contact": {"phone": public.get("phone"), "email": public.get("email"), "web": public.get("web")},
    }


def _fact(facts: Mapping[str, Any], name: str) -> Any:
    entry = facts.get(name)
    if isinstance(entry, Mapping):
        return entry.get("value")
    return None


def _first(*values: Any) -> Any:
    for v in values:
        if not _blank(v):
            return v
    return None


def _obligation_view(ob_raw: Any, f: _Fmt) -> dict[str, Any]:
    ob = _m(ob_raw)
    state = ob.get("state")
    due = ob.get("due_at")
    if _blank(due):
        due_text = (
            f.pick(("时限未起算", "clock not started")) if state == "not_started" else f.pick(("立即", "immediately"))
        )
    else:
        due_text = f.ts(due) or "—"
    rec_zh, rec_en = ob.get("recipient_zh"), ob.get("recipient_en")
    status = ob.get("status")
    met = ob.get("met_at")
    return {
        "id": ob.get("id"),
        "kind": f.label(_REPORT_KINDS, ob.get("kind")),
        "regulator": ob.get("kind") in REGULATOR_OBLIGATION_KINDS,
        "jurisdiction": f.label(_JURISDICTIONS, ob.get("jurisdiction")),
        "recipient": (rec_zh or rec_en) if f.zh else (rec_en or rec_zh),
        "basis": ob.get("basis"),
        "due": due_text,
        "status": f.label(_OBLIGATION_STATUS, status),
        "state": f.label(_OBLIGATION_STATE, state) or f.label(_OBLIGATION_STATUS, status),
        "met_at": f.ts(met) if not _blank(met) else ("—" if status != "waived" else f.pick(("已豁免", "waived"))),
        "met_by": ob.get("met_by") or "—",
        "how": ob.get("how") or "—",
        "reference": ob.get("reference") or "—",
        "_sort": _parse_ts(due) or _parse_ts(met),
    }


def _by_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: r.get("_sort") or far)


def _grade_view(inc: Mapping[str, Any], f: _Fmt) -> dict[str, Any]:
    g = _m(inc.get("grade"))
    level = g.get("level")
    computed = g.get("computed_level")
    history_raw = _seq(inc.get("grade_history")) or _seq(g.get("history"))
    history = []
    for h_raw in history_raw:
        h = _m(h_raw)
        history.append(
            {
                "at": f.ts(h.get("at")),
                "level": f.grade(h.get("level")),
                "previous": f.grade(h.get("previous")) or "—",
                "by": h.get("by") or "—",
                "overridden": bool(h.get("overridden")),
                "reason": h.get("reason") or h.get("override_reason") or "—",
            }
        )
    rank = _LEVEL_RANK.get(str(level)) if level is not None else None
    return {
        "level": level,
        "display": f.grade(level, g.get("name_zh"), g.get("name_en")),
        "colour": f.label(_COLOURS, g.get("colour")),
        "computed": f.grade(computed),
        "overridden": bool(g.get("overridden")),
        "override_reason": g.get("override_reason"),
        "reasons": [str(r) for r in _seq(g.get("reasons"))],
        "reportable": rank is not None and rank <= _LEVEL_RANK["III"],
        "history": history,
    }


def _incident_view(ctx: Mapping[str, Any], f: _Fmt) -> dict[str, Any]:
    inc = _m(ctx.get("incident"))
    facts = _m(inc.get("facts"))
    ev_raw = inc.get("evidence")
    ev = _m(ev_raw)
    has_ev = isinstance(ev_raw, Mapping) and bool(ev_raw)

    def fv(name: str) -> Any:
        return _fact(facts, name)

    # Resolved items: a recorded fact first, then what the frozen evidence says.
    window = None
    if has_ev and not (_blank(ev.get("window_start")) and _blank(ev.get("window_end"))):
        unknown = f.pick(("未知", "unknown"))
        window = f"{f.ts(ev.get('window_start')) or unknown} – {f.ts(ev.get('window_end')) or unknown}"
    measures = [
        {"at": f.ts(m.get("at")), "by": m.get("by"), "text": m.get("text"), "_sort": _parse_ts(m.get("at"))}
        for m in map(_m, _seq(inc.get("measures")))
    ]
    resolved: dict[str, Any] = {
        "discovered_at": f.ts(inc.get("discovered_at")),
        "location": fv("location"),
        "type": f.label(_INCIDENT_TYPES, fv("type")) if isinstance(fv("type"), str) else fv("type"),
        "affected_systems": _first(fv("affected_systems"), ev.get("systems")),
        "people_affected": _first(fv("people_affected"), ev.get("people_affected")),
        "sensitive_people": _first(fv("sensitive_people"), ev.get("sensitive_subjects")),
        "categories": f.categories(_first(fv("categories"), ev.get("categories"))),
        "sensitive_categories": f.categories(_first(fv("sensitive_categories"), ev.get("sensitive_categories"))),
        "window": window,
        "evidence": True if has_ev else None,
        "measures": True if measures else None,
        "measures_effect": fv("measures_effect"),
        "trend": fv("trend"),
        "possible_harm": fv("possible_harm"),
        "cause": fv("cause"),
        "leads": _first(fv("leads"), True if (_seq(inc.get("alerts")) or has_ev) else None),
        "scene_preservation": fv("scene_preservation"),
        "direct_loss_cny": fv("direct_loss_cny"),
    }

    unknown_keys: list[str] = []
    for key in [str(u) for u in _seq(inc.get("unknowns"))] + [k for k in INITIAL_REPORT_ITEMS if resolved[k] is None]:
        if key not in unknown_keys:
            unknown_keys.append(key)
    unknowns = [f.label(FACT_LABELS, k) for k in unknown_keys]

    fact_rows = []
    for name, entry_raw in facts.items():
        entry = _m(entry_raw)
        value = entry.get("value")
        if name in ("categories", "sensitive_categories"):
            value = f.categories(value)
        fact_rows.append(
            {
                "name": name,
                "label": f.label(FACT_LABELS, name),
                "value": value,
                "source": entry.get("source") or "—",
                "by": entry.get("by") or "—",
                "at": f.ts(entry.get("at")) or "—",
                "_sort": _parse_ts(entry.get("at")),
            }
        )

    evidence = None
    if has_ev:
        destinations = []
        for d in map(_m, _seq(ev.get("destinations"))):
            text = " ".join(str(x) for x in (d.get("kind"), d.get("name")) if not _blank(x))
            if not _blank(d.get("region")):
                text += f" ({d.get('region')})"
            destinations.append(text)
        evidence = {
            "computed_at": f.ts(ev.get("computed_at")),
            "query": ev.get("query"),
            "people_affected": ev.get("people_affected"),
            "distinct_subjects": ev.get("distinct_subjects"),
            "sensitive_subjects": ev.get("sensitive_subjects"),
            "records": ev.get("records"),
            "events": ev.get("events"),
            "window": window,
            "actors": _seq(ev.get("actors")),
            "systems": _seq(ev.get("systems")),
            "destinations": destinations,
            "alert_ids": _seq(ev.get("alert_ids")),
            "digest": ev.get("digest"),
        }

    alerts = [
        {
            "alert_id": a.get("alert_id"),
            "rule": a.get("rule"),
            "severity": a.get("severity"),
            "summary": a.get("summary"),
            "articles": _seq(a.get("articles")),
        }
        for a in map(_m, _seq(inc.get("alerts")))
    ]
    steps = []
    for s in map(_m, _seq(inc.get("steps"))):
        title = (s.get("title_zh") or s.get("title_en")) if f.zh else (s.get("title_en") or s.get("title_zh"))
        status = s.get("status")
        done = str(status) in _DONE_STEPS or not _blank(s.get("completed_at"))
        steps.append(
            {
                "id": s.get("id"),
                "title": title,
                "role": s.get("role") or "—",
                "due": f.ts(s.get("due_at")) or "—",
                "status": f.label(_STEP_STATUS, status) or "—",
                "done": done,
                "completed_at": f.ts(s.get("completed_at")),
                "by": s.get("by") or "—",
                "note": s.get("note") or "—",
                "_sort": _parse_ts(s.get("completed_at")),
            }
        )
    obligations = _by_time([_obligation_view(o, f) for o in _seq(inc.get("obligations"))])
    reports = [
        {
            "kind": f.label(_REPORT_KINDS, r.get("kind")),
            "raw_kind": r.get("kind"),
            "at": f.ts(r.get("at")),
            "by": r.get("by") or "—",
            "reference": r.get("reference") or "—",
            "_sort": _parse_ts(r.get("at")),
        }
        for r in map(_m, _seq(inc.get("reports")))
    ]
    initial = next((r for r in reports if r["raw_kind"] in _INITIAL_REPORT_KINDS), None)
    since = initial["_sort"] if initial else None
    updates = [
        {"at": f.ts(u.get("at")), "by": u.get("by") or "—", "text": u.get("text"), "_sort": _parse_ts(u.get("at"))}
        for u in map(_m, _seq(inc.get("updates")))
    ]

    def after(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if since is None:
            return rows
        return [r for r in rows if r["_sort"] is None or r["_sort"] > since]

    review_raw = inc.get("review")
    review = _m(review_raw)
    notices = _m(inc.get("notices"))
    handling_end = _parse_ts(inc.get("handling_ended_at"))
    closing_due = f.ts((handling_end + timedelta(days=30)).isoformat()) if handling_end else None

    # Timeline: every dated thing the record holds, oldest first.
    tl: list[dict[str, Any]] = []

    def add(at: Any, what: str, by: Any = None) -> None:
        if not _blank(at):
            tl.append({"at": f.ts(at), "what": what, "by": by or "—", "_sort": _parse_ts(at)})

    add(inc.get("discovered_at"), f.pick(("发现事件", "incident discovered")))
    add(inc.get("opened_at"), f.pick(("立案", "incident opened")), inc.get("opened_by"))
    for m in map(_m, _seq(inc.get("measures"))):
        add(m.get("at"), f.pick(("措施：", "measure: ")) + str(m.get("text") or ""), m.get("by"))
    for u in map(_m, _seq(inc.get("updates"))):
        add(u.get("at"), f.pick(("进展：", "update: ")) + str(u.get("text") or ""), u.get("by"))
    for s_raw, s in zip(map(_m, _seq(inc.get("steps"))), steps, strict=True):
        add(s_raw.get("completed_at"), f.pick(("完成步骤：", "step done: ")) + str(s["title"] or s["id"]), s["by"])
    for r_raw, r in zip(map(_m, _seq(inc.get("reports"))), reports, strict=True):
        add(r_raw.get("at"), f.pick(("已报送：", "filed: ")) + str(r["kind"] or ""), r["by"])
    for o_raw in map(_m, _seq(inc.get("obligations"))):
        if not _blank(o_raw.get("met_at")):
            ov = _obligation_view(o_raw, f)
            add(
                o_raw.get("met_at"),
                f.pick(("履行义务：", "obligation met: ")) + str(ov["recipient"] or ov["id"]),
                o_raw.get("met_by"),
            )
    for h in map(_m, _seq(inc.get("grade_history")) or _seq(_m(inc.get("grade")).get("history"))):
        add(h.get("at"), f.pick(("定级：", "graded: ")) + str(f.grade(h.get("level")) or ""), h.get("by"))
    add(inc.get("contained_at"), f.pick(("事态得到控制", "contained")))
    add(inc.get("handling_ended_at"), f.pick(("处置结束", "handling ended")))
    if not _blank(review.get("at")):
        add(review.get("at"), f.pick(("完成复盘", "review completed")), review.get("by"))
    add(inc.get("closed_at"), f.pick(("结案", "closed")))

    return {
        "generated_at": f.ts(ctx.get("generated_at")),
        "tz_note": f.offset_note(ctx.get("generated_at")),
        "org": _org_view(ctx.get("org"), f),
        "inc": {
            "id": inc.get("id"),
            "ref": inc.get("ref"),
            "title": inc.get("title"),
            "description": inc.get("description"),
            "status": f.label(_INCIDENT_STATUS, inc.get("status")),
            "drill": bool(inc.get("drill")),
            "source": f.label(_SOURCES, inc.get("source")),
            "discovered_at": f.ts(inc.get("discovered_at")),
            "opened_at": f.ts(inc.get("opened_at")),
            "opened_by": inc.get("opened_by"),
            "contained_at": f.ts(inc.get("contained_at")),
            "handling_ended_at": f.ts(inc.get("handling_ended_at")),
            "closed_at": f.ts(inc.get("closed_at")),
        },
        "grade": _grade_view(inc, f),
        "item": resolved,
        "facts": {name: (row["value"]) for name, row in zip(facts, fact_rows, strict=True)},
        "fact_rows": fact_rows,
        "changed_facts": after(fact_rows),
        "cii_involved": fv("cii_involved"),
        "systems_down_hours": fv("systems_down_hours"),
        "suspected_crime": fv("suspected_crime"),
        "support_requested": fv("support_requested"),
        "ransom": fv("ransom"),
        "leads": fv("leads"),
        "evidence": evidence,
        "alerts": alerts,
        "measures": measures,
        "measures_since": after(measures),
        "steps": steps,
        "next_steps": [s for s in steps if not s["done"]],
        "obligations": obligations,
        "regulator_obligations": [o for o in obligations if o["regulator"]],
        "notices": {k: notices.get(k) for k in ("sent", "failed", "pending", "in_doubt")},
        "reports": reports,
        "initial_report": initial,
        "updates": updates,
        "updates_since": after(updates),
        "review": {
            k: review.get(k) for k in ("cause", "responsibility", "countermeasures", "prevention", "lessons", "by")
        }
        | {"at": f.ts(review.get("at")), "present": bool(review)},
        "unknowns": unknowns,
        "closing_due": closing_due,
        "timeline": _by_time(tl),
    }


_HEX64 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def _notice_view(ctx: Mapping[str, Any], f: _Fmt) -> dict[str, Any]:
    """Only what a notice to individuals or the public may say: no ids, refs or evidence."""
    inc = _m(ctx.get("incident"))
    facts = _m(inc.get("facts"))
    ev = _m(inc.get("evidence"))
    notice = _m(ctx.get("notice"))
    org = _org_view(ctx.get("org"), f)

    def text(name: str) -> Any:
        value = _m(notice.get(name)).get(f.lang)
        return None if _blank(value) else value

    type_raw = _fact(facts, "type")
    type_text = f.label(_INCIDENT_TYPES, type_raw) if isinstance(type_raw, str) else None
    advice = _m(notice.get("advice")).get(f.lang)
    recipient = _m(ctx.get("recipient")).get("name")
    return {
        "org_name": org["name"],
        "recipient_name": None if _blank(recipient) else recipient,
        "discovered": f.day(inc.get("discovered_at")),
        "type": type_text,
        "what_happened": text("what_happened"),
        "categories": f.categories(_first(_fact(facts, "categories"), ev.get("categories"))),
        "sensitive_categories": f.categories(
            _first(_fact(facts, "sensitive_categories"), ev.get("sensitive_categories"))
        ),
        "cause": _fact(facts, "cause"),
        "possible_harm": _first(text("possible_harm"), _fact(facts, "possible_harm")),
        "measures": [m.get("text") for m in map(_m, _seq(inc.get("measures"))) if not _blank(m.get("text"))],
        "contained": not _blank(inc.get("contained_at")),
        "advice": [a for a in _seq(advice) if not _blank(a)],
        "remedies": text("remedies"),
        "pi_officer": org["pi_officer"],
        "public_contact": org["public_contact"],
        "xiamen": org["xiamen"],
        "scale": f.count_approx(_first(_fact(facts, "people_affected"), ev.get("people_affected"))),
        "drill": bool(inc.get("drill")),
        "date": f.day(ctx.get("generated_at")),
    }


def _forbidden_strings(ctx: Mapping[str, Any]) -> set[str]:
    """Strings that must never appear in a notice: the incident id and subject refs in evidence."""
    inc = _m(ctx.get("incident"))
    found: set[str] = set()
    if isinstance(inc.get("id"), str) and len(inc["id"]) >= 8:
        found.add(inc["id"])

    def walk(node: Any, subjecty: bool) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, subjecty or "subject" in str(k).lower() or "ref" in str(k).lower())
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v, subjecty)
        elif subjecty and isinstance(node, str) and len(node) >= 8:
            found.add(node)

    walk(inc.get("evidence"), False)
    return found


def _check_no_identifiers(kind: str, lang: str, output: str, ctx: Mapping[str, Any]) -> None:
    if _HEX64.search(output):
        raise DocumentError(
            f"{kind} ({lang}) contains what looks like a subject reference (64 hex characters); "
            "notices must not carry identifiers — check the measures and notice texts"
        )
    if any(s in output for s in _forbidden_strings(ctx)):
        raise DocumentError(
            f"{kind} ({lang}) contains the incident id or a subject reference from the evidence; "
            "notices must not carry identifiers — check the measures and notice texts"
        )


def _plan_view(plan_ctx: Mapping[str, Any], f: _Fmt) -> dict[str, Any]:
    pb = _m(plan_ctx.get("playbook"))
    roles = {str(r.get("id")): r for r in map(_m, _seq(pb.get("roles")))}

    def role_name(rid: Any) -> str:
        r = roles.get(str(rid))
        if not r:
            return str(rid) if not _blank(rid) else "—"
        name = (r.get("name_zh") or r.get("name_en")) if f.zh else (r.get("name_en") or r.get("name_zh"))
        return str(name or rid)

    def crit(c: Mapping[str, Any]) -> dict[str, Any]:
        value = c.get("value")
        unit = c.get("unit")
        if isinstance(value, bool):
            shown: Any = value
        else:
            shown = _display(value, f.lang, "—")
            if not _blank(unit):
                shown = f"{shown} {f.label(_UNITS, unit)}"
        op = {">=": "≥", ">": ">", "==": "="}.get(str(c.get("op") or ">="), str(c.get("op")))
        return {
            "fact": f.label(FACT_LABELS, c.get("fact")),
            "op": op,
            "value": shown,
            "source": c.get("source") or "—",
            "effective": c.get("effective") or "—",
            "verify": c.get("status") != "verified",
            "note": c.get("note") or "—",
            "grade": f.grade(c.get("grade")) if c.get("grade") else None,
            "sectors": [f.label(_SECTORS, s) for s in _seq(c.get("sectors"))] or None,
        }

    grades: list[dict[str, Any]] = []
    for g in map(_m, _seq(pb.get("grades"))):
        level = g.get("level")
        steps = [
            {
                "title": (s.get("title_zh") or s.get("title_en")) if f.zh else (s.get("title_en") or s.get("title_zh")),
                "role": role_name(s.get("role")),
                "due": f.hours(s.get("due_hours")),
            }
            for s in map(_m, _seq(pb.get("steps")))
            if level in _seq(s.get("grades"))
        ]
        obligations = []
        for o in map(_m, _seq(pb.get("obligations"))):
            if level not in _seq(o.get("grades")):
                continue
            clock = _m(o.get("clock"))
            start = clock.get("from")
            hours = f.hours(clock.get("hours"))
            if start == "handling_end":
                clock_text = f"处置结束后 {hours} 内" if f.zh else f"within {hours} after handling ends"
            else:
                clock_text = f"发现后 {hours} 内" if f.zh else f"within {hours} of discovery"
            applies = [f.label(_APPLIES_TO, a.strip()) for a in str(o.get("applies_to") or "all").split(",")]
            note = o.get("status_note") or ""
            obligations.append(
                {
                    "jurisdiction": f.label(_JURISDICTIONS, o.get("jurisdiction")),
                    "kind": f.label(_REPORT_KINDS, o.get("kind")),
                    "recipient": (o.get("recipient_zh") or o.get("recipient_en"))
                    if f.zh
                    else (o.get("recipient_en") or o.get("recipient_zh")),
                    "applies_to": applies,
                    "when": f.label(FACT_LABELS, o.get("when_fact")) if o.get("when_fact") else None,
                    "clock": clock_text,
                    "basis": o.get("basis"),
                    "verify": "verify" in f"{o.get('basis')} {note}".lower(),
                    "note": note or "—",
                    "document": f.label(_REPORT_KINDS, o.get("template")) or "—",
                }
            )
        obligations.sort(key=lambda o: str(o["jurisdiction"]))
        criteria = [crit(c) for c in map(_m, _seq(g.get("criteria")))]
        grades.append(
            {
                "level": level,
                "display": f.grade(level, g.get("name_zh"), g.get("name_en")),
                "colour": f.label(_COLOURS, g.get("colour")),
                "criteria": criteria,
                "steps": steps,
                "obligations": obligations,
            }
        )
    overlays = [crit(c) for c in map(_m, _seq(pb.get("org_overrides")))]
    drills = _m(pb.get("drills"))
    every = drills.get("every_months")
    next_due = drills.get("next_due")
    gen = _parse_ts(plan_ctx.get("generated_at"))
    overdue = False
    if isinstance(next_due, str) and gen is not None:
        try:
            overdue = date.fromisoformat(next_due[:10]) < gen.astimezone(f.tz).date()
        except ValueError:
            overdue = False
    review_from = pb.get("review_required_from")
    n_verify = sum(1 for g in grades for c in g["criteria"] if c["verify"]) + sum(1 for c in overlays if c["verify"])
    return {
        "generated_at": f.ts(plan_ctx.get("generated_at")),
        "tz_note": f.offset_note(plan_ctx.get("generated_at")),
        "org": _org_view(plan_ctx.get("org"), f),
        "plan": {
            "name": pb.get("name"),
            "version": pb.get("version"),
            "effective_from": pb.get("effective_from"),
            "source_file": pb.get("source_file"),
            "digest": pb.get("digest"),
        },
        "grades": grades,
        "overlays": overlays,
        "roles": [
            {
                "id": r.get("id"),
                "name": (r.get("name_zh") or r.get("name_en")) if f.zh else (r.get("name_en") or r.get("name_zh")),
                "contact": r.get("contact"),
            }
            for r in roles.values()
        ],
        "drills": {
            "every_months": every,
            "last": drills.get("last") or f.pick(("尚无演练记录", "no drill recorded")),
            "next_due": next_due,
            "overdue": overdue,
            "too_rare": isinstance(every, int | float) and not isinstance(every, bool) and every > 12,
        },
        "review_from": f.grade(review_from),
        "n_verify": n_verify,
    }


# --------------------------------------------------------------------------- environments
@functools.lru_cache(maxsize=16)
def _md_env(templates_dir: str) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir),
        # Markdown, not HTML: finalize escapes every value for Markdown, and the HTML is built from
        # it by markdown_to_html, which escapes all text.
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_md_finalize,
    )


@functools.lru_cache(maxsize=16)
def _html_env(templates_dir: str) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def template_name(kind: str, lang: str) -> str:
    """The file of ``kind`` in ``lang`` inside the templates directory."""
    return f"{kind}.{lang}.md.j2"


def _render_template(env: SandboxedEnvironment, name: str, tdir: Path, values: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(values)
    except jinja2.TemplateNotFound:
        raise DocumentError(f"template {name} not found in {tdir}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise DocumentError(f"template {exc.name or name} line {exc.lineno}: syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise DocumentError(f"template {name} uses a name the renderer does not provide: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise DocumentError(f"template {name} failed: {type(exc).__name__}") from None


def _unknown_text(kind: str, lang: str) -> str:
    if kind in PUBLIC_KINDS:
        return "尚在调查中" if lang == "zh" else "still being investigated"
    return "待补充" if lang == "zh" else "unknown (to be supplemented)"


# --------------------------------------------------------------------------- API
def render(kind: str, ctx: Mapping[str, Any], *, lang: str, fmt: str, templates_dir: Path | None = None) -> str:
    """Render one document of ``kind`` from ``ctx`` in ``lang`` (zh|en) as ``fmt`` (md|html).

    ``kind`` is one of :data:`DOCUMENT_KINDS` (from the incident context) or
    :data:`PLAN_KIND` (from the playbook context). Raises :class:`DocumentError` for unknown
    choices or a broken template, and :class:`MissingElementError` when the output lacks a
    required element.
    """
    _check_choice("document kind", kind, ALL_KINDS)
    _check_choice("language", lang, LANGS)
    _check_choice("format", fmt, FORMATS)
    if not isinstance(ctx, Mapping):
        raise DocumentError(f"the context must be a mapping, got {type(ctx).__name__}")
    if kind == PLAN_KIND and not isinstance(ctx.get("playbook"), Mapping):
        raise DocumentError("emergency_plan renders from the playbook context: ctx['playbook'] is missing")
    if kind != PLAN_KIND and not isinstance(ctx.get("incident"), Mapping):
        raise DocumentError(f"{kind} renders from the incident context: ctx['incident'] is missing")
    tdir = (templates_dir or default_templates_dir()).resolve()
    f = _Fmt.for_ctx(ctx, lang)
    if kind == PLAN_KIND:
        view = _plan_view(ctx, f)
    elif kind in PUBLIC_KINDS:
        view = _notice_view(ctx, f)
    else:
        view = _incident_view(ctx, f)
    name = template_name(kind, lang)
    md = _render_template(
        _md_env(str(tdir)),
        name,
        tdir,
        {"v": view, "lang": lang, "kind": kind, "unknown_text": _unknown_text(kind, lang)},
    )
    required = required_elements(kind, lang)
    if missing := _missing(required, _md_labels(md)):
        raise MissingElementError(kind, lang, "md", name, missing)
    if kind in PUBLIC_KINDS:
        _check_no_identifiers(kind, lang, md, ctx)
    if fmt == "md":
        return md
    body = markdown_to_html(md)
    h1 = re.search(r"<h1>(.*?)</h1>", body, re.DOTALL)
    title = html.unescape(_TAG.sub("", h1.group(1))) if h1 else kind
    safe_body = Markup(body)  # noqa: S704 -- markdown_to_html escapes all text; only its own tags remain
    page = _render_template(
        _html_env(str(tdir)), LAYOUT_TEMPLATE, tdir, {"title": title, "html_lang": _HTML_LANG[lang], "body": safe_body}
    )
    if missing := _missing(required, _html_labels(page)):
        raise MissingElementError(kind, lang, "html", LAYOUT_TEMPLATE, missing)
    if kind in PUBLIC_KINDS:
        _check_no_identifiers(kind, lang, page, ctx)
    return page


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
    """Render every kind × language × format and write ``out_dir/<kind>.<lang>.<fmt>``.

    Everything is rendered before anything is written, so a failing document leaves no
    partial set behind; each file is written to a temporary file and moved into place with
    :func:`os.replace`, so a reader never sees half a document.
    """
    kinds, langs, fmts = list(kinds), list(langs), list(fmts)
    for k in kinds:
        _check_choice("document kind", k, ALL_KINDS)
    for lg in langs:
        _check_choice("language", lg, LANGS)
    for ft in fmts:
        _check_choice("format", ft, FORMATS)
    rendered = [
        (f"{k}.{lg}.{ft}", render(k, ctx, lang=lg, fmt=ft, templates_dir=templates_dir))
        for k in kinds
        for lg in langs
        for ft in fmts
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for filename, text in rendered:
        target = out_dir / filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".tmp", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written
