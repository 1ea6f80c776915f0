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

from trail.cli.common import api_client, data_dir_option, settings_for
from trail.config import Settings
from trail.errors import UsageError, ValidationError
from trail.rights.render import render_report

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
    from trail.service import direct_backend
    from trail.wiring import incident_service

    backend = direct_backend(settings)
    service = incident_service(settings, backend.store)
    try:
        report = compliance_report(backend, LocalIncidents(service), settings, start, end)
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


# ------------------------------------------------------------------ registration
def register_rights_commands(cli: click.Group) -> None:
    cli.add_command(subject_group)
    cli.add_command(compliance_group)


def _json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path} ({exc.strerror})") from None
    except ValueError:
        raise ValidationError(what, f"{path} is not JSON (give the report's .json form)") from None
