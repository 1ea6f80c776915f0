"""``trail subject report``, ``trail compliance report|check``.

Through the API when one runs (``TRAIL_API_URL``, or ``trail up`` on the data directory): the
server turns the raw id into its reference (the command line holds no key), signs the
compliance report, and records the read in the access log. Without an API the data directory
is opened here and the read is recorded in the access log all the same. Documents (Markdown,
HTML, PDF) are rendered here from the report's JSON form.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from trail.cli.common import FORMATS, api_client, data_dir_option, emit_rows, settings_for
from trail.config import Settings
from trail.errors import UsageError, ValidationError
from trail.rights.requests import KINDS as REQUEST_KINDS
from trail.rights.requests import OUTCOMES as REQUEST_OUTCOMES

LANG = click.Choice(["zh", "en"])
DOC_FORMATS = click.Choice(["md", "html", "pdf", "json"])


def _write(data: bytes, out: Path | None, what: str) -> None:
    if out is None:
        if sys.stdout.isatty() and data[:4] == b"%PDF":
            raise UsageError("--out: a PDF is not printed to a terminal; give --out FILE.pdf")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    except OSError as exc:
        raise UsageError(f"--out: cannot write {out} ({exc.strerror})") from None
    click.echo(f"{what} written to {out}", err=True)


# ------------------------------------------------------------------ subject report
@click.group("subject")
def subject_group() -> None:
    """What the trail tells one person about their data (investigator)."""


def subject_report_data(settings: Settings, subject_id: str, purpose: str, start: str | None, end: str | None) -> Any:
    """The report's JSON form: from the API when one runs, else from the data directory."""
    from trail.rights.subject_report import build_subject_report, period_of

    body = {"subject_id": subject_id, "purpose": purpose, "from": start, "to": end}
    api = api_client(settings)
    if api is not None:
        return api.post("/v1/subjects/report", body)
    from trail.api.rights import require_purpose
    from trail.rights.audit import record_direct_read
    from trail.service import direct_backend

    require_purpose(purpose)
    period = period_of(start, end)
    backend = direct_backend(settings)
    try:
        report = build_subject_report(
            backend.store,
            backend.subject_ref(subject_id),
            period,
            show_staff=settings.report_staff_ids == "yes",
        )
        record_direct_read(
            settings,
            backend.store,
            role="investigator",
            command="trail subject report",
            dataset="subject_report",
            purpose=purpose.strip(),
            rows=len(report["events"]),
            subject_id=subject_id,
        )
    finally:
        backend.client.close(timeout=30)
        backend.store.close()
    return report


@subject_group.command("report")
@data_dir_option
@click.argument("subject_id")
@click.option("--purpose", required=True, help="Why this report is made (kept in the access log).")
@click.option("--from", "start", default=None, help="2026-11-01 or RFC 3339 (default: the first record).")
@click.option("--to", "end", default=None, help="2026-12-01 or RFC 3339, exclusive (default: now).")
@click.option("--lang", type=LANG, default="zh", show_default=True)
@click.option("--format", "fmt", type=DOC_FORMATS, default="md", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None, help="File (default: stdout).")
@click.pass_context
def subject_report(
    ctx: click.Context,
    data_dir: Path | None,
    subject_id: str,
    purpose: str,
    start: str | None,
    end: str | None,
    lang: str,
    fmt: str,
    out: Path | None,
) -> None:
    """Every operation on one person's data, who holds it, whom it went to, who looked them up.

    Give the raw id; only the server (or this data directory's key) turns it into its reference."""
    settings = settings_for(ctx, data_dir)
    report = subject_report_data(settings, subject_id, purpose, start, end)
    from trail.rights.render import render_report  # templates, Markdown: loaded only to render

    _write(render_report("subject_report", report, lang=lang, fmt=fmt), out, "subject report")


# ------------------------------------------------------------------ compliance report
@click.group("compliance")
def compliance_group() -> None:
    """The signed compliance report over a period (auditor), and its offline check."""


def compliance_report_data(settings: Settings, start: str, end: str) -> Any:
    api = api_client(settings)
    if api is not None:
        return api.post("/v1/compliance/report", {"from": start, "to": end})
    from trail.api.rights import compliance_report
    from trail.incidents.commands import LocalIncidents
    from trail.rights.audit import record_direct_read
    from trail.rights.request_service import RequestService
    from trail.service import direct_backend
    from trail.wiring import incident_service

    backend = direct_backend(settings)
    service = incident_service(settings, backend.store)
    requests = RequestService.from_settings(settings, backend.store)
    try:
        report = compliance_report(backend, LocalIncidents(service), settings, start, end, requests=requests)
        record_direct_read(
            settings,
            backend.store,
            role="auditor",
            command="trail compliance report",
            dataset="compliance_report",
            purpose="compliance report",
            rows=int(report["events_total"]["events"]),
        )
    finally:
        service.shutdown()
        requests.shutdown()
        backend.client.close(timeout=30)
        backend.store.close()
    return report


@compliance_group.command("report")
@data_dir_option
@click.option("--from", "start", required=True, help="2026-11-01 or RFC 3339.")
@click.option("--to", "end", required=True, help="2026-12-01 or RFC 3339, exclusive.")
@click.option("--lang", type=LANG, default="zh", show_default=True)
@click.option("--format", "fmt", type=DOC_FORMATS, default="json", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None, help="File (default: stdout).")
@click.pass_context
def compliance_report(
    ctx: click.Context, data_dir: Path | None, start: str, end: str, lang: str, fmt: str, out: Path | None
) -> None:
    """Inventory, sensitive PI and consent, bulk operations and reviews, provision, deletion, alerts,
    incidents, requests, who read the trail, integrity: each figure with its query, each section with
    the articles it evidences; signed with the checkpoint key (the JSON form is what is signed)."""
    settings = settings_for(ctx, data_dir)
    report = compliance_report_data(settings, start, end)
    from trail.rights.render import render_report

    _write(render_report("compliance_report", report, lang=lang, fmt=fmt), out, "compliance report")


@compliance_group.command("check")
@click.argument("report_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--public-key", required=True, help="The checkpoint public key: 64 hex characters or its file.")
def compliance_check(report_file: Path, public_key: str) -> None:
    """Check a compliance report's signature offline; exit 1 when it does not hold."""
    from trail.integrity.keys import load_public_key
    from trail.rights.compliance import check

    result = check(_json_file(report_file, "REPORT"), load_public_key(public_key))
    click.echo(json.dumps(result, ensure_ascii=False))
    sys.exit(0 if result["valid"] else 1)


# ------------------------------------------------------------------ requests
@click.group("requests")
def requests_group() -> None:
    """Individuals' requests (PIPL Art. 50): access, copy, correction, deletion, consent withdrawal,
    portability; each with its clock, outcome, refusal reason and the documents given."""


REQUEST_COLUMNS = ["ref", "kind", "status", "received_at", "due_at", "clock", "answered_at"]


class _Requests:
    """The request commands through the API, else on the data directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = api_client(settings)
        self.backend: Any = None
        self.service: Any = None
        if self.api is None:
            from trail.rights.request_service import RequestService
            from trail.service import direct_backend

            self.backend = direct_backend(settings)
            self.service = RequestService.from_settings(settings, self.backend.store)

    def close(self) -> None:
        if self.service is not None:
            self.service.shutdown()
            self.backend.client.close(timeout=30)
            self.backend.store.close()

    def call(self, what: str, ref: str | None = None, **body: Any) -> Any:
        try:
            if self.api is not None:
                if what == "list":
                    path = "/v1/requests" + (f"?status={body['status']}" if body.get("status") else "")
                    return self.api.get(path)["requests"]
                if what == "show":
                    return self.api.get(f"/v1/requests/{ref}")["request"]
                path = "/v1/requests" if what == "open" else f"/v1/requests/{ref}/{what}"
                return self.api.post(path, body)["request"]
            svc, by = self.service, "local"
            if what == "open":
                sref = self.backend.subject_ref(body.pop("subject_id"))
                return svc.open(subject_ref=sref, by=by, **body)
            if what == "list":
                return svc.list(body.get("status"))
            if what == "show":
                return svc.view(ref)
            if what == "respond":
                return svc.respond(ref, body["summary"], body["documents"], by=by)
            if what == "refuse":
                return svc.refuse(ref, body["reason"] or "", by=by)
            return svc.close(ref, body["outcome"], body["note"], by=by)
        finally:
            self.close()


def _show(row: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(row, ensure_ascii=False))
        return
    flags = " OVERDUE" if row["overdue"] else (" DUE SOON" if row["due_soon"] else "")
    d = row["deadline"]
    click.echo(f"{row['ref']}  {row['kind']}  {row['status']}{flags}")
    click.echo(f"  received {row['received_at']}, due {row['due_at']} ({d['days']} {d['unit']}; {d['source']};")
    click.echo(f"  outer bound {d['outer_bound']}; status: {d['status']}), clock: {row['clock']}")
    for r in row["responses"]:
        click.echo(f"  answered {r['at']} by {r['by']}: {r['summary']} documents: {', '.join(r['documents']) or '-'}")
    if row["refusal"]:
        click.echo(f"  refused {row['refusal']['at']} by {row['refusal']['by']}: {row['refusal']['reason']}")
    if row["outcome"]:
        o = row["outcome"]
        click.echo(f"  closed {o['at']} by {o['by']}: {o['outcome']} {o['note']}")
    if row.get("expected_events"):
        e = row["expected_events"]
        click.echo(f"  the trail expects {' or '.join(e['actions'])} for this person: {e['state']}")


@requests_group.command("open")
@data_dir_option
@click.argument("subject_id")
@click.option("--kind", required=True, type=click.Choice(list(REQUEST_KINDS)))
@click.option("--received-at", default=None, help="RFC 3339 (default: now); the clock starts here.")
@click.option("--channel", default="", help="How it arrived (web form, letter, phone).")
@click.option("--note", default="", help="No personal data here.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def requests_open(
    ctx: click.Context,
    data_dir: Path | None,
    subject_id: str,
    kind: str,
    received_at: str | None,
    channel: str,
    note: str,
    fmt: str,
) -> None:
    """Record a request from the person SUBJECT_ID (only its keyed reference is kept)."""
    r = _Requests(settings_for(ctx, data_dir))
    body = {"kind": kind, "subject_id": subject_id, "received_at": received_at, "channel": channel, "note": note}
    _show(r.call("open", **body), fmt)


@requests_group.command("show")
@data_dir_option
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def requests_show(ctx: click.Context, data_dir: Path | None, ref: str, fmt: str) -> None:
    """One request with its deadline (days, source, verification status), clock and history."""
    _show(_Requests(settings_for(ctx, data_dir)).call("show", ref), fmt)


@requests_group.command("list")
@data_dir_option
@click.option("--status", type=click.Choice(["open", "responded", "refused", "closed"]), default=None)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def requests_list(ctx: click.Context, data_dir: Path | None, status: str | None, fmt: str) -> None:
    """Every request with its clock (ok, due_soon, overdue, answered_on_time, answered_late)."""
    rows = _Requests(settings_for(ctx, data_dir)).call("list", status=status)
    emit_rows(rows if fmt == "json" else [{c: x[c] for c in REQUEST_COLUMNS} for x in rows], fmt, REQUEST_COLUMNS)


@requests_group.command("respond")
@data_dir_option
@click.argument("ref")
@click.option("--summary", required=True, help="What was answered or handed over.")
@click.option("--document", "documents", multiple=True, help="A document given (file name or reference); repeatable.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def requests_respond(
    ctx: click.Context, data_dir: Path | None, ref: str, summary: str, documents: tuple[str, ...], fmt: str
) -> None:
    """Record the answer; the clock stops at the first answer."""
    _show(_Requests(settings_for(ctx, data_dir)).call("respond", ref, summary=summary, documents=list(documents)), fmt)


@requests_group.command("refuse")
@data_dir_option
@click.argument("ref")
@click.option("--reason", default=None, help="Required: the reason given to the person (PIPL Art. 50).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def requests_refuse(ctx: click.Context, data_dir: Path | None, ref: str, reason: str | None, fmt: str) -> None:
    """Refuse a request with its reason; without one nothing is recorded."""
    _show(_Requests(settings_for(ctx, data_dir)).call("refuse", ref, reason=reason), fmt)


@requests_group.command("close")
@data_dir_option
@click.argument("ref")
@click.option("--outcome", required=True, type=click.Choice(list(REQUEST_OUTCOMES)))
@click.option("--note", default="")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def requests_close(ctx: click.Context, data_dir: Path | None, ref: str, outcome: str, note: str, fmt: str) -> None:
    """Close with the outcome; a deletion or withdrawal closed as done makes the trail expect the
    person's delete or consent_withdraw event (shown by `requests show`; after_withdrawal watches)."""
    _show(_Requests(settings_for(ctx, data_dir)).call("close", ref, outcome=outcome, note=note), fmt)


# ------------------------------------------------------------------ retention classes
def _retention_direct(settings: Settings, what: str, before: str | None) -> Any:
    from trail.access.retention import RetentionService, incident_holds
    from trail.access.store import open_access_store
    from trail.api.rights import run_retention_check
    from trail.rights.subject_report import parse_bound
    from trail.service import direct_backend
    from trail.wiring import incident_service

    backend = direct_backend(settings)
    access = open_access_store(settings)
    incidents = incident_service(settings, backend.store)
    try:
        svc = RetentionService(settings, backend.store, access, incident_holds=incident_holds(incidents))
        if what == "plan":
            return svc.plan(parse_bound("before", before) if before else None)
        return {"alerts": run_retention_check(backend.store, svc.policy), "datasets": len(svc.policy.datasets)}
    finally:
        incidents.shutdown()
        access.close()
        backend.client.close(timeout=30)
        backend.store.close()


def _retention_commands(group: click.Group) -> None:
    @group.command("plan")
    @data_dir_option
    @click.option("--before", default=None, help="Plan a retention up to this time (default: now minus the floor).")
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    @click.pass_context
    def retention_plan(ctx: click.Context, data_dir: Path | None, before: str | None, fmt: str) -> None:
        """What a retention would expire, checkpoint by checkpoint, and what keeps the rest: a
        retention class whose period has not passed (with its source), a legal hold, an open
        incident's evidence. Changes nothing."""
        settings = settings_for(ctx, data_dir)
        api = api_client(settings)
        if api is not None:
            out = api.get("/v1/retention/plan" + (f"?before={before}" if before else ""))
        else:
            out = _retention_direct(settings, "plan", before)
        if fmt == "json":
            click.echo(json.dumps(out, ensure_ascii=False))
            return
        click.echo(f"retention classes ({out['policy']['where']}):")
        for c in out["policy"]["classes"]:
            click.echo(f"  {c['name']}: >= {c['days']} days - {c['source']} [{c['status']}]")
        rows = [
            {
                "checkpoint": e["seq"],
                "events": e["events"],
                "oldest": e["oldest"],
                "newest": e["newest"],
                "expires": "yes" if e["expires"] else "no",
                "kept by": "; ".join(
                    f"{k['class']} until {k['kept_until'][:10]}" if k["kind"] == "class" else k["hold"]
                    for k in e["kept_by"]
                ),
            }
            for e in out["checkpoints"]
        ]
        emit_rows(rows, "table", title=f"retention plan up to {out['before']}")
        w, k = out["would_expire"], out["kept"]
        click.echo(f"would expire {w['events']} events ({w['checkpoints']} checkpoints); kept {k['events']} events")

    @group.command("check")
    @data_dir_option
    @click.pass_context
    def retention_check(ctx: click.Context, data_dir: Path | None) -> None:
        """Run retention_overdue over the datasets declared in TRAIL_RETENTION_POLICY (Shenzhen
        Art. 25): one alert per dataset with the number of people kept beyond the declared days."""
        settings = settings_for(ctx, data_dir)
        api = api_client(settings)
        out = api.post("/v1/retention/check", {}) if api is not None else _retention_direct(settings, "check", None)
        click.echo(json.dumps(out, ensure_ascii=False))
        sys.exit(1 if out["alerts"] else 0)


# ------------------------------------------------------------------ registration
def register_rights_commands(cli: click.Group) -> None:
    cli.add_command(subject_group)
    cli.add_command(compliance_group)
    cli.add_command(requests_group)
    retention = cli.commands.get("retention")
    if isinstance(retention, click.Group):
        _retention_commands(retention)


def _json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path} ({exc.strerror})") from None
    except ValueError:
        raise ValidationError(what, f"{path} is not JSON (give the report's .json form)") from None
