"""``trail incidents …``, ``trail playbook …`` and ``trail drill``: the breach response.

Where incidents live: the incident store (SQLite in the data directory, or PostgreSQL with
``TRAIL_INCIDENT_STORE``). While ``trail up`` runs on the data directory every command goes
through its API (it owns the trail's store, which evidence and notices read); otherwise the
commands work on the data directory directly. Every change names the responder (``--by``);
overrides and waivers need ``--reason``; a refused command records nothing and exits 2.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from trail.cli.common import TrailGroup, data_dir_option, emit_rows, settings_for
from trail.config import Settings
from trail.errors import UsageError
from trail.incidents.playbook import TEMPLATES

FORMATS = click.Choice(["table", "json"])
LIST_COLUMNS = [
    "ref",
    "status",
    "grade",
    "title",
    "discovered_at",
    "open_obligations",
    "next_obligation",
    "time_left",
    "flags",
]
OBLIGATION_COLUMNS = ["id", "recipient_en", "basis", "due_at", "state", "time_left", "met_at", "how"]


def _settings(ctx: click.Context, data_dir: Path | None) -> Settings:
    return settings_for(ctx, data_dir)


@contextmanager
def incidents_backend(settings: Settings, *, need_store: bool = False) -> Iterator[Any]:
    """The API of a running ``trail up``, else the incident store (and, if asked, the trail's store)."""
    from trail.cli.common import api_client
    from trail.incidents.commands import LocalIncidents, RemoteIncidents
    from trail.wiring import incident_service

    api = api_client(settings)
    if api is not None:
        yield RemoteIncidents(api)
        return
    store = None
    if need_store:
        from trail.storage.store import open_store

        store = open_store(settings.store_dsn, settings.clickhouse_database)
    service = incident_service(settings, store)
    try:
        yield LocalIncidents(service)
    finally:
        service.shutdown()
        if store is not None:
            store.close()


def _print_incident(view: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(view, ensure_ascii=False, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False, width=max(160, Console().width))
    g = view.get("grade") or {}
    grade = f"{g.get('level', '-')} {g.get('name_zh', '')} / {g.get('name_en', '')}" if g else "-"
    if g.get("overridden"):
        grade += f"  (override of computed {g.get('computed_level')}: {g.get('override_reason')})"
    console.print(
        f"[bold]{view['ref']}[/bold]  {view['title']}  [{view['status']}]" + ("  DRILL" if view["drill"] else "")
    )
    console.print(f"  id {view['id']}  version {view['version']}  source {view['source']}")
    console.print(f"  discovered {view['discovered_at']}  opened {view['opened_at']} by {view['opened_by']}")
    console.print(f"  grade {grade}")
    for reason in g.get("reasons", []):
        console.print(f"    - {reason}")
    if g.get("unknown"):
        console.print(f"    unknown facts that could change the grade: {', '.join(g['unknown'])}")
    if view.get("flags"):
        console.print(f"  [bold red]{view['flags']}[/bold red]")
    facts = Table(title="facts", show_lines=False)
    for c in ("name", "value", "source", "by", "at"):
        facts.add_column(c)
    for name, f in view["facts"].items():
        value = f["value"]
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        facts.add_row(name, shown[:80], str(f["source"])[:60], str(f["by"]), str(f["at"]))
    console.print(facts)
    obs = Table(title="obligations (clocks)")
    for c in ("id", "recipient", "basis", "due", "state", "time left", "met", "how"):
        obs.add_column(c)
    for o in view["obligations"]:
        style = {"overdue": "bold red", "due_soon": "yellow", "met_late": "red"}.get(o["state"], "")
        obs.add_row(
            o["id"],
            str(o["recipient_en"])[:50],
            str(o["basis"])[:40],
            str(o.get("due_at") or "when handling ends"),
            f"[{style}]{o['state']}[/{style}]" if style else o["state"],
            o["time_left"],
            str(o.get("met_at") or ""),
            str(o.get("how") or o.get("waived_reason") or "")[:40],
        )
    console.print(obs)
    steps = Table(title="plan steps")
    for c in ("id", "title", "role", "due", "status", "by"):
        steps.add_column(c)
    for s in view["steps"]:
        steps.add_row(
            s["id"], s["title_en"][:60], s["role"], str(s.get("due_at", "")), s["status"], str(s.get("by") or "")
        )
    console.print(steps)
    n = view["notices"]
    if n.get("drafted") or n.get("batches"):
        console.print(
            f"  notices: drafted for {(n.get('drafted') or {}).get('subjects', '-')} subjects; approved by "
            f"{(n.get('approved') or {}).get('by', '-')}; sent {n['sent']}, failed {n['failed']}, "
            f"in doubt {n['in_doubt']}, pending {n['pending']}"
        )
    if view.get("evidence"):
        e = view["evidence"]
        console.print(
            f"  evidence: {e['people_affected']} people ({e['sensitive_people']} with sensitive categories), "
            f"{e['events']} events, {e['window_start']} .. {e['window_end']}, digest {e['digest'][:16]}"
        )
    for d in view.get("documents", []):
        console.print(f"  document {d['kind']} by {d['by']} at {d['at']}: {', '.join(d['files'][:2])}")


def _by_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--by",
        default=None,
        help="The responder making this change (staff id). Through an API the change is recorded under your "
        "principal and --by may be left out; with trail up's local token, and on a data directory, give it.",
    )(fn)


def _version_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--if-version",
        "expected_version",
        type=int,
        default=None,
        help="Refuse (conflict) unless the incident is still at this version.",
    )(fn)


def _format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)(fn)


def _run(ctx: click.Context, data_dir: Path | None, command: str, ref: str, fmt: str, **args: Any) -> None:
    settings = _settings(ctx, data_dir)
    with incidents_backend(settings, need_store=command == "evidence") as backend:
        view = backend.call(command, ref, {k: v for k, v in args.items() if v is not None})
    _print_incident(view, fmt)


@click.group("incidents", cls=TrailGroup)
def incidents_group() -> None:
    """Incidents: graded, clocked, documented; their own history is their audit trail."""


@incidents_group.command("list")
@data_dir_option
@click.option("--status", type=click.Choice(["open", "contained", "resolved", "closed"]), default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def list_cmd(ctx: click.Context, data_dir: Path | None, status: str | None, fmt: str) -> None:
    """Incidents with their next deadline; due-soon and overdue obligations flagged."""
    settings = _settings(ctx, data_dir)
    with incidents_backend(settings) as backend:
        rows = backend.summaries(status)
    emit_rows(rows, fmt, LIST_COLUMNS, title="incidents")


@incidents_group.command("show")
@data_dir_option
@click.argument("ref")
@_format_option
@click.pass_context
def show_cmd(ctx: click.Context, data_dir: Path | None, ref: str, fmt: str) -> None:
    """One incident: grade and why, facts with sources, evidence, clocks, steps, notices."""
    settings = _settings(ctx, data_dir)
    with incidents_backend(settings) as backend:
        view = backend.show(ref)
    _print_incident(view, fmt)


@incidents_group.command("timeline")
@data_dir_option
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def timeline_cmd(ctx: click.Context, data_dir: Path | None, ref: str, fmt: str) -> None:
    """Every recorded decision of the incident, in order, with who and when."""
    settings = _settings(ctx, data_dir)
    with incidents_backend(settings) as backend:
        rows = backend.timeline(ref)
    emit_rows(rows, fmt, ["version", "recorded_at", "event", "by", "summary"], title="timeline")


@incidents_group.command("open")
@data_dir_option
@click.option("--title", required=True)
@_by_option
@click.option("--description", default="")
@click.option("--discovered-at", default=None, help="When it was discovered (RFC 3339); default now.")
@click.option("--fact", "facts", multiple=True, metavar="NAME=VALUE", help="A fact known at opening (repeatable).")
@click.option("--source", default=None, help="Where the --fact values come from.")
@_format_option
@click.pass_context
def open_cmd(
    ctx: click.Context,
    data_dir: Path | None,
    title: str,
    by: str,
    description: str,
    discovered_at: str | None,
    facts: tuple[str, ...],
    source: str | None,
    fmt: str,
) -> None:
    """Open an incident by hand (a report, a lost device, a call from the police)."""
    parsed: dict[str, str] = {}
    for item in facts:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--fact {item!r}: use NAME=VALUE, e.g. --fact people_affected=1200")
        parsed[name.strip()] = value
    if parsed and not source:
        raise UsageError("--fact needs --source (where the figures come from)")
    settings = _settings(ctx, data_dir)
    with incidents_backend(settings) as backend:
        view = backend.open(
            {
                "title": title,
                "by": by,
                "description": description,
                "discovered_at": discovered_at,
                "facts": parsed,
                "source": source,
            }
        )
    _print_incident(view, fmt)


def _change(name: str, *extra: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Any]:
    """A responder's command on one incident: REF, the command's own options, --by,
    --if-version and --format, then one call through the backend."""

    def wrap(fn: Callable[..., Any]) -> Any:
        def run(ctx: click.Context, /, data_dir: Path | None, ref: str, fmt: str, **args: Any) -> None:
            _run(ctx, data_dir, name, ref, fmt, **fn(**args))

        run.__doc__ = fn.__doc__
        decorators: tuple[Callable[[Any], Any], ...] = (
            incidents_group.command(name),
            data_dir_option,
            click.argument("ref"),
            *extra,
            _by_option,
            _version_option,
            _format_option,
            click.pass_context,
        )
        cmd: Any = run
        for dec in reversed(decorators):
            cmd = dec(cmd)
        return cmd

    return wrap


@_change(
    "fact",
    click.argument("name"),
    click.argument("value"),
    click.option("--source", required=True, help="Where the fact comes from (report, ticket, forensics)."),
    click.option("--reason", default=None),
)
def fact_cmd(**args: Any) -> dict[str, Any]:
    """Record a fact (people_affected, cii_involved, direct_loss_cny, cause, ...); the grade follows."""
    return args


@_change(
    "grade",
    click.argument("level", required=False, type=click.Choice(["I", "II", "III", "IV"])),
    click.option("--computed", is_flag=True, help="Drop an override and return to the computed grade."),
    click.option("--reason", default=None, help="Why the grade is overridden (required with LEVEL)."),
)
def grade_cmd(level: str | None, computed: bool, **args: Any) -> dict[str, Any]:
    """Override the computed grade with a reason, or return to it with --computed."""
    if bool(level) == computed:
        raise UsageError("give a LEVEL to override the grade, or --computed to return to the computed one")
    return {"level": level or "", **args}


@_change(
    "step",
    click.argument("step"),
    click.argument("action", type=click.Choice(["start", "complete", "skip"])),
    click.option("--note", default=None),
)
def step_cmd(**args: Any) -> dict[str, Any]:
    """Start, complete or skip (with --note as reason) a step of the plan."""
    return args


@_change(
    "meet",
    click.argument("obligation"),
    click.option("--how", required=True, help="How it was met: channel, office, form (kept as proof)."),
    click.option("--reference", default=None, help="The receipt or case number the recipient gave."),
    click.option("--at", default=None, help="When it was met (RFC 3339); default now."),
)
def meet_cmd(**args: Any) -> dict[str, Any]:
    """Record that an obligation (a report, a notice) was met: when and how."""
    return args


@_change("waive", click.argument("obligation"), click.option("--reason", required=True))
def waive_cmd(**args: Any) -> dict[str, Any]:
    """Waive an obligation that does not apply, with the reason (kept on the record)."""
    return args


@_change("measure", click.argument("text"))
def measure_cmd(**args: Any) -> dict[str, Any]:
    """Record a containment or remedial measure taken."""
    return args


@_change("update", click.argument("text"))
def update_cmd(**args: Any) -> dict[str, Any]:
    """Record a significant development (for follow-up reports)."""
    return args


@_change("evidence")
def evidence_cmd(**args: Any) -> dict[str, Any]:
    """Recompute the evidence from the store (events that arrived late); the grade follows."""
    return args


@_change("contain", click.option("--note", default=None, help="What stopped it."))
def contain_cmd(**args: Any) -> dict[str, Any]:
    """The leak is stopped."""
    return args


@_change("resolve", click.option("--note", default=None))
def resolve_cmd(**args: Any) -> dict[str, Any]:
    """Handling has ended: the clocks of the closing summary and review start now."""
    return args


@_change(
    "review",
    click.option("--cause", required=True),
    click.option("--responsibility", required=True),
    click.option("--countermeasures", required=True),
    click.option("--prevention", required=True),
    click.option("--lessons", default=""),
)
def review_cmd(**args: Any) -> dict[str, Any]:
    """The post-incident review (Dalian 6.7.5.5, 8.1); required before closing grade III and above."""
    return args


@_change("close", click.option("--reason", default=None))
def close_cmd(**args: Any) -> dict[str, Any]:
    """Close: refused while obligations are open or a required review is missing."""
    return args


@incidents_group.command("report")
@data_dir_option
@click.argument("ref")
@_by_option
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(list(TEMPLATES)),
    help="Which documents (repeatable; default: the initial report).",
)
@click.option("--lang", "langs", multiple=True, type=click.Choice(["zh", "en"]), help="Default: zh and en.")
@click.option(
    "--doc-format", "fmts", multiple=True, type=click.Choice(["md", "html", "pdf"]), help="Default: md and html."
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None, help="Default: the outbox.")
@click.pass_context
def report_cmd(
    ctx: click.Context,
    data_dir: Path | None,
    ref: str,
    by: str,
    kinds: tuple[str, ...],
    langs: tuple[str, ...],
    fmts: tuple[str, ...],
    out: Path | None,
) -> None:
    """Write documents from the incident's record (zh and en; Markdown, HTML or PDF) and record them."""
    from trail.incidents.filing import write_incident_documents

    settings = _settings(ctx, data_dir)
    with incidents_backend(settings) as backend:
        paths = write_incident_documents(
            backend,
            settings,
            ref,
            by=by,
            kinds=kinds or ("initial_report",),
            langs=langs or ("zh", "en"),
            fmts=fmts or ("md", "html"),
            out_dir=out,
        )
    for p in paths:
        click.echo(str(p))


@incidents_group.command("notify")
@data_dir_option
@click.argument("ref")
@_by_option
@click.option("--draft", "mode", flag_value="draft", help="Write the notice (zh, en) and count the recipients.")
@click.option("--approve", "mode", flag_value="approve", help="Approve the drafted notice (a second responder).")
@click.option("--send", "mode", flag_value="send", help="Send one notice per affected subject (resumable).")
@click.option("--status", "mode", flag_value="status", help="Delivery counts of this incident's notices.")
@click.option("--channel", default=None, help="outbox, smtp://..., webhook:URL (default: TRAIL_NOTICE_CHANNEL).")
@click.option("--resolver", default=None, help="Contact resolver (default: TRAIL_CONTACT_RESOLVER).")
@click.option("--resend-in-doubt", is_flag=True, help="Also resend notices whose delivery was cut off mid-send.")
@click.pass_context
def notify_cmd(
    ctx: click.Context,
    data_dir: Path | None,
    ref: str,
    by: str,
    mode: str | None,
    channel: str | None,
    resolver: str | None,
    resend_in_doubt: bool,
) -> None:
    """Notices to the individuals affected (PIPL Art. 57): draft, approve, send, status."""
    from trail.notices import workflow

    if mode is None:
        raise UsageError("say what to do: --draft, --approve, --send or --status")
    settings = _settings(ctx, data_dir)
    with incidents_backend(settings, need_store=mode in ("draft", "send")) as backend:
        if mode == "draft":
            result = workflow.draft(backend, settings, ref, by=by)
        elif mode == "approve":
            result = workflow.approve(backend, ref, by=by)
        elif mode == "status":
            result = workflow.status(settings, backend, ref)
        else:
            result = _send_notices(
                backend,
                settings,
                ref,
                by=by,
                channel_spec=channel,
                resolver_spec=resolver,
                resend_in_doubt=resend_in_doubt,
            )
    click.echo(json.dumps(result, ensure_ascii=False, default=str))
    if mode == "send" and (result.get("interrupted") or result.get("failed") or result.get("in_doubt")):
        sys.exit(1)


def _send_notices(backend: Any, settings: Settings, ref: str, **options: Any) -> dict[str, Any]:
    """``notify --send``: a progress bar on a TTY, and Ctrl-C stops after the notice in flight."""
    from trail.config import running_server
    from trail.notices import workflow

    info = running_server(settings)
    bootstrap = str(info["kafka"]) if info and info.get("kafka") else None
    stop = threading.Event()
    bar: Any = None
    task: Any = None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        bar = Progress("notices", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False)
        task = bar.add_task("send", total=None)

    def on_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(task, completed=done, total=total)

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()
        print("\nstopping after the notice in flight; run the same command again to resume", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_signal)
    if bar is not None:
        bar.start()
    try:
        return workflow.send(backend, settings, ref, bootstrap=bootstrap, progress=on_progress, stop=stop, **options)
    finally:
        if bar is not None:
            bar.stop()
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- playbook
@click.group("playbook", cls=TrailGroup)
def playbook_group() -> None:
    """The graded emergency plan: validate it, render it as the filing document."""


@playbook_group.command("validate")
@data_dir_option
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def validate_cmd(ctx: click.Context, data_dir: Path | None, files: tuple[Path, ...]) -> None:
    """Check playbook files (default: the one in force); errors name the file and line."""
    from trail.incidents.playbook import PlaybookError, load_playbook

    settings = _settings(ctx, data_dir)
    paths: list[Path | None] = list(files) or [settings.playbook]
    bad = 0
    for p in paths:
        try:
            pb = load_playbook(p)
        except PlaybookError as exc:
            click.echo(f"trail: error: {exc}", err=True)
            bad += 1
            continue
        verify = sum(1 for g in pb.grades for c in g.criteria if c.status == "verify") + sum(
            1 for o in pb.overlays if o.criterion.status == "verify"
        )
        click.echo(
            f"{pb.source_file}: ok — {pb.organisation.name} ({pb.organisation.org_type}), "
            f"{len(pb.steps)} steps, {len(pb.obligations)} obligations, {verify} thresholds marked verify"
        )
    if bad:
        sys.exit(2)


@playbook_group.command("render")
@data_dir_option
@click.option("--format", "fmt", type=click.Choice(["md", "html", "pdf"]), default="md", show_default=True)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@click.option("--playbook", "path", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Default: stdout.")
@click.pass_context
def render_cmd(
    ctx: click.Context, data_dir: Path | None, fmt: str, lang: str, path: Path | None, out: Path | None
) -> None:
    """Write the graded emergency plan (Xiamen Art. 8(4) filing; Shenzhen Art. 85; PIPL Art. 51(5)).

    The drill schedule counts from the last drill recorded in the incident store (trail drill),
    else from the playbook's drills.last."""
    from trail.incidents.filing import plan_document

    settings = _settings(ctx, data_dir)
    if fmt == "pdf" and out is None and sys.stdout.isatty():
        raise UsageError("--format pdf: give --out FILE (or redirect standard output to a file)")
    data = plan_document(settings, path, lang=lang, fmt=fmt)
    if out is None:
        if fmt == "pdf":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            click.echo(data.decode("utf-8"))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        click.echo(str(out))


# --------------------------------------------------------------------------- drill
@click.command("drill")
@data_dir_option
@_by_option
@click.option("--playbook", "path", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--people", type=click.IntRange(0), default=1_200_000, show_default=True, help="People affected.")
@click.option("--sensitive", type=click.IntRange(0), default=0, help="Of them, with sensitive categories.")
@click.option(
    "--org-type",
    type=click.Choice(["playbook", "cii", "state_organ", "other"]),
    default="playbook",
    show_default=True,
    help="Run as this kind of organisation (what-if), instead of the playbook's own.",
)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def drill_cmd(
    ctx: click.Context,
    data_dir: Path | None,
    by: str,
    path: Path | None,
    people: int,
    sensitive: int,
    org_type: str,
    fmt: str,
) -> None:
    """Run the playbook against a synthetic incident; the drill is recorded as a drill incident."""
    from trail.incidents.drill import run_drill

    settings = _settings(ctx, data_dir)
    result = run_drill(
        settings,
        by=by,
        playbook_path=path,
        people=people,
        sensitive=sensitive,
        org_type=org_type,
        now=datetime.now(UTC),
    )
    if fmt == "json":
        click.echo(json.dumps(result, ensure_ascii=False, default=str))
        return
    click.echo(
        f"drill {result['ref']}: grade {result['grade']} for {people:,} people "
        f"({result['org_type']}); {len(result['obligations'])} obligations:"
    )
    for o in result["obligations"]:
        click.echo(f"  {o['id']:<24} {o['recipient_en'][:60]:<60} due {o['due']}")
    click.echo(f"  documents: {result['documents_dir']}")
    click.echo(f"  next drill due: {result['next_drill_due']}")
