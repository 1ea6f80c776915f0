"""The roles of DESIGN.md §9 and the permissions each grants: the one table the API enforces.

Separation of duties after MLPS 2.0 8.1.4.3 and GB/T 35273 §7.1: the administrator manages
principals, tokens and retention but reads no events; the auditor reads the access log and
verifies, but changes nothing except legal holds; analysts and investigators read events;
responders handle incidents; services only record.
"""

from __future__ import annotations

from typing import Final

ROLES: Final = ("service", "analyst", "investigator", "responder", "auditor", "admin")

#: permission -> the roles that grant it. An endpoint names one permission; a request is allowed
#: when the principal holds any of its roles.
PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "events.record": frozenset({"service"}),
    "events.read": frozenset({"analyst", "investigator"}),
    "events.counts": frozenset({"analyst", "investigator"}),
    "events.gaps": frozenset({"analyst", "investigator", "auditor"}),
    "subjects.lookup": frozenset({"investigator"}),
    "subjects.report": frozenset({"investigator"}),
    "compliance.report": frozenset({"auditor"}),
    "requests.read": frozenset({"investigator", "auditor"}),
    "requests.change": frozenset({"investigator"}),
    "sql.query": frozenset({"analyst", "investigator"}),
    "alerts.read": frozenset({"analyst", "investigator"}),
    "alerts.review": frozenset({"analyst", "investigator"}),
    "incidents.read": frozenset({"responder"}),
    "incidents.change": frozenset({"responder"}),
    "integrity.verify": frozenset({"auditor"}),
    "access_log.read": frozenset({"auditor"}),
    "holds.read": frozenset({"auditor", "admin"}),
    "holds.change": frozenset({"auditor"}),
    "principals.manage": frozenset({"admin"}),
    "retention.read": frozenset({"admin", "auditor"}),
    "retention.change": frozenset({"admin"}),
}


def granting_role(roles: tuple[str, ...] | list[str] | frozenset[str], permission: str) -> str | None:
    """The first of ``roles`` (in the order of :data:`ROLES`) that grants ``permission``, else None."""
    allowed = PERMISSIONS[permission]
    for role in ROLES:
        if role in roles and role in allowed:
            return role
    return None
