"""Generated sentences as message codes with parameters, rendered in Chinese or English.

A detector's alert summary, an incident's title made from its first alert, and the reasons of a
grade are stored as a code and its parameters (besides the English text kept for the command
line), so a Chinese document or page says them in Chinese: no English fragment in a Chinese
sentence. Parameters are numbers, the event schema's action names, rule names, fact names, or
identifiers (actor ids, regions) shown as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

LANGS: Final = ("zh", "en")

#: code -> (English, Chinese) with ``{name}`` parameters.
CATALOGUE: Final[dict[str, tuple[str, str]]] = {
    # detector alert summaries
    "alert.bulk_export.single": (
        "{action} of {records} records in one operation",
        "单次{action}操作涉及 {records} 条记录",
    ),
    "alert.bulk_export.daily": (
        "{records} records moved in {operations} operations within one local day",
        "一个自然日内经 {operations} 次操作转移 {records} 条记录",
    ),
    "alert.bulk_destruction": (
        "{action} of {records} records in one operation by an actor that is not an approved job",
        "非经批准的作业单次{action} {records} 条记录",
    ),
    "alert.volume_anomaly": (
        "{operations} operations in one hour; threshold from the baseline {threshold}",
        "一小时内 {operations} 次操作，超过依基线计算的阈值 {threshold}",
    ),
    "alert.enumeration": (
        "{subjects} distinct subjects touched within {minutes} min",
        "{minutes} 分钟内接触 {subjects} 个不同的个人信息主体",
    ),
    "alert.off_hours.sensitive_weekend": ("sensitive categories handled at the weekend", "周末处理敏感个人信息"),
    "alert.off_hours.sensitive_hour": (
        "sensitive categories handled at {hour}h local time",
        "当地时间 {hour} 时处理敏感个人信息",
    ),
    "alert.off_hours.records_weekend": ("{records} records handled at the weekend", "周末处理 {records} 条记录"),
    "alert.off_hours.records_hour": (
        "{records} records handled at {hour}h local time",
        "当地时间 {hour} 时处理 {records} 条记录",
    ),
    "alert.sensitive.no_consent_ref": (
        "sensitive categories handled on consent without consent_ref",
        "以同意为依据处理敏感个人信息，但未记录同意凭证",
    ),
    "alert.sensitive.basis": (
        "sensitive categories handled on legal basis {basis}",
        "以“{basis}”为合法性基础处理敏感个人信息",
    ),
    "alert.after_withdrawal": (
        "{action} of {subjects} subjects after they withdrew consent",
        "在 {subjects} 个主体撤回同意后仍对其进行{action}",
    ),
    "alert.cross_border": (
        "{action} to a destination outside {region}",
        "{action}至 {region} 以外的目的地",
    ),
    "alert.denied_burst.actor": (
        "{operations} denied operations by one actor within {minutes} min",
        "同一操作者 {minutes} 分钟内 {operations} 次操作被拒绝",
    ),
    "alert.denied_burst.ip": (
        "{operations} denied operations by {actors} actors from one IP within {minutes} min",
        "同一 IP 的 {actors} 个操作者 {minutes} 分钟内 {operations} 次操作被拒绝",
    ),
    # incident titles
    "incident.title.from_alert": ("{rule} by {actor}", "{actor}：{rule}"),
    # grade reasons
    "grade.default": (
        "no criterion of grades I-III holds: grade IV (general) by default",
        "未达到 III 级及以上任何标准：一般（IV 级）",
    ),
    "grade.criterion": ("{fact} {value}: {criterion}", "{fact}为 {value}：{criterion}"),
}

ACTIONS_ZH: Final[dict[str, str]] = {
    "collect": "收集", "view": "查看", "query": "查询", "use": "使用", "modify": "修改", "correct": "更正",
    "copy": "复制", "export": "导出", "print": "打印", "transfer": "转移", "provide": "提供", "disclose": "公开",
    "delete": "删除", "destroy": "销毁", "deidentify": "去标识化", "anonymize": "匿名化", "store": "存储",
    "transmit": "传输", "process": "加工", "consent_grant": "授予同意", "consent_withdraw": "撤回同意",
}  # fmt: skip

RULES: Final[dict[str, tuple[str, str]]] = {
    "bulk_export": ("bulk export", "批量导出"),
    "bulk_destruction": ("bulk destruction", "批量销毁"),
    "volume_anomaly": ("volume anomaly", "操作量异常"),
    "enumeration": ("enumeration", "遍历查询"),
    "off_hours": ("off-hours handling", "非工作时间处理"),
    "sensitive_without_consent": ("sensitive data without consent", "无同意处理敏感个人信息"),
    "after_withdrawal": ("handling after consent withdrawn", "撤回同意后继续处理"),
    "cross_border": ("cross-border transfer", "跨境传输"),
    "denied_burst": ("burst of denied operations", "连续被拒绝的操作"),
}

LEGAL_BASES_ZH: Final[dict[str, str]] = {
    "consent": "同意", "contract": "合同", "hr": "人力资源管理", "law": "法定职责或义务", "emergency": "紧急情况",
    "news": "新闻报道", "public": "已公开信息", "legitimate_interest": "正当利益", "other": "其他",
}  # fmt: skip

FACTS: Final[dict[str, tuple[str, str]]] = {
    "people_affected": ("people_affected", "受影响人数"),
    "sensitive_people": ("sensitive_people", "涉及敏感个人信息的人数"),
    "direct_loss_cny": ("direct_loss_cny", "直接经济损失（元）"),
    "systems_down_hours": ("systems_down_hours", "系统中断时长（小时）"),
    "cii_involved": ("cii_involved", "是否涉及关键信息基础设施"),
    "serious_threat": ("serious_threat", "是否构成严重威胁"),
    "suspected_crime": ("suspected_crime", "是否涉嫌犯罪"),
}


UNITS_ZH: Final[dict[str, str]] = {"people": "人", "CNY": "元", "hours": "小时"}


def fact_label(fact: str, lang: str) -> str:
    """A grading fact's name: the identifier in English, its name in Chinese."""
    return FACTS.get(fact, (fact, fact))[1] if lang == "zh" else fact


def unit_label(unit: str, lang: str) -> str:
    return UNITS_ZH.get(unit, unit) if lang == "zh" else unit


class Message(NamedTuple):
    code: str
    params: Mapping[str, Any] = {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "params": dict(self.params)}

    def text(self, lang: str = "en") -> str:
        return render(self.code, self.params, lang)


def _shown(name: str, value: Any, lang: str) -> str:
    if isinstance(value, bool):
        return ("是" if value else "否") if lang == "zh" else str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if lang != "zh":
        return text
    if name == "action":
        return ACTIONS_ZH.get(text, text)
    if name == "rule":
        return RULES.get(text, (text, text))[1]
    if name == "basis":
        return LEGAL_BASES_ZH.get(text, text)
    if name == "fact":
        return FACTS.get(text, (text, text))[1]
    return text


def render(code: str, params: Mapping[str, Any] | None, lang: str) -> str:
    """The sentence of ``code`` in ``lang`` (zh or en); an unknown code renders as the code itself."""
    pair = CATALOGUE.get(code)
    if pair is None:
        return code
    template = pair[1] if lang == "zh" else pair[0]
    values = {k: _shown(k, v, lang) for k, v in dict(params or {}).items()}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return template


def from_dict(raw: Any) -> Message | None:
    """A message from its stored form ``{"code", "params"}``; None when it is not one."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("code"), str) or raw["code"] not in CATALOGUE:
        return None
    params = raw.get("params")
    return Message(raw["code"], dict(params) if isinstance(params, Mapping) else {})


def localised(raw: Any, lang: str, fallback: str) -> str:
    """The stored message ``raw`` in ``lang``, else ``fallback`` (text written before messages had codes)."""
    m = from_dict(raw)
    return m.text(lang) if m is not None else fallback
