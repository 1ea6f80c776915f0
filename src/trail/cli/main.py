"""The ``trail`` command line (DESIGN.md §5).

Exit status: 0 success; 1 a finding (``gaps``); 2 bad usage, input or configuration;
3 the stack, broker or store failed. Errors are one line on stderr that says what to fix.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from trail import __version__
from trail.cli.access_commands import register_access_commands
from trail.cli.common import (
    FORMATS,
    LOCAL_LOOKUP_PURPOSE,
    F,
    TrailGroup,
    _fail,
    api_client,
    data_dir_option,
    emit_rows,
    uses_local_token,
)
from trail.cli.detect_commands import alerts_group, rules_group
from trail.cli.incident_commands import drill_cmd, incidents_group, playbook_group
from trail.cli.rights_commands import register_rights_commands
from trail.config import Settings, load_settings
from trail.errors import ConfigError, UsageError
from trail.events.model import ACTIONS, DATA_CATEGORIES, DESTINATION_KINDS, parse_timestamp
from trail.files import private_umask
from trail.logging import configure
from trail.service import QueryFilters
from trail.storage.schema import cluster_ddl, single_server_ddl


def _settings(ctx: click.Context) -> Settings:
    obj: Settings = ctx.obj
    return obj


@click.group(cls=TrailGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trail")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Data directory (default: $TRAIL_DATA_DIR, else ./.trail).",
)
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """trail: the audit trail of every operation on personal information."""
    try:
        ctx.obj = load_settings(data_dir=data_dir)
    except ConfigError as exc:
        _fail(str(exc), 2)
    # The trail's files (data directory, outbox, documents) are its user's alone, whatever the umask.
    private_umask()
    # Long-running roles log at the configured level; one-shot commands only say what went wrong.
    quiet = ctx.invoked_subcommand not in ("up", "sink") and "TRAIL_LOG_LEVEL" not in os.environ
    configure("warning" if quiet else ctx.obj.log_level, ctx.obj.log_format)


def _apply_data_dir(ctx: click.Context, data_dir: Path | None) -> Settings:
    if data_dir is not None:
        try:
            ctx.obj = load_settings(data_dir=data_dir)
        except ConfigError as exc:
            _fail(str(exc), 2)
    return _settings(ctx)


def event_summary(ev: dict[str, Any]) -> dict[str, Any]:
    return {
        "occurred_at": ev["occurred_at"],
        "event_id": ev["event_id"],
        "actor": f"{ev['actor']['kind']}:{ev['actor']['id']}",
        "action": ev["action"],
        "records": ev["record_count"],
        "subjects": len(ev["subject_refs"]),
        "categories": ev["data_categories"],
        "target": ev["target"]["system"] + (f"/{ev['target']['dataset']}" if "dataset" in ev["target"] else ""),
        "destination": (ev.get("destination") or {}).get("kind", ""),
        "outcome": ev["outcome"],
        "producer": f"{ev['producer']['id']}#{ev['producer']['seq']}",
    }


def _backend(settings: Settings) -> tuple[Any, Callable[[], None]]:
    """The API (``TRAIL_API_URL``, or ``trail up`` on this data directory), else the store in-process."""
    from trail.service import direct_backend

    api = api_client(settings)
    if api is not None:
        return api, lambda: None
    backend = direct_backend(settings)

    def close() -> None:
        backend.client.close(timeout=30)
        backend.store.close()

    return backend, close


# -------------------------------------------------------------------- commands
@cli.command()
@click.option(
    "--form",
    type=click.Choice(["wire", "input"]),
    default="wire",
    show_default=True,
    help="wire: as carried on trail.events and stored; input: as a service hands it to the SDK.",
)
def schema(form: str) -> None:
    """Print the JSON Schema of the v1 audit event."""
    from importlib import resources

    text = resources.files("trail.events").joinpath("schema", f"audit-v1.{form}.json").read_text(encoding="utf-8")
    click.echo(text)


@cli.command()
@data_dir_option
@click.pass_context
def up(ctx: click.Context, data_dir: Path | None) -> None:
    """Run the local stack: broker, sink, store and HTTP API, until SIGINT/SIGTERM."""
    from trail.local.stack import LocalStack

    settings = _apply_data_dir(ctx, data_dir)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stack = LocalStack(settings).start()
    click.echo(
        json.dumps(
            {
                "api": stack.api_url,
                "console": stack.api_url + "/console/",
                "kafka": stack.bootstrap,
                "data_dir": str(settings.data_dir),
            }
        ),
        err=True,
    )
    if settings.mode == "local":
        click.echo(
            f"console: {stack.api_url}/console/ (log in with the token in {settings.local_token_path})", err=True
        )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()


@cli.command()
@data_dir_option
@click.option("--fresh", is_flag=True, help="Delete the data directory's previous demo first.")
@click.option("--events", "n_events", type=click.IntRange(100, 200_000), default=4000, show_default=True)
@click.pass_context
def demo(ctx: click.Context, data_dir: Path | None, fresh: bool, n_events: int) -> None:
    """A scripted end-to-end run on a fresh data directory."""
    from trail.local.demo import run_demo

    settings = _apply_data_dir(ctx, data_dir)
    sys.exit(run_demo(settings, fresh=fresh, n_events=n_events))


@cli.command()
@data_dir_option
@click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    required=True,
    help="JSON lines, one v1 event per line ('-' for standard input).",
)
@click.pass_context
def emit(ctx: click.Context, data_dir: Path | None, path: Path) -> None:
    """Send v1 events through the SDK; prints {"accepted", "rejected", "errors"}."""
    settings = _apply_data_dir(ctx, data_dir)
    if str(path) == "-":
        lines = sys.stdin.buffer.read().splitlines()
    else:
        try:
            lines = path.read_bytes().splitlines()
        except OSError as exc:
            raise UsageError(f"--file: cannot read {path} ({exc.strerror})") from None
    backend, close = _backend(settings)
    try:
        if hasattr(backend, "client") and sys.stderr.isatty() and len(lines) > 1000:
            from rich.progress import Progress

            from trail.service import emit_lines

            with Progress(transient=True) as bar:
                task = bar.add_task("recording", total=len(lines))
                result = emit_lines(backend.client, lines, progress=lambda n: bar.update(task, completed=n)).as_dict()
        else:
            result = backend.emit(lines)
    finally:
        close()
    click.echo(json.dumps(result, ensure_ascii=False))
    if result["accepted"] == 0 and result["rejected"] > 0:
        sys.exit(2)


def _query_options(fn: F) -> F:
    fn = click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)(fn)
    fn = click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)(fn)
    fn = click.option("--destination", type=click.Choice(DESTINATION_KINDS), help="Where the data went.")(fn)
    fn = click.option("--category", type=click.Choice(DATA_CATEGORIES))(fn)
    fn = click.option("--action", type=click.Choice(ACTIONS))(fn)
    fn = click.option("--until", help="RFC 3339 timestamp (exclusive).")(fn)
    fn = click.option("--since", help="RFC 3339 timestamp (inclusive).")(fn)
    return data_dir_option(fn)


def _filters(
    since: str | None,
    until: str | None,
    action: str | None,
    category: str | None,
    limit: int,
    destination: str | None = None,
) -> QueryFilters:
    return QueryFilters.parse(since, until, action, category, limit, destination, prefix="--")


@cli.group("query")
def query_group() -> None:
    """Read the trail: all events, one subject's, one actor's."""


def _run_query(ctx: click.Context, data_dir: Path | None, kind: str, key: str | None, fmt: str, **f: Any) -> None:
    settings = _apply_data_dir(ctx, data_dir)
    filters = _filters(**f)
    backend, close = _backend(settings)
    try:
        rows = backend.query(kind, key, filters)
    finally:
        close()
    _print_events(rows, fmt)


def _print_events(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        emit_rows(rows, "json")
    else:
        emit_rows([event_summary(r) for r in rows], fmt, title=f"{len(rows)} events")


@query_group.command("events")
@_query_options
@click.pass_context
def query_events(ctx: click.Context, /, data_dir: Path | None, fmt: str, **f: Any) -> None:
    """Events in a time range, oldest first."""
    _run_query(ctx, data_dir, "events", None, fmt, **f)


@query_group.command("subject")
@click.argument("subject_id")
@click.option(
    "--purpose", default=None, help="Why you look this person up (required through the API; kept in the access log)."
)
@_query_options
@click.pass_context
def query_subject(
    ctx: click.Context, /, subject_id: str, purpose: str | None, data_dir: Path | None, fmt: str, **f: Any
) -> None:
    """Every event about one subject (give the raw id; only its keyed reference is used).

    Through an API the server turns the id into its reference (the command line holds no key)
    and the lookup states a purpose; with the local token of `trail up` and no --purpose, the
    purpose recorded says so. Without an API, the data directory's key is used here."""
    from trail.sdk.pseudonymise import Pseudonymiser

    settings = _apply_data_dir(ctx, data_dir)
    if _is_ref(subject_id):
        _run_query(ctx, data_dir, "subject", subject_id.lower(), fmt, **f)
        return
    api = api_client(settings)
    if api is not None:
        if not purpose and uses_local_token(settings):
            purpose = LOCAL_LOOKUP_PURPOSE
        if not purpose:
            raise UsageError("--purpose: required (why you look this person up; kept in the access log)")
        rows = api.subject_events(subject_id, purpose, _filters(**f))
        _print_events(rows, fmt)
        return
    ref = Pseudonymiser(settings.require_subject_key()).ref(subject_id)
    _run_query(ctx, data_dir, "subject", ref, fmt, **f)


def _is_ref(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


@query_group.command("actor")
@click.argument("actor_id")
@_query_options
@click.pass_context
def query_actor(ctx: click.Context, /, actor_id: str, data_dir: Path | None, fmt: str, **f: Any) -> None:
    """Every event one actor (employee, service, agent) performed."""
    _run_query(ctx, data_dir, "actor", actor_id, fmt, **f)


@cli.command()
@data_dir_option
@click.option("--producer", help="Only this producer id.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def gaps(ctx: click.Context, data_dir: Path | None, producer: str | None, fmt: str) -> None:
    """Missing producer.seq ranges per producer; exit 1 when there are any."""
    settings = _apply_data_dir(ctx, data_dir)
    backend, close = _backend(settings)
    try:
        rows = backend.gaps(producer)
    finally:
        close()
    if rows or fmt != "table":
        columns = ["producer_id", "first_missing", "last_missing", "missing", "detail"]
        emit_rows(rows, fmt, columns=columns, title="sequence gaps and lost tails")
    else:
        click.echo("no gaps: every producer's sequence is complete from 1 to its highest stored seq")
    sys.exit(1 if rows else 0)


@cli.command()
@data_dir_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def counts(ctx: click.Context, data_dir: Path | None, fmt: str) -> None:
    """Counts read back from the store: events, deliveries, producers, records, by action."""
    settings = _apply_data_dir(ctx, data_dir)
    backend, close = _backend(settings)
    try:
        c = backend.counts()
    finally:
        close()
    if fmt == "json":
        click.echo(json.dumps(c))
        return
    rows = [{"action": a, "events": v["events"], "records": v["records"]} for a, v in c["by_action"].items()]
    emit_rows(rows, fmt, columns=["action", "events", "records"], title=f"{c.get('events', 0)} events")


@cli.group("config")
def config_group() -> None:
    """Configuration."""


@config_group.command("show")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def config_show(ctx: click.Context, fmt: str) -> None:
    """Print the effective settings, secrets masked."""
    values = _settings(ctx).masked()
    if fmt == "json":
        click.echo(json.dumps(values, default=str))
    else:
        emit_rows([{"setting": k, "value": v} for k, v in values.items()], "table", ["setting", "value"])


@cli.group("store")
def store_group() -> None:
    """The store's schema."""


@store_group.command("ddl")
@click.option("--cluster", default=None, help="Print the schema for this ClickHouse cluster (ON CLUSTER, sharded).")
@click.option("--database", default=None, help="Database name (default: TRAIL_CLICKHOUSE_DATABASE).")
@click.pass_context
def store_ddl(ctx: click.Context, cluster: str | None, database: str | None) -> None:
    """Print the schema as SQL: for one server, or (--cluster) Replicated tables, Distributed
    tables over them and views, every statement ON CLUSTER. Runs nothing."""
    db = database or _settings(ctx).clickhouse_database
    stmts = cluster_ddl(db, cluster) if cluster else single_server_ddl(db)
    for stmt in stmts:
        click.echo(stmt if stmt.startswith("--") else stmt + ";")


@cli.group("keys")
def keys_group() -> None:
    """Checkpoint signing keys."""


@keys_group.command("init")
@data_dir_option
@click.option("--force", is_flag=True, help="Replace an existing key (old checkpoints then need the old public key).")
@click.pass_context
def keys_init(ctx: click.Context, data_dir: Path | None, force: bool) -> None:
    """Create the Ed25519 key pair that signs checkpoints; prints the public key."""
    from trail.integrity.keys import generate, write_keypair

    settings = _apply_data_dir(ctx, data_dir)
    priv, pub = write_keypair(settings.checkpoint_key_path.parent, generate(), overwrite=force)
    if settings.checkpoint_key_file is not None and priv != settings.checkpoint_key_path:
        raise UsageError("TRAIL_CHECKPOINT_KEY_FILE names another file; create the key there")
    click.echo(
        json.dumps({"private_key": str(priv), "public_key_file": str(pub), "public_key": pub.read_text().strip()})
    )


@cli.command()
@data_dir_option
@click.option("--since", type=click.IntRange(1), help="Verify incrementally from this checkpoint number.")
@click.option("--strict", is_flag=True, help="Also report events no checkpoint covers yet as inserted.")
@click.option("--public-key", "public_key", help="Public key (hex or file); default: the data directory's.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def verify(
    ctx: click.Context, data_dir: Path | None, since: int | None, strict: bool, public_key: str | None, fmt: str
) -> None:
    """Recompute every hash, chain and checkpoint, and compare the lookup copies with the events;
    exit 1 and list what was tampered with."""
    settings = _apply_data_dir(ctx, data_dir)
    from trail.integrity.keys import load_public_key

    key = load_public_key(public_key) if public_key else None
    if key is None and not settings.public_key_path.exists():
        raise UsageError(f"no public key at {settings.public_key_path}: pass --public-key or run `trail keys init`")
    backend, close = _backend(settings)
    try:
        result = backend.verify(since, strict, key.raw_hex if key else None)
    finally:
        close()
    findings, summary = result["findings"], result["summary"]
    if fmt == "json":
        click.echo(json.dumps(summary))
        for f in findings:
            click.echo(json.dumps(f))
    elif fmt == "csv" or findings:
        emit_rows(findings, fmt, ["kind", "producer_id", "seq", "event_id", "checkpoint", "detail"], "findings")
    if fmt == "table":
        state = "intact" if summary["intact"] else f"{len(findings)} findings"
        click.echo(
            f"{state}: {summary['events_checked']} events checked, {summary['sealed_events']} sealed by "
            f"{summary['checkpoints_checked']} checkpoints, {summary['unsealed_events']} not yet sealed, "
            f"{summary['expired_events']} expired by retention; "
            f"{summary.get('copy_rows_checked', 0)} rows of the lookup copies compared with events"
        )
    sys.exit(0 if summary["intact"] else 1)


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, required=True)
@data_dir_option
@click.option("--public-key", "public_key", help="With `check`: the organisation's public key (hex or file).")
@click.pass_context
def proof(ctx: click.Context, args: tuple[str, ...], data_dir: Path | None, public_key: str | None) -> None:
    """`trail proof EVENT_ID > proof.json` writes an inclusion proof;
    `trail proof check proof.json --public-key KEY` checks one offline (exit 1 if it fails)."""
    if args[0] == "check":
        from trail.integrity.keys import load_public_key
        from trail.integrity.proof import check_proof

        if len(args) != 2 or not public_key:
            raise UsageError("usage: trail proof check PROOF.json --public-key KEY")
        try:
            doc = json.loads(Path(args[1]).read_bytes())
        except OSError as exc:
            raise UsageError(f"PROOF: cannot read {args[1]} ({exc.strerror})") from None
        except ValueError:
            click.echo("proof FAILED: not valid JSON")
            sys.exit(1)
        problems = check_proof(doc, load_public_key(public_key))
        if problems:
            for p in problems:
                click.echo(f"proof FAILED: {p}")
            sys.exit(1)
        cp = doc["checkpoint"]
        click.echo(
            f"proof OK: event {doc['event']['event_id']} is leaf {doc['leaf_index']} of {doc['tree_size']} "
            f"under checkpoint {cp['seq']} (root {cp['root'][:16]}…), signed by key {cp['key_id']}"
        )
        return
    if len(args) != 1:
        raise UsageError("usage: trail proof EVENT_ID  |  trail proof check PROOF.json --public-key KEY")
    settings = _apply_data_dir(ctx, data_dir)
    backend, close = _backend(settings)
    try:
        doc = backend.proof(args[0])
    finally:
        close()
    click.echo(json.dumps(doc, ensure_ascii=False, indent=2))


@cli.group("retention")
def retention_group() -> None:
    """Lawful expiry of sealed ranges (Shenzhen Art. 25)."""


@retention_group.command("apply")
@data_dir_option
@click.option("--before", required=True, help="Remove every checkpoint sealed before this RFC 3339 time, whole.")
@click.option("--reason", required=True, help="Why (e.g. 'retention period of 3 years ended, policy R-7').")
@click.pass_context
def retention_apply(ctx: click.Context, data_dir: Path | None, before: str, reason: str) -> None:
    """LOCAL MODE ONLY, no API running: delete whole sealed ranges at once (no second admin, no
    floor, no holds) and sign a retention record that verify accepts. Everywhere else use
    `trail retention request` and a second admin's `trail retention approve`."""
    from trail.service import direct_backend

    settings = _apply_data_dir(ctx, data_dir)
    parse_timestamp("--before", before)
    if settings.mode != "local" or api_client(settings) is not None:
        raise UsageError(
            "retention apply is for a local data directory with no API running; use `trail retention request` "
            "and a second admin's `trail retention approve`"
        )
    backend = direct_backend(settings)

    def close() -> None:
        backend.client.close(timeout=30)
        backend.store.close()

    try:
        result = backend.retention(before, reason)
    finally:
        close()
    if not result["applied"]:
        click.echo("nothing to expire: no unexpired checkpoint was sealed before --before")
        return
    rec = result["record"]
    n = sum(c["count"] for c in rec["checkpoints"])
    click.echo(json.dumps({"retention_record": rec["seq"], "checkpoints": len(rec["checkpoints"]), "events": n}))


@cli.command()
@data_dir_option
@click.pass_context
def sink(ctx: click.Context, data_dir: Path | None) -> None:
    """Run the sink consumer alone (production role; see consumers/sink.py)."""
    from trail.wiring import run_sink

    settings = _apply_data_dir(ctx, data_dir)
    sys.exit(run_sink(settings))


cli.add_command(alerts_group)
cli.add_command(rules_group)
register_access_commands(cli, retention_group)
cli.add_command(incidents_group)
cli.add_command(playbook_group)
cli.add_command(drill_cmd)
register_rights_commands(cli)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="trail")


def iter_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from fh


if __name__ == "__main__":
    main()
