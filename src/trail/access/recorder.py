"""The access log: one audit event per request to the API, in the trail itself.

Each event goes through an SDK :class:`~trail.sdk.client.Client` of its own (service
``trail-access``, so its own producer chain, sealed and verified like any other): the request
never waits on the broker, the SDK queues, batches and spools. What an event says (DESIGN.md §9):
the principal as actor (``staff`` or ``service``; ``system:unauthenticated`` for a request
without a valid token, with the client address as ``location.ip``), ``query`` for a read and
``modify`` for a change, the stated purpose (else ``trail access``), legal basis ``law``, the
resource and the endpoint template as target, the rows returned, the person looked up (the SDK
pseudonymises the id), and the outcome (``success``, ``denied`` for 401/403/429, ``error``
otherwise). Attributes carry only non-personal context: status, request id, token id, the
refusal's reason, an incident ref or alert id, the SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from trail.access.principals import Principal
from trail.events.personal import looks_like_personal_data
from trail.logging import get_logger
from trail.sdk.client import Client

log = get_logger("trail.access")

ACCESS_SERVICE: Final = "trail-access"
DEFAULT_PURPOSE: Final = "trail access"
UNAUTHENTICATED: Final = "unauthenticated"


@dataclass
class AccessNote:
    """What a handler tells the recorder about its request (kept in the request's state)."""

    dataset: str = ""
    rows: int = 0
    subject_ids: list[str] = field(default_factory=list)
    #: A person looked up by reference (``GET /v1/events?subject_ref=``): recorded as the event's
    #: subject, so the rules (enumeration) count the look-ups as they count any other.
    subject_refs: list[str] = field(default_factory=list)
    purpose: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    action: str = ""


def outcome_of(status: int) -> str:
    if status in (401, 403, 429):
        return "denied"
    return "success" if status < 400 else "error"


class AccessRecorder:
    """Builds the access-log event of a request and hands it to the SDK (never blocks on I/O)."""

    def __init__(self, client: Client, *, enabled: bool = True) -> None:
        self.client = client
        #: Off only for the API benchmark's side-by-side figure; no setting turns it off.
        self.enabled = enabled
        self.recorded = 0
        self.failed = 0

    def record(
        self,
        *,
        principal: Principal | None,
        role: str | None,
        method: str,
        endpoint: str,
        status: int,
        ip: str | None,
        request_id: str,
        note: AccessNote | None = None,
        token_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        if not self.enabled:
            return
        note = note or AccessNote()
        if principal is None:
            actor: dict[str, str] = {"kind": "system", "id": UNAUTHENTICATED}
        else:
            actor = {"kind": principal.actor_kind, "id": principal.name}
            if role:
                actor["role"] = role
        attrs: dict[str, str] = {"status": str(status), "request_id": request_id, "method": method}
        if token_id:
            attrs["token_id"] = token_id
        if reason:
            attrs["reason"] = reason[:1000]
        for k, v in note.attributes.items():
            if len(attrs) < 32:
                attrs[k] = str(v)[:1000]
        attrs = {_text(k)[:64]: _withheld(_text(v)) for k, v in attrs.items()}
        fields: dict[str, Any] = {
            "actor": actor,
            "action": note.action or ("query" if method in ("GET", "HEAD") else "modify"),
            "subject_ids": [s for s in note.subject_ids if s][:1],
            "record_count": max(0, int(note.rows)),
            "data_categories": ["other"],
            "purpose": _text(note.purpose or DEFAULT_PURPOSE)[:1024],
            "legal_basis": "law",
            "target": {
                "system": "trail",
                "dataset": _text(note.dataset or "api")[:256],
                "resource": _text(f"{method} {endpoint}")[:256],
            },
            "outcome": outcome_of(status),
            "attributes": attrs,
        }
        if ip:
            fields["location"] = {"ip": ip[:256]}
        try:
            refs = [r for r in note.subject_refs if r][:1]
            if refs and not fields["subject_ids"]:
                del fields["subject_ids"]
                self.client.record_pseudonymised(subject_refs=refs, **fields)
            else:
                self.client.record(**fields)
            self.recorded += 1
        except Exception as exc:  # noqa: BLE001  # the request is answered; the failure is loud in the log
            self.failed += 1
            log.error("access.record_failed", error=type(exc).__name__, endpoint=endpoint, internal=True)


def _text(value: str) -> str:
    """Request text as the access log can carry it: a lone surrogate becomes "?" (the read is
    recorded rather than refused by the acceptance rule)."""
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def _withheld(value: str) -> str:
    """An attribute value that looks like personal data (a phone number in a SQL text) is not
    stored; the request is still recorded (``sql_sha256`` identifies a query)."""
    kind = looks_like_personal_data(value)
    return value if kind is None else f"(withheld: looks like {kind})"
