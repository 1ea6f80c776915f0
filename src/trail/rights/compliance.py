"""The compliance report over a period (PI compliance audit measures 2025, MIIT Art. 16, Dalian 7),
signed with the checkpoint key so an auditor can check it offline.

Every figure carries the query that produced it (``query``: SQL over the trail's tables, or the
command that gives it), and every section the articles it evidences (``articles``). The JSON keys
are a contract: ``period``, ``events_total``, ``by_action``, ``by_legal_basis``,
``sensitive_without_consent``, ``bulk_operations`` (``total``, ``reviewed``), ``provisions``
(``third_party``, ``abroad``), ``alerts_by_rule``, ``incidents``, ``requests``, ``access``,
``integrity``, ``signature``.

The signature is Ed25519 over the canonical encoding of the report without ``signature``
(UTF-8 JSON, sorted keys, no insignificant whitespace), the encoding the events' hashes use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from trail.errors import ValidationError
from trail.events.model import format_timestamp
from trail.integrity.keys import PublicKey, SigningKey
from trail.rights.citations import SECTIONS
from trail.rights.subject_report import Period
from trail.storage.reports import PeriodQueries
from trail.storage.store import Store

KIND: Final = "trail.compliance/v1"
SIGNATURE_ALG: Final = "ed25519"


def canonical(report: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in report.items() if k != "signature"}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _rows_to_map(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {str(r[key]): {k: v for k, v in r.items() if k != key} for r in rows}


def _aware(text: Any) -> datetime | None:
    if not text:
        return None
    dt = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def incidents_section(views: Iterable[Mapping[str, Any]], period: Period) -> dict[str, Any]:
    """Incidents open at any time in the period, each with whether every obligation was met on time."""
    assert period.start is not None and period.end is not None
    items = []
    tally = {"met": 0, "met_late": 0, "overdue": 0, "open": 0, "waived": 0}
    for v in views:
        found = _aware(v.get("discovered_at")) or _aware(v.get("opened_at"))
        closed = _aware(v.get("closed_at"))
        if found is None or found >= period.end or (closed is not None and closed < period.start):
            continue
        counts = {k: 0 for k in tally}
        for ob in v.get("obligations", []):
            state = ob.get("state", "")
            key = state if state in ("met", "met_late", "overdue", "waived") else "open"
            counts[key] += 1
            tally[key] += 1
        items.append(
            {
                "ref": v["ref"],
                "title": v.get("title", ""),
                "drill": bool(v.get("drill")),
                "grade": (v.get("grade") or {}).get("level"),
                "status": v.get("status"),
                "discovered_at": v.get("discovered_at"),
                "closed_at": v.get("closed_at"),
                "obligations": counts,
                "all_on_time": counts["met_late"] == 0 and counts["overdue"] == 0,
            }
        )
    return {
        "total": len(items),
        "obligations": tally,
        "all_on_time": tally["met_late"] == 0 and tally["overdue"] == 0,
        "items": items,
        "query": "trail incidents list, then trail incidents show REF (obligations: state met|met_late|overdue|"
        "waived, else open); incidents discovered before the period's end and not closed before its start",
        "articles": SECTIONS["incidents"],
    }


def build_compliance_report(
    store: Store,
    period: Period,
    *,
    verify: Mapping[str, Any],
    checkpoint: Mapping[str, Any] | None,
    incidents: Iterable[Mapping[str, Any]] = (),
    requests: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The unsigned report (sign it with :func:`sign`)."""
    if period.start is None or period.end is None:
        raise ValidationError("from", "a compliance report covers a period: give --from and --to")
    q = PeriodQueries(store, period.start, period.end)
    a = q.scalars()
    g = q.groupings()
    cats = q.by_category()
    rec = q.by_recipient()
    alerts = q.alerts_by_rule()
    access_total = q.access_total()

    def figure(**columns: str) -> dict[str, Any]:
        """A figure of the scalars' scan: its values, the query, and which result columns they are."""
        return {k: int(a.get(c) or 0) for k, c in columns.items()} | {"query": a["query"], "columns": columns}

    def grouped(dimension: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        return [
            {**{k: r[k] for k in keys}, "events": int(r["events"]), "records": int(r["records"])}
            for r in g["rows"]
            if r["dimension"] == dimension
        ]

    def provision(kind: str) -> dict[str, Any]:
        out = figure(events=f"{kind}_events", records=f"{kind}_records", recipients=f"{kind}_recipients")
        rows = [{k: v for k, v in r.items() if k != "kind"} for r in rec["rows"] if r["kind"] == kind]
        out["by_recipient"] = {"rows": rows, "query": rec["query"], "where": f"kind = '{kind}'"}
        return out

    by_action = grouped("action", ("action",))
    by_basis = grouped("legal_basis", ("legal_basis",))
    deletions = [
        {"action": x, "events": int(a.get(f"{x}_events") or 0), "records": int(a.get(f"{x}_records") or 0)}
        for x in ("delete", "destroy", "anonymize", "deidentify")
        if a.get(f"{x}_events")
    ]
    return {
        "kind": KIND,
        "generated_at": format_timestamp(now or datetime.now(UTC)),
        "period": period.as_dict(),
        "articles": SECTIONS,
        "events_total": figure(events="events", records="records"),
        "by_action": {"items": _rows_to_map(by_action, "action"), "query": g["query"], "where": "dimension = 'action'"},
        "by_legal_basis": {
            "items": _rows_to_map(by_basis, "legal_basis"),
            "query": g["query"],
            "where": "dimension = 'legal_basis'",
        },
        "by_purpose": {"rows": grouped("purpose", ("purpose",)), "query": g["query"], "where": "dimension = 'purpose'"},
        "by_category": cats,
        "by_system": {
            "rows": grouped("system", ("system", "dataset")),
            "query": g["query"],
            "where": "dimension = 'system'",
        },
        "sensitive": figure(events="sensitive_events", records="sensitive_records"),
        "sensitive_without_consent": figure(events="without_consent_events", records="without_consent_records"),
        "bulk_operations": q.bulk(),
        "provisions": {"third_party": provision("third_party"), "abroad": provision("abroad")},
        "deletion": {
            "by_action": {"rows": deletions, "query": a["query"], "columns": "<action>_events, <action>_records"},
            "retention_records": q.retention_records(),
        },
        "alerts_by_rule": {"items": _rows_to_map(alerts["rows"], "rule"), "query": alerts["query"]},
        "incidents": incidents_section(incidents, period),
        "requests": dict(requests) if requests is not None else {"total": 0, "query": "trail requests list"},
        "access": {
            "requests": int(access_total.get("requests") or 0),
            "denied": int(access_total.get("denied") or 0),
            "person_lookups": int(access_total.get("person_lookups") or 0),
            "query": access_total["query"],
            "by_principal": q.access_by_principal(),
        },
        "integrity": {
            "verify": dict(verify),
            "checkpoint": dict(checkpoint) if checkpoint else None,
            "query": "trail verify (offline: trail verify --public-key checkpoint.pub)",
        },
    }


def sign(report: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    body = canonical(report)
    report["signature"] = {
        "alg": SIGNATURE_ALG,
        "key_id": key.public.key_id,
        "public_key": key.public.raw_hex,
        "sha256": hashlib.sha256(body).hexdigest(),
        "value": key.sign(body),
    }
    return report


def check(report: Any, public_key: PublicKey) -> dict[str, Any]:
    """Whether ``report`` is a compliance report signed by ``public_key`` and unchanged since;
    ``{"valid", "reason", "key_id", "period"}``."""
    if not isinstance(report, dict) or report.get("kind") != KIND:
        return {"valid": False, "reason": "not a trail compliance report (kind is not trail.compliance/v1)"}
    sig = report.get("signature")
    if not isinstance(sig, dict) or sig.get("alg") != SIGNATURE_ALG or not isinstance(sig.get("value"), str):
        return {"valid": False, "reason": "no Ed25519 signature"}
    out = {"key_id": public_key.key_id, "period": report.get("period")}
    if sig.get("key_id") != public_key.key_id:
        return {**out, "valid": False, "reason": f"signed with key {sig.get('key_id')}, not {public_key.key_id}"}
    body = canonical(report)
    if not public_key.verify(sig["value"], body):
        return {**out, "valid": False, "reason": "the signature does not match the report: it was changed"}
    return {**out, "valid": True, "reason": "signature valid: the report is as signed", "sha256": sig.get("sha256")}
