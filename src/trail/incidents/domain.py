"""The incident aggregate: every decision of a breach response as an event.

Public methods are commands. Each checks the incident's rules first and raises
:class:`Refused` without recording anything when a rule says no; only then does it trigger the
event (a private method decorated with ``@event``) whose body changes the state. Event bodies
never refuse, so replaying an incident's history always succeeds.

Every event carries ``by`` (the responder, or the component that acted: ``trail-trigger``) and
``at`` (when it happened, as the responder states it; the library's own ``timestamp`` is when
it was recorded). Overrides carry a ``reason``. The domain does no I/O and no grading: the
application (``incidents.application``) decides with the playbook and calls these commands.

States: ``open`` → ``contained`` (the leak is stopped) → ``resolved`` (handling has ended:
the clocks of closing summaries start) → ``closed``. A post-incident review can be recorded
at any point before closing and is required for grades at or above the playbook's
``review_required_from``.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

from trail.errors import Refused as Refused

STATUSES = ("open", "contained", "resolved", "closed")
OBLIGATION_STATUSES = ("open", "met", "waived")
STEP_STATUSES = ("pending", "started", "completed", "skipped")


def incident_ref(incident_id: uuid.UUID) -> str:
    """The short, human reference of an incident: ``INC-1A2B3C4D``."""
    return "INC-" + incident_id.hex[:8].upper()


class Incident(Aggregate):
    @event("Opened")
    def __init__(
        self,
        id: uuid.UUID,
        title: str,
        description: str,
        discovered_at: str,
        at: str,
        by: str,
        source: str,
        drill: bool,
        playbook: dict[str, str],
        correlation: dict[str, str],
    ) -> None:
        self.ref = incident_ref(id)
        self.title = title
        self.description = description
        self.discovered_at = discovered_at
        self.opened_at = at
        self.opened_by = by
        self.source = source
        self.drill = drill
        self.playbook = dict(playbook)
        self.correlation = dict(correlation)
        self.status = "open"
        self.alerts: list[dict[str, Any]] = []
        self.evidence: dict[str, Any] | None = None
        self.facts: dict[str, dict[str, Any]] = {}
        self.grade: dict[str, Any] | None = None
        self.grade_history: list[dict[str, Any]] = []
        self.steps: dict[str, dict[str, Any]] = {}
        self.obligations: dict[str, dict[str, Any]] = {}
        self.measures: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.documents: list[dict[str, Any]] = []
        self.notices: dict[str, Any] = {"drafted": None, "approved": None, "batches": {}}
        self.review: dict[str, Any] | None = None
        self.contained_at: str | None = None
        self.handling_ended_at: str | None = None
        self.closed_at: str | None = None
        self.closed_by: str | None = None
        self.close_reason: str | None = None

    # ------------------------------------------------------------------ guards
    def _require_active(self, what: str) -> None:
        if self.status == "closed":
            raise Refused(f"{self.ref} is closed: cannot {what}")

    @staticmethod
    def _require_by(by: str) -> None:
        if not by or not by.strip():
            raise Refused("every change names the responder: give --by (a staff id or role)")

    @staticmethod
    def _require_reason(reason: str | None, what: str) -> None:
        if not reason or not reason.strip():
            raise Refused(f"{what} needs a reason: give --reason")

    # ------------------------------------------------------------------ alerts and evidence
    def attach_alerts(self, alerts: list[dict[str, Any]], *, by: str, at: str) -> list[str]:
        """Attach alerts not attached yet; returns the ids attached (empty: nothing recorded)."""
        known = {a["alert_id"] for a in self.alerts}
        new = [a for a in alerts if a["alert_id"] not in known]
        if new:
            self._require_active("attach alerts")
            self._alerts_attached(alerts=new, by=by, at=at)
        return [a["alert_id"] for a in new]

    @event("AlertsAttached")
    def _alerts_attached(self, alerts: list[dict[str, Any]], by: str, at: str) -> None:
        self.alerts.extend(alerts)

    def freeze_evidence(self, evidence: dict[str, Any], *, by: str, at: str) -> None:
        self._require_active("freeze evidence")
        self._evidence_frozen(evidence=evidence, by=by, at=at)

    @event("EvidenceFrozen")
    def _evidence_frozen(self, evidence: dict[str, Any], by: str, at: str) -> None:
        self.evidence = evidence

    # ------------------------------------------------------------------ facts and grade
    def record_fact(self, name: str, value: Any, *, source: str, by: str, at: str, reason: str = "") -> bool:
        """Record a fact; returns False (nothing recorded) when it already has this value and source."""
        self._require_active("record facts")
        self._require_by(by)
        if not source or not source.strip():
            raise Refused(f"fact {name!r} needs its source (where it comes from): give --source")
        current = self.facts.get(name)
        if current is not None and current["value"] == value and current["source"] == source:
            return False
        self._fact_recorded(name=name, value=value, source=source, by=by, at=at, reason=reason)
        return True

    @event("FactRecorded")
    def _fact_recorded(self, name: str, value: Any, source: str, by: str, at: str, reason: str) -> None:
        self.facts[name] = {"value": value, "source": source, "by": by, "at": at}

    def set_grade(
        self,
        *,
        level: str,
        computed_level: str,
        reasons: list[str],
        reasons_zh: list[str],
        unknown: list[str],
        by: str,
        at: str,
        override_reason: str | None = None,
    ) -> bool:
        """Record the grade; returns False when nothing changed."""
        self._require_active("change the grade")
        overridden = level != computed_level
        if overridden:
            self._require_by(by)
            self._require_reason(override_reason, "overriding the computed grade")
        current = self.grade
        if (
            current is not None
            and current["level"] == level
            and current["computed_level"] == computed_level
            and current["reasons"] == reasons
            and current["overridden"] == overridden
        ):
            return False
        self._graded(
            level=level,
            computed_level=computed_level,
            overridden=overridden,
            override_reason=override_reason if overridden else None,
            reasons=reasons,
            reasons_zh=reasons_zh,
            unknown=unknown,
            previous=current["level"] if current else None,
            by=by,
            at=at,
        )
        return True

    @event("Graded")
    def _graded(
        self,
        level: str,
        computed_level: str,
        overridden: bool,
        override_reason: str | None,
        reasons: list[str],
        reasons_zh: list[str],
        unknown: list[str],
        previous: str | None,
        by: str,
        at: str,
    ) -> None:
        self.grade = {
            "level": level,
            "computed_level": computed_level,
            "overridden": overridden,
            "override_reason": override_reason,
            "reasons": reasons,
            "reasons_zh": reasons_zh,
            "unknown": unknown,
            "by": by,
            "at": at,
        }
        self.grade_history.append({"level": level, "previous": previous, "by": by, "at": at, "overridden": overridden})

    # ------------------------------------------------------------------ plan steps
    def plan_steps(self, steps: list[dict[str, Any]], *, by: str, at: str) -> None:
        new = [s for s in steps if s["id"] not in self.steps]
        if new and self.status != "closed":
            self._steps_planned(steps=new, by=by, at=at)

    @event("StepsPlanned")
    def _steps_planned(self, steps: list[dict[str, Any]], by: str, at: str) -> None:
        for s in steps:
            self.steps[s["id"]] = {
                **s,
                "status": "pending",
                "started_at": None,
                "completed_at": None,
                "by": None,
                "note": "",
            }

    def step(self, step_id: str, action: str, *, by: str, at: str, note: str = "") -> None:
        self._require_active("change plan steps")
        self._require_by(by)
        if step_id not in self.steps:
            raise Refused(f"{self.ref} has no plan step {step_id!r}; steps: {', '.join(self.steps) or 'none yet'}")
        status = self.steps[step_id]["status"]
        if action == "start":
            if status != "pending":
                raise Refused(f"step {step_id!r} is {status}: only a pending step can be started")
        elif action == "complete":
            if status in ("completed", "skipped"):
                raise Refused(f"step {step_id!r} is already {status}")
        elif action == "skip":
            self._require_reason(note, f"skipping step {step_id!r}")
            if status in ("completed", "skipped"):
                raise Refused(f"step {step_id!r} is already {status}")
        else:
            raise Refused(f"unknown step action {action!r}: use start, complete or skip")
        self._step_changed(step_id=step_id, action=action, by=by, at=at, note=note)

    @event("StepChanged")
    def _step_changed(self, step_id: str, action: str, by: str, at: str, note: str) -> None:
        s = self.steps[step_id]
        if action == "start":
            s["status"], s["started_at"] = "started", at
        elif action == "complete":
            s["status"], s["completed_at"] = "completed", at
            s["started_at"] = s["started_at"] or at
        else:
            s["status"], s["completed_at"] = "skipped", at
        s["by"] = by
        s["note"] = note

    # ------------------------------------------------------------------ obligations
    def open_obligations(self, obligations: list[dict[str, Any]], *, by: str, at: str) -> None:
        """Open obligations that apply now; an obligation once opened stays on the record."""
        new = [o for o in obligations if o["id"] not in self.obligations]
        if new and self.status != "closed":
            self._obligations_opened(obligations=new, by=by, at=at)

    @event("ObligationsOpened")
    def _obligations_opened(self, obligations: list[dict[str, Any]], by: str, at: str) -> None:
        for o in obligations:
            self.obligations[o["id"]] = {
                **o,
                "status": "open",
                "met_at": None,
                "met_by": None,
                "how": None,
                "reference": None,
                "waived_reason": None,
            }

    def set_obligation_deadlines(self, deadlines: dict[str, str | None], *, by: str, at: str) -> None:
        changed = {k: v for k, v in deadlines.items() if k in self.obligations and self.obligations[k]["due_at"] != v}
        if changed:
            self._deadlines_set(deadlines=changed, by=by, at=at)

    @event("DeadlinesSet")
    def _deadlines_set(self, deadlines: dict[str, str | None], by: str, at: str) -> None:
        for k, v in deadlines.items():
            self.obligations[k]["due_at"] = v

    def meet_obligation(self, obligation_id: str, *, by: str, at: str, how: str, reference: str = "") -> None:
        self._require_active("meet obligations")
        self._require_by(by)
        ob = self._obligation(obligation_id)
        if ob["status"] != "open":
            raise Refused(f"obligation {obligation_id!r} is already {ob['status']}")
        if not how or not how.strip():
            raise Refused(f"say how obligation {obligation_id!r} was met (channel, recipient office): give --how")
        self._obligation_met(obligation_id=obligation_id, by=by, at=at, how=how, reference=reference)

    @event("ObligationMet")
    def _obligation_met(self, obligation_id: str, by: str, at: str, how: str, reference: str) -> None:
        ob = self.obligations[obligation_id]
        ob.update(status="met", met_at=at, met_by=by, how=how, reference=reference)

    def waive_obligation(self, obligation_id: str, *, by: str, at: str, reason: str, automatic: bool = False) -> None:
        """Waive with a reason; ``automatic`` marks a waiver because the grade went down (it
        reopens if the grade goes back up)."""
        self._require_active("waive obligations")
        self._require_by(by)
        self._require_reason(reason, f"waiving obligation {obligation_id!r}")
        ob = self._obligation(obligation_id)
        if ob["status"] != "open":
            raise Refused(f"obligation {obligation_id!r} is already {ob['status']}")
        self._obligation_waived(obligation_id=obligation_id, by=by, at=at, reason=reason, automatic=automatic)

    @event("ObligationWaived")
    def _obligation_waived(self, obligation_id: str, by: str, at: str, reason: str, automatic: bool = False) -> None:
        self.obligations[obligation_id].update(
            status="waived", waived_reason=reason, met_by=by, met_at=at, auto_waived=automatic
        )

    def reopen_obligations(self, obligation_ids: list[str], *, by: str, at: str, reason: str) -> None:
        ids = [o for o in obligation_ids if self.obligations.get(o, {}).get("auto_waived")]
        if ids and self.status != "closed":
            self._obligations_reopened(obligation_ids=ids, by=by, at=at, reason=reason)

    @event("ObligationsReopened")
    def _obligations_reopened(self, obligation_ids: list[str], by: str, at: str, reason: str) -> None:
        for oid in obligation_ids:
            self.obligations[oid].update(status="open", waived_reason=None, met_by=None, met_at=None, auto_waived=False)

    def _obligation(self, obligation_id: str) -> dict[str, Any]:
        if obligation_id not in self.obligations:
            raise Refused(
                f"{self.ref} has no obligation {obligation_id!r}; open ones: "
                + (", ".join(k for k, v in self.obligations.items() if v["status"] == "open") or "none")
            )
        return self.obligations[obligation_id]

    # ------------------------------------------------------------------ measures, updates, documents
    def record_measure(self, text: str, *, by: str, at: str) -> None:
        self._require_active("record measures")
        self._require_by(by)
        if not text.strip():
            raise Refused("describe the measure taken")
        self._measure_recorded(text=text, by=by, at=at)

    @event("MeasureRecorded")
    def _measure_recorded(self, text: str, by: str, at: str) -> None:
        self.measures.append({"at": at, "by": by, "text": text})

    def record_update(self, text: str, *, by: str, at: str) -> None:
        self._require_active("record developments")
        self._require_by(by)
        if not text.strip():
            raise Refused("describe the development")
        self._update_recorded(text=text, by=by, at=at)

    @event("UpdateRecorded")
    def _update_recorded(self, text: str, by: str, at: str) -> None:
        self.updates.append({"at": at, "by": by, "text": text})

    def issue_document(self, kind: str, *, by: str, at: str, files: list[str], digest: str) -> None:
        self._require_active("issue documents")
        self._require_by(by)
        self._document_issued(kind=kind, by=by, at=at, files=files, digest=digest)

    @event("DocumentIssued")
    def _document_issued(self, kind: str, by: str, at: str, files: list[str], digest: str) -> None:
        self.documents.append({"kind": kind, "by": by, "at": at, "files": files, "digest": digest})

    # ------------------------------------------------------------------ notices
    def draft_notices(self, *, by: str, at: str, subjects: int, subjects_digest: str, files: list[str]) -> None:
        self._require_active("draft notices")
        self._require_by(by)
        self._notices_drafted(by=by, at=at, subjects=subjects, subjects_digest=subjects_digest, files=files)

    @event("NoticesDrafted")
    def _notices_drafted(self, by: str, at: str, subjects: int, subjects_digest: str, files: list[str]) -> None:
        self.notices["drafted"] = {
            "by": by,
            "at": at,
            "subjects": subjects,
            "subjects_digest": subjects_digest,
            "files": files,
        }
        self.notices["approved"] = None

    def approve_notices(self, *, by: str, at: str) -> None:
        self._require_active("approve notices")
        self._require_by(by)
        drafted = self.notices["drafted"]
        if drafted is None:
            raise Refused(f"{self.ref}: draft the notices before approving them (trail incidents notify --draft)")
        if _person(drafted["by"]) == _person(by):
            raise Refused(f"{self.ref}: notices drafted by {by} need a second responder's approval (four eyes)")
        self._notices_approved(by=by, at=at)

    @event("NoticesApproved")
    def _notices_approved(self, by: str, at: str) -> None:
        self.notices["approved"] = {"by": by, "at": at}

    def record_notice_batch(self, batch: dict[str, Any], *, by: str, at: str) -> None:
        """Record a notice batch's state (started, interrupted, finished) with its counts."""
        self._require_active("send notices")
        if self.notices["approved"] is None and batch.get("state") == "started":
            raise Refused(f"{self.ref}: notices must be approved before sending (trail incidents notify --approve)")
        self._notice_batch_recorded(batch=batch, by=by, at=at)

    @event("NoticeBatchRecorded")
    def _notice_batch_recorded(self, batch: dict[str, Any], by: str, at: str) -> None:
        self.notices["batches"][batch["batch_id"]] = {**batch, "by": by, "at": at}

    # ------------------------------------------------------------------ lifecycle
    def contain(self, *, by: str, at: str, note: str) -> None:
        self._require_by(by)
        if self.status != "open":
            raise Refused(f"{self.ref} is {self.status}: only an open incident can be marked contained")
        self._contained(by=by, at=at, note=note)

    @event("Contained")
    def _contained(self, by: str, at: str, note: str) -> None:
        self.status = "contained"
        self.contained_at = at
        if note:
            self.measures.append({"at": at, "by": by, "text": note})

    def resolve(self, *, by: str, at: str, note: str) -> None:
        """Handling has ended: the clocks of closing summaries start now."""
        self._require_by(by)
        if self.status not in ("open", "contained"):
            raise Refused(f"{self.ref} is {self.status}: handling has already ended")
        self._resolved(by=by, at=at, note=note)

    @event("Resolved")
    def _resolved(self, by: str, at: str, note: str) -> None:
        if self.contained_at is None:
            self.contained_at = at
        self.status = "resolved"
        self.handling_ended_at = at

    def record_review(
        self,
        *,
        cause: str,
        responsibility: str,
        countermeasures: str,
        prevention: str,
        lessons: str,
        by: str,
        at: str,
    ) -> None:
        self._require_active("record the review")
        self._require_by(by)
        missing = [
            name
            for name, value in (
                ("cause", cause),
                ("responsibility", responsibility),
                ("countermeasures", countermeasures),
                ("prevention", prevention),
            )
            if not value or not value.strip()
        ]
        if missing:
            raise Refused(
                "the post-incident review needs cause, responsibility, countermeasures and prevention "
                f"(Dalian 6.7.5.5, 8.1); missing: {', '.join(missing)}"
            )
        self._reviewed(
            cause=cause,
            responsibility=responsibility,
            countermeasures=countermeasures,
            prevention=prevention,
            lessons=lessons,
            by=by,
            at=at,
        )

    @event("Reviewed")
    def _reviewed(
        self, cause: str, responsibility: str, countermeasures: str, prevention: str, lessons: str, by: str, at: str
    ) -> None:
        self.review = {
            "cause": cause,
            "responsibility": responsibility,
            "countermeasures": countermeasures,
            "prevention": prevention,
            "lessons": lessons,
            "by": by,
            "at": at,
        }

    def close(self, *, by: str, at: str, reason: str, review_required: bool) -> None:
        self._require_by(by)
        if self.status == "closed":
            raise Refused(f"{self.ref} is already closed")
        if self.status != "resolved":
            raise Refused(f"{self.ref} is {self.status}: end the handling first (trail incidents resolve)")
        if review_required and self.review is None:
            level = self.grade["level"] if self.grade else "?"
            raise Refused(
                f"{self.ref} is grade {level}: a post-incident review (cause, responsibility, countermeasures, "
                "prevention; Dalian 6.7.5.5 and 8.1) is required before closing — trail incidents review"
            )
        still_open = sorted(k for k, v in self.obligations.items() if v["status"] == "open")
        if still_open:
            raise Refused(
                f"{self.ref} has open obligations: {', '.join(still_open)} — meet them or waive them with a reason"
            )
        self._closed(by=by, at=at, reason=reason)

    @event("Closed")
    def _closed(self, by: str, at: str, reason: str) -> None:
        self.status = "closed"
        self.closed_at = at
        self.closed_by = by
        self.close_reason = reason


def _person(name: str) -> str:
    """A responder's name as the four-eyes rule compares it: Unicode NFKC, case-folded, trimmed
    (``E1002``, ``e1002`` and ``Ｅ１００２`` are one person)."""
    import unicodedata

    return unicodedata.normalize("NFKC", str(name)).strip().casefold()
