"""One table of incident commands, served the same way by the CLI, the HTTP API and tests.

``dispatch(service, command, ref, args)`` checks the arguments (a missing or mistyped one is
a :class:`UsageError` that names it) and runs the service method; the answer is the
incident's view. :class:`LocalIncidents` runs commands in-process; :class:`RemoteIncidents`
sends the same commands to ``trail up``'s API (``POST /v1/incidents/{ref}/{command}``), so a
command means the same wherever it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from trail.errors import UsageError
from trail.incidents import evidence
from trail.incidents.application import IncidentService, parse_time
from trail.incidents.domain import Incident

#: Facts a responder may record, with their kind (others are free text).
FACT_KINDS: dict[str, str] = {
    "people_affected": "int",
    "sensitive_people": "int",
    "direct_loss_cny": "number",
    "systems_down_hours": "number",
    "cii_involved": "bool",
    "serious_threat": "bool",
    "suspected_crime": "bool",
    "categories": "list",
    "sensitive_categories": "list",
    "cause": "text",
    "possible_harm": "text",
    "location": "text",
    "type": "text",
    "systems": "list",
    "actors": "list",
}


def coerce_fact(name: str, value: Any) -> Any:
    """A fact's value in its kind; text from the command line is converted, with clear errors."""
    kind = FACT_KINDS.get(name, "text")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "y"):
            return True
        if text in ("false", "no", "0", "n"):
            return False
        raise UsageError(f"fact {name}: must be true or false, got {str(value)[:20]!r}")
    if kind in ("int", "number"):
        if isinstance(value, bool):
            raise UsageError(f"fact {name}: must be a number")
        try:
            number = float(str(value).replace(",", "").replace("_", ""))
        except ValueError:
            raise UsageError(f"fact {name}: must be a number, got {str(value)[:20]!r}") from None
        if number < 0 or number != number:
            raise UsageError(f"fact {name}: must be 0 or more")
        if kind == "int":
            if not number.is_integer():
                raise UsageError(f"fact {name}: must be a whole number")
            return int(number)
        return number
    if kind == "list":
        if isinstance(value, list):
            return [str(v) for v in value]
        return [v.strip() for v in str(value).split(",") if v.strip()]
    text = str(value)
    if not text.strip():
        raise UsageError(f"fact {name}: must not be empty")
    if len(text) > 4000:
        raise UsageError(f"fact {name}: at most 4000 characters")
    return text


def _need(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UsageError(f"{name}: required")
    if not isinstance(value, str):
        raise UsageError(f"{name}: must be text")
    return value


def _opt(args: Mapping[str, Any], name: str, default: str = "") -> str:
    value = args.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise UsageError(f"{name}: must be text")
    return value


def _version(args: Mapping[str, Any]) -> int | None:
    v = args.get("expected_version")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError("expected_version: must be a whole number (the version you read)")
    return v


def _time(args: Mapping[str, Any], name: str) -> datetime | None:
    v = args.get(name)
    if v in (None, ""):
        return None
    return parse_time(str(v), name)


_Handler = Callable[[IncidentService, str, Mapping[str, Any]], Incident]


def _notices_drafted(s: IncidentService, a: Mapping[str, Any]) -> Callable[[Incident], Incident]:
    def act(inc: Incident) -> Incident:
        inc.draft_notices(
            by=_need(a, "by"),
            at=s.now(),
            subjects=int(a.get("subjects", 0)),
            subjects_digest=_need(a, "subjects_digest"),
            files=[str(f) for f in a.get("files", [])],
        )
        return inc

    return act


def _notices_approved(s: IncidentService, a: Mapping[str, Any]) -> Callable[[Incident], Incident]:
    def act(inc: Incident) -> Incident:
        inc.approve_notices(by=_need(a, "by"), at=s.now())
        return inc

    return act


def _notice_batch(s: IncidentService, a: Mapping[str, Any]) -> Callable[[Incident], Incident]:
    batch = a.get("batch")
    if not isinstance(batch, Mapping) or "batch_id" not in batch:
        raise UsageError("batch: an object with batch_id, state and counts")

    def act(inc: Incident) -> Incident:
        inc.record_notice_batch(dict(batch), by=_need(a, "by"), at=s.now())
        return inc

    return act


COMMANDS: dict[str, _Handler] = {
    "fact": lambda s, r, a: s.record_fact(
        r,
        _need(a, "name"),
        coerce_fact(_need(a, "name"), a.get("value")),
        source=_need(a, "source"),
        by=_need(a, "by"),
        reason=_opt(a, "reason"),
        expected_version=_version(a),
    ),
    "grade": lambda s, r, a: s.set_grade(
        r,
        (_opt(a, "level") or None),
        by=_need(a, "by"),
        reason=_opt(a, "reason") or None,
        expected_version=_version(a),
    ),
    "step": lambda s, r, a: s.step(
        r, _need(a, "step"), _need(a, "action"), by=_need(a, "by"), note=_opt(a, "note"), expected_version=_version(a)
    ),
    "meet": lambda s, r, a: s.meet(
        r,
        _need(a, "obligation"),
        by=_need(a, "by"),
        how=_need(a, "how"),
        reference=_opt(a, "reference"),
        at=_time(a, "at"),
        expected_version=_version(a),
    ),
    "waive": lambda s, r, a: s.waive(
        r, _need(a, "obligation"), by=_need(a, "by"), reason=_need(a, "reason"), expected_version=_version(a)
    ),
    "measure": lambda s, r, a: s.measure(r, _need(a, "text"), by=_need(a, "by"), expected_version=_version(a)),
    "update": lambda s, r, a: s.update(r, _need(a, "text"), by=_need(a, "by"), expected_version=_version(a)),
    "contain": lambda s, r, a: s.contain(r, by=_need(a, "by"), note=_opt(a, "note"), expected_version=_version(a)),
    "resolve": lambda s, r, a: s.resolve(r, by=_need(a, "by"), note=_opt(a, "note"), expected_version=_version(a)),
    "review": lambda s, r, a: s.review(
        r,
        by=_need(a, "by"),
        cause=_opt(a, "cause"),
        responsibility=_opt(a, "responsibility"),
        countermeasures=_opt(a, "countermeasures"),
        prevention=_opt(a, "prevention"),
        lessons=_opt(a, "lessons"),
        expected_version=_version(a),
    ),
    "close": lambda s, r, a: s.close(r, by=_need(a, "by"), reason=_opt(a, "reason"), expected_version=_version(a)),
    "evidence": lambda s, r, a: s.refresh_evidence(r, by=_need(a, "by")),
    "document": lambda s, r, a: s.issue_document(
        r, _need(a, "kind"), by=_need(a, "by"), files=[str(f) for f in a.get("files", [])], digest=_need(a, "digest")
    ),
    "notices_drafted": lambda s, r, a: s.apply(r, _notices_drafted(s, a)),
    "notices_approved": lambda s, r, a: s.apply(r, _notices_approved(s, a)),
    "notice_batch": lambda s, r, a: s.apply(r, _notice_batch(s, a)),
}


def dispatch(service: IncidentService, command: str, ref: str, args: Mapping[str, Any]) -> dict[str, Any]:
    handler = COMMANDS.get(command)
    if handler is None:
        raise UsageError(f"unknown incident command {command!r}; commands: {', '.join(sorted(COMMANDS))}")
    if not isinstance(args, Mapping):
        raise UsageError("the request body must be a JSON object of arguments")
    inc = handler(service, ref, args)
    return service.view(inc)


def open_incident(service: IncidentService, args: Mapping[str, Any]) -> dict[str, Any]:
    facts: dict[str, tuple[Any, str]] = {}
    raw_facts = args.get("facts") or {}
    if not isinstance(raw_facts, Mapping):
        raise UsageError("facts: must be an object of name: value")
    for name, value in raw_facts.items():
        facts[str(name)] = (coerce_fact(str(name), value), _opt(args, "source") or "reported when opening")
    inc = service.open(
        title=_need(args, "title"),
        by=_need(args, "by"),
        description=_opt(args, "description"),
        discovered_at=_time(args, "discovered_at"),
        drill=bool(args.get("drill", False)),
        source="drill" if args.get("drill") else "manual",
        facts=facts,
    )
    return service.view(inc)


# --------------------------------------------------------------------------- backends
class LocalIncidents:
    """Incident commands in this process (the data directory, or inside ``trail up``)."""

    def __init__(self, service: IncidentService) -> None:
        self.service = service

    def summaries(self, status: str | None = None) -> list[dict[str, Any]]:
        return self.service.summaries(status=status)

    def show(self, ref: str) -> dict[str, Any]:
        return self.service.view(ref)

    def timeline(self, ref: str) -> list[dict[str, Any]]:
        return self.service.timeline(ref)

    def open(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return open_incident(self.service, args)

    def call(self, command: str, ref: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return dispatch(self.service, command, ref, args)

    def subject_refs(self, ref: str) -> list[str]:

        inc = self.service.get(ref)
        if self.service.store is None or not inc.alerts:
            return []
        return list(evidence.subject_refs(self.service.store, evidence.scope_of(inc.alerts)))

    def playbook_plan(self) -> dict[str, Any]:
        return self.service.playbook.to_plan_dict()


class RemoteIncidents:
    """The same commands through ``trail up``'s HTTP API."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        """The API's answer; its errors arrive typed (400 UsageError, 404 NotFound, 409 Conflict, ...)."""
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        return self.api._call(method, path, data)

    def summaries(self, status: str | None = None) -> list[dict[str, Any]]:
        suffix = "?" + urlencode({"status": status}) if status else ""
        return list(self._json("GET", "/v1/incidents" + suffix)["incidents"])

    def show(self, ref: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/incidents/{quote(ref)}"))

    def timeline(self, ref: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/v1/incidents/{quote(ref)}/timeline")["timeline"])

    def open(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/incidents", dict(args)))

    def call(self, command: str, ref: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/incidents/{quote(ref)}/{quote(command)}", dict(args)))

    def subject_refs(self, ref: str) -> list[str]:
        return list(self._json("GET", f"/v1/incidents/{quote(ref)}/subjects")["subject_refs"])

    def playbook_plan(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/playbook"))
