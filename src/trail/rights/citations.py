"""The articles each section of the compliance report evidences, cited from the texts in
``regulations/`` (MIIT Order 24, the Shenzhen Data Regulations, the Dalian specification), and
from the national rules whose text trail does not ship (PIPL, the 2025 measures): those carry
``status: "summary; verify"`` so a reader knows what to check with counsel."""

from __future__ import annotations

from typing import Final

TEXT: Final = "text in regulations/"
VERIFY: Final = "summary; verify"

MIIT_13_3: Final = {
    "source": "MIIT Order No. 24 (2013)",
    "article": "Art. 13(3)",
    "says": "review the export, copy and destruction of information in bulk, and take measures to prevent leaks",
    "status": TEXT,
}
MIIT_13_6: Final = {
    "source": "MIIT Order No. 24 (2013)",
    "article": "Art. 13(6)",
    "says": "record the personnel, time, place, events and other information that operate the user's personal "
    "information",
    "status": TEXT,
}
MIIT_16: Final = {
    "source": "MIIT Order No. 24 (2013)",
    "article": "Art. 16",
    "says": "self-checks on the protection of users' personal information at least once a year, recorded",
    "status": TEXT,
}
SZ_25: Final = {
    "source": "Shenzhen SEZ Data Regulations (2021)",
    "article": "Art. 25",
    "says": "promptly delete personal data when the storage period is completed or the purpose is realised",
    "status": TEXT,
}
SZ_75: Final = {
    "source": "Shenzhen SEZ Data Regulations (2021)",
    "article": "Art. 75",
    "says": "record the full process of data handling, so that sources are legal and handling is clear and traceable",
    "status": TEXT,
}
SZ_83: Final = {
    "source": "Shenzhen SEZ Data Regulations (2021)",
    "article": "Art. 83",
    "says": "monitoring and alerts for data leaks, damage, loss, alteration and other abnormal situations",
    "status": TEXT,
}
SZ_85: Final = {
    "source": "Shenzhen SEZ Data Regulations (2021)",
    "article": "Art. 85",
    "says": "emergency response plans that rank incidents by threat and scope, with handling measures per rank",
    "status": TEXT,
}
DL_6_4_1: Final = {
    "source": "Dalian PI protection specification",
    "article": "6.4.1",
    "says": "使用和提供应在使用目的范围之内 (use and provision within the purpose)",
    "status": TEXT,
}
DL_6_7_5_1: Final = {
    "source": "Dalian PI protection specification",
    "article": "6.7.5.1",
    "says": "明确个人信息接触人员的权限及责任 (access rights of those who touch PI)",
    "status": TEXT,
}
DL_7: Final = {
    "source": "Dalian PI protection specification",
    "article": "7.1, 7.2.1, 7.2.2",
    "says": "内部检查；监查计划与监查报告；监查记录包括对象、目的、范围、时间、结果 "
    "(internal checks; audits with records)",
    "status": TEXT,
}
PIPL_45: Final = {"source": "PIPL", "article": "Art. 45", "says": "a copy of one's PI, in time", "status": VERIFY}
PIPL_50: Final = {
    "source": "PIPL",
    "article": "Art. 50",
    "says": "a convenient mechanism for individuals' requests; reasons given for refusals",
    "status": VERIFY,
}
PIPL_51: Final = {
    "source": "PIPL",
    "article": "Art. 51",
    "says": "internal management, access control, security measures, incident plans",
    "status": VERIFY,
}
PIPL_57: Final = {
    "source": "PIPL",
    "article": "Art. 57",
    "says": "on a leak, act at once and notify the authority and the individuals",
    "status": VERIFY,
}
AUDIT_2025: Final = {
    "source": "PI Protection Compliance Audit Measures (in force 2025-05-01)",
    "article": "Arts. 3-5 and annexed guidelines",
    "says": "regular compliance audits (>= 10 M people: every 2 years), with records; items include logging, "
    "access control, the incident plan and individuals' requests",
    "status": VERIFY,
}
NDSR_12: Final = {
    "source": "Network Data Security Management Regulations (in force 2025-01-01)",
    "article": "Art. 12",
    "says": "records of providing PI to others or entrusting its processing kept >= 3 years",
    "status": VERIFY,
}
CSL_21: Final = {
    "source": "Cybersecurity Law",
    "article": "Art. 21(3)",
    "says": "keep network logs >= 6 months",
    "status": VERIFY,
}
MLPS_AUDIT: Final = {
    "source": "GB/T 22239-2019 (MLPS 2.0, level 3)",
    "article": "8.1.4.3",
    "says": "audit every user; protect audit records; the auditors' own actions are audited",
    "status": VERIFY,
}

#: section -> the articles it evidences.
SECTIONS: Final[dict[str, list[dict[str, str]]]] = {
    "inventory": [SZ_75, MIIT_13_6, DL_6_4_1, MIIT_16, AUDIT_2025],
    "sensitive": [PIPL_51, AUDIT_2025],
    "bulk_operations": [MIIT_13_3, AUDIT_2025],
    "provisions": [NDSR_12, SZ_75, DL_6_4_1],
    "deletion_retention": [SZ_25, CSL_21, NDSR_12],
    "alerts": [SZ_83, MIIT_13_3],
    "incidents": [SZ_85, PIPL_57, PIPL_51],
    "requests": [PIPL_45, PIPL_50],
    "access": [DL_6_7_5_1, MLPS_AUDIT, PIPL_51],
    "integrity": [SZ_75, MIIT_13_6, DL_7, MIIT_16],
}
