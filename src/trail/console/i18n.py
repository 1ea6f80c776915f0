"""The console's words in Chinese and English; ``lang`` is ``zh`` or ``en``."""

from __future__ import annotations

from typing import Any, Final

LANGS: Final = ("zh", "en")

#: key -> (English, Chinese)
WORDS: Final[dict[str, tuple[str, str]]] = {
    "app": ("trail console", "trail 控制台"),
    "login": ("Log in", "登录"),
    "logout": ("Log out", "退出"),
    "token": ("Access token", "访问令牌"),
    "login_help": (
        "Paste your access token (ask an administrator: trail tokens create NAME).",
        "粘贴您的访问令牌（向管理员申请：trail tokens create NAME）。",
    ),
    "login_failed": (
        "The token is {state}; ask an administrator for a new one.",
        "令牌{state}，请向管理员申请新令牌。",
    ),
    "state_unknown": ("unknown", "无效"),
    "state_expired": ("expired", "已过期"),
    "state_revoked": ("revoked", "已吊销"),
    "state_disabled": ("of a disabled principal", "所属主体已停用"),
    "signed_in_as": ("Signed in as", "当前用户"),
    "roles": ("Roles", "角色"),
    "language": ("中文", "English"),
    "nav_incidents": ("Incidents", "事件处置"),
    "nav_alerts": ("Alerts", "告警"),
    "nav_events": ("Events", "审计事件"),
    "nav_actor": ("Actor", "操作者"),
    "nav_person": ("Person", "个人"),
    "nav_integrity": ("Integrity", "完整性"),
    "nav_access_log": ("Access log", "访问日志"),
    "nav_principals": ("Principals and tokens", "主体与令牌"),
    "forbidden": ("Not allowed", "无权访问"),
    "forbidden_text": (
        "Your roles do not allow this page ({permission}).",
        "您的角色不允许访问此页面（{permission}）。",
    ),
    "csrf_refused": (
        "The form was refused: its CSRF token is missing or stale. Reload the page and try again.",
        "表单被拒绝：缺少 CSRF 安全令牌或已失效。请刷新页面后重试。",
    ),
    "error": ("Error", "错误"),
    "not_found": ("Not found", "未找到"),
    "no_pages": ("Your roles give you no console pages.", "您的角色没有可用的控制台页面。"),
    "session_ended": ("Your session ended; log in again.", "会话已结束，请重新登录。"),
    # events
    "since": ("From", "开始时间"),
    "until": ("To", "结束时间"),
    "actor": ("Actor", "操作者"),
    "action": ("Action", "操作"),
    "category": ("Category", "数据类别"),
    "system": ("System", "系统"),
    "outcome": ("Outcome", "结果"),
    "destination": ("Destination", "去向"),
    "search": ("Search", "搜索"),
    "export_csv": ("Export CSV", "导出 CSV"),
    "next_page": ("Next page", "下一页"),
    "first_page": ("First page", "第一页"),
    "occurred_at": ("Time", "时间"),
    "records": ("Records", "记录数"),
    "subjects": ("People", "个人数"),
    "purpose": ("Purpose", "目的"),
    "no_events": ("No events match.", "没有匹配的事件。"),
    "event": ("Event", "事件"),
    "integrity_status": ("Integrity", "完整性"),
    "sealed_in": ("Sealed in checkpoint {seq}", "已封存于检查点 {seq}"),
    "not_sealed": ("Not sealed yet", "尚未封存"),
    "download_proof": ("Download inclusion proof", "下载包含证明"),
    "any": ("any", "全部"),
    # actor
    "actor_id": ("Actor id", "操作者 ID"),
    "volume": ("Records per hour", "每小时记录数"),
    "usual": ("usual level (average per hour)", "通常水平（每小时平均）"),
    "categories": ("Categories", "数据类别"),
    "destinations": ("Destinations", "去向"),
    "alerts": ("Alerts", "告警"),
    "show": ("Show", "查看"),
    # person
    "subject_id": ("Person's id", "个人标识"),
    "person_help": (
        "The id is sent in the form body only, never in an address; "
        "the lookup and its purpose are kept in the access log.",
        "标识仅在表单中提交，不会出现在地址中；查询及其目的记入访问日志。",
    ),
    "look_up": ("Look up", "查询"),
    # alerts
    "status": ("Status", "状态"),
    "rule": ("Rule", "规则"),
    "severity": ("Severity", "严重程度"),
    "summary": ("Summary", "摘要"),
    "window": ("Window", "时间窗口"),
    "evidence": ("Evidence", "证据"),
    "reason": ("Reason", "理由"),
    "ack": ("Acknowledge", "确认"),
    "dismiss": ("Dismiss", "驳回"),
    "reviewer": ("Reviewer", "审核人"),
    "selected": ("Selected alerts", "所选告警"),
    "no_alerts": ("No alerts match.", "没有匹配的告警。"),
    "reviewed": ("{n} alert(s) reviewed.", "已审核 {n} 条告警。"),
    # incidents
    "incident": ("Incident", "事件"),
    "grade": ("Grade", "级别"),
    "next_deadline": ("Next deadline", "下一期限"),
    "time_left": ("Time left", "剩余时间"),
    "overdue": ("OVERDUE", "已逾期"),
    "no_incidents": ("No open incidents.", "没有未结事件。"),
    "title": ("Title", "标题"),
    "why": ("Why", "原因"),
    "facts": ("Facts", "事实"),
    "source": ("Source", "来源"),
    "obligations": ("Obligations", "义务"),
    "due": ("Due", "期限"),
    "met": ("Met", "已履行"),
    "record_met": ("Record as met", "记录为已履行"),
    "how_met": ("How it was met", "履行方式"),
    "steps": ("Steps", "步骤"),
    "timeline": ("Timeline", "时间线"),
    "documents": ("Documents", "文书"),
    "plan": ("Emergency plan", "应急预案"),
    "notices": ("Notices", "通知"),
    "draft": ("Draft notices", "起草通知"),
    "approve": ("Approve notices", "批准通知"),
    "send": ("Send notices", "发送通知"),
    "progress": ("Progress", "进度"),
    "value": ("Value", "值"),
    "by": ("By", "操作人"),
    "at": ("At", "时间"),
    # integrity
    "verify_now": ("Verify now", "立即验证"),
    "last_verification": ("Last verification", "最近一次验证"),
    "verification_running": (
        "Verifying the whole trail; this page reloads until the result is here",
        "正在验证全部审计记录；本页将自动刷新，直至得出结果",
    ),
    "verification_failed": ("The verification could not finish", "验证未能完成"),
    "findings": ("Findings", "发现"),
    "checkpoints": ("Checkpoints", "检查点"),
    "none": ("none", "无"),
    # access log / principals
    "principal": ("Principal", "主体"),
    "resource": ("Resource", "资源"),
    "tokens": ("Tokens", "令牌"),
    "kind": ("Kind", "类型"),
    "disabled": ("Disabled", "已停用"),
    "disable": ("Disable", "停用"),
    "enable": ("Enable", "启用"),
    "expires_at": ("Expires", "到期"),
    "state": ("State", "状态"),
    "revoke": ("Revoke", "吊销"),
    "create_token": ("Create token", "创建令牌"),
    "new_token": ("New token (shown once):", "新令牌（仅显示一次）："),
    "add_principal": ("Add principal", "添加主体"),
    "name": ("Name", "名称"),
}


#: (kind, value) -> (English, Chinese): the values of statuses, states, severities and outcomes.
VALUES: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("alert", "open"): ("open", "待审核"),
    ("alert", "acknowledged"): ("acknowledged", "已确认"),
    ("alert", "dismissed"): ("dismissed", "已驳回"),
    ("severity", "low"): ("low", "低"),
    ("severity", "medium"): ("medium", "中"),
    ("severity", "high"): ("high", "高"),
    ("severity", "critical"): ("critical", "严重"),
    ("incident", "open"): ("open", "处置中"),
    ("incident", "contained"): ("contained", "已控制"),
    ("incident", "resolved"): ("resolved", "已处置"),
    ("incident", "closed"): ("closed", "已结案"),
    ("obligation", "open"): ("open", "待履行"),
    ("obligation", "met"): ("met", "已履行"),
    ("obligation", "waived"): ("waived", "已豁免"),
    ("state", "ok"): ("on time", "期限内"),
    ("state", "due_soon"): ("due soon", "即将到期"),
    ("state", "overdue"): ("overdue", "已逾期"),
    ("state", "met"): ("met", "已履行"),
    ("state", "met_late"): ("met late", "逾期履行"),
    ("state", "waived"): ("waived", "已豁免"),
    ("state", "not_started"): ("not started", "未开始计时"),
    ("step", "pending"): ("pending", "待办"),
    ("step", "started"): ("started", "进行中"),
    ("step", "completed"): ("completed", "已完成"),
    ("step", "skipped"): ("skipped", "已跳过"),
    ("outcome", "success"): ("success", "成功"),
    ("outcome", "failure"): ("failure", "失败"),
    ("outcome", "denied"): ("denied", "拒绝"),
    ("outcome", "error"): ("error", "错误"),
}


def value_label(lang: str, kind: str, value: object) -> str:
    pair = VALUES.get((kind, str(value)))
    if pair is None:
        return str(value if value is not None else "")
    return pair[1] if lang == "zh" else pair[0]


def pick(lang: str | None) -> str:
    return lang if lang in LANGS else "zh"


def from_accept_language(header: str | None) -> str:
    text = (header or "").strip().lower()
    if not text:
        return "zh"
    return "zh" if text.startswith("zh") else "en"


def translate(lang: str, key: str, **params: Any) -> str:
    pair = WORDS.get(key)
    if pair is None:
        return key
    text = pair[1] if lang == "zh" else pair[0]
    return text.format(**params) if params else text
