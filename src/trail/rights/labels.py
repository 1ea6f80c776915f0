"""Labels of the reports' codes in Chinese and English (categories come from trail.documents)."""

from __future__ import annotations

from typing import Final

from trail.documents.labels import CATEGORY_LABELS

ACTIONS: Final[dict[str, tuple[str, str]]] = {
    "collect": ("收集", "collect"),
    "view": ("查看", "view"),
    "query": ("查询", "query"),
    "use": ("使用", "use"),
    "modify": ("修改", "modify"),
    "correct": ("更正", "correct"),
    "copy": ("复制", "copy"),
    "export": ("导出", "export"),
    "print": ("打印", "print"),
    "transfer": ("传输", "transfer"),
    "provide": ("提供", "provide"),
    "disclose": ("公开", "disclose"),
    "delete": ("删除", "delete"),
    "destroy": ("销毁", "destroy"),
    "deidentify": ("去标识化", "de-identify"),
    "anonymize": ("匿名化", "anonymise"),
    "restore": ("恢复", "restore"),
    "consent_grant": ("同意", "consent given"),
    "consent_withdraw": ("撤回同意", "consent withdrawn"),
    "access_request": ("查阅请求", "access request"),
}
LEGAL_BASES: Final[dict[str, tuple[str, str]]] = {
    "consent": ("个人同意", "consent"),
    "contract": ("订立、履行合同所必需", "necessary for a contract"),
    "hr": ("人力资源管理所必需", "human-resources management"),
    "public_duty": ("履行法定职责或义务", "legal duty"),
    "news": ("新闻报道、舆论监督", "news reporting"),
    "disclosed": ("已合法公开的信息", "lawfully disclosed information"),
    "law": ("法律、行政法规规定的其他情形", "other cases provided by law"),
}
RECIPIENT_KINDS: Final[dict[str, tuple[str, str]]] = {
    "third_party": ("第三方", "third party"),
    "abroad": ("境外", "abroad"),
    "public": ("公开", "public"),
    "file": ("文件", "file"),
    "media": ("介质", "media"),
}
ACTOR_KINDS: Final[dict[str, tuple[str, str]]] = {
    "staff": ("员工", "staff"),
    "service": ("服务", "service"),
    "agent": ("受托方", "entrusted party"),
    "subject": ("本人", "the person"),
    "system": ("系统", "system"),
}


def label(table: dict[str, tuple[str, str]], code: str, lang: str) -> str:
    pair = table.get(code)
    if pair is None:
        return code
    return pair[0] if lang == "zh" else pair[1]


def category(code: str, lang: str) -> str:
    pair = CATEGORY_LABELS.get(code)
    return pair.pick(lang) if pair is not None else code
