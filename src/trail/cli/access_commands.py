"""``trail principals|tokens|holds|sql|access-log|serve`` and ``trail retention request|approve|list``.

Everything here goes through the API (``TRAIL_API_URL`` + ``TRAIL_TOKEN``, or ``trail up`` on
the data directory with its local token), so every change and every read is authorised and
recorded in the access log. The one exception is the production bootstrap of the first admin:
``trail principals add NAME --role admin --bootstrap`` writes straight to the principals'
database, once, and only while no admin exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from trail.access.roles import ROLES
from trail.cli.common import FORMATS, api_client, data_dir_option, emit_rows, settings_for
from trail.config import Settings
from trail.errors import Refused, UsageError
from trail.events.model import parse_timestamp


def _api(settings: Settings) -> Any:
    api = api_client(settings)
    if api is None:
        raise UsageError("no API: set TRAIL_API_URL and TRAIL_TOKEN, or start `trail up` on the data directory")
    return api


def _out(obj: Any, fmt: str = "json", columns: list[str] | None = None, title: str = "") -> None:
    if isinstance(obj, list):
        emit_rows(obj, fmt, columns, title)
    else:
        click.echo(json.dumps(obj, ensure_ascii=False, default=str))


# ------------------------------------------------------------------ principals
@click.group("principals")
def principals_group() -> None:
    """People and services that may use the API, and their roles (admin)."""


@principals_group.command("add")
@data_dir_option
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLES), help="Repeatable.")
@click.option("--kind", type=click.Choice(["staff", "service"]), default="staff", show_default=True)
@click.option(
    "--bootstrap",
    is_flag=True,
    help="Production's first admin: write straight to the principals' database (only while no admin exists) "
    "and print its first token.",
)
@click.pass_context
def principals_add(
    ctx: click.Context, data_dir: Path | None, name: str, roles: tuple[str, ...], kind: str, bootstrap: bool
) -> None:
    """Add a principal (names are normalised: E1002, e1002 and Ｅ１００２ are one)."""
    settings = settings_for(ctx, data_dir)
    if not bootstrap:
        _out(_api(settings).add_principal(name, list(roles), kind))
        return
    from trail.access.store import open_access_store

    if set(roles) != {"admin"}:
        raise UsageError("--bootstrap makes the first admin only: --role admin")
    access = open_access_store(settings)
    try:
        admins = access.active_admins()
        if admins:
            raise Refused(f"an admin exists already ({', '.join(admins)}); use the API with an admin's token")
        p = access.add_principal(name, ["admin"], kind="staff", by="bootstrap")
        tok, secret = access.create_token(p.name, by="bootstrap", expires_at=None)
    finally:
        access.close()
    _out({"principal": p.public(), "token": {"id": tok.id, "principal": p.name, "token": secret, "expires_at": None}})
    click.echo("keep the token now: it is shown once and stored only as a hash", err=True)


@principals_group.command("list")
@data_dir_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def principals_list(ctx: click.Context, data_dir: Path | None, fmt: str) -> None:
    """Every principal with its kind, roles and state."""
    rows = _api(settings_for(ctx, data_dir)).principals()
    emit_rows(rows, fmt, ["name", "kind", "roles", "disabled", "created_at", "created_by"], "principals")


@principals_group.command("disable")
@data_dir_option
@click.argument("name")
@click.pass_context
def principals_disable(ctx: click.Context, data_dir: Path | None, name: str) -> None:
    """Disable a principal: every token of it stops working at once."""
    _out(_api(settings_for(ctx, data_dir)).change_principal(name, "disable"))


@principals_group.command("enable")
@data_dir_option
@click.argument("name")
@click.pass_context
def principals_enable(ctx: click.Context, data_dir: Path | None, name: str) -> None:
    """Enable a disabled principal again."""
    _out(_api(settings_for(ctx, data_dir)).change_principal(name, "enable"))


# ------------------------------------------------------------------ tokens
@click.group("tokens")
def tokens_group() -> None:
    """Bearer tokens (admin): shown once, stored as hashes, expiring, revocable at once."""


@tokens_group.command("create")
@data_dir_option
@click.argument("principal")
@click.option("--expires", default="90d", show_default=True, help="12h, 90d, 2w, 1y or 'never'.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def tokens_create(ctx: click.Context, data_dir: Path | None, principal: str, expires: str, fmt: str) -> None:
    """A new token for PRINCIPAL; json: {"id", "principal", "token", "expires_at"}."""
    out = _api(settings_for(ctx, data_dir)).create_token(principal, expires)
    if fmt == "json":
        click.echo(json.dumps(out))
        return
    click.echo(f"token {out['id']} for {out['principal']} (expires {out['expires_at'] or 'never'}):")
    click.echo(out["token"])
    click.echo("keep it now: it is shown once and stored only as a hash", err=True)


@tokens_group.command("list")
@data_dir_option
@click.option("--principal", default=None)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def tokens_list(ctx: click.Context, data_dir: Path | None, principal: str | None, fmt: str) -> None:
    """Tokens (never their secrets): id, principal, state, expiry, who made and revoked them."""
    rows = _api(settings_for(ctx, data_dir)).tokens(principal)
    emit_rows(rows, fmt, ["id", "principal", "state", "expires_at", "created_at", "created_by", "revoked_by"], "tokens")


@tokens_group.command("revoke")
@data_dir_option
@click.argument("token_id")
@click.pass_context
def tokens_revoke(ctx: click.Context, data_dir: Path | None, token_id: str) -> None:
    """Revoke a token; it stops working at once."""
    _out(_api(settings_for(ctx, data_dir)).revoke_token(token_id))


# ------------------------------------------------------------------ legal holds
@click.group("holds")
def holds_group() -> None:
    """Legal holds (auditor): ranges of event time that retention cannot delete."""


@holds_group.command("add")
@data_dir_option
@click.option("--from", "start", required=True, help="RFC 3339: the oldest event time held.")
@click.option("--to", "end", required=True, help="RFC 3339: held up to this time.")
@click.option("--reason", required=True, help="The case, order or request the hold serves.")
@click.pass_context
def holds_add(ctx: click.Context, data_dir: Path | None, start: str, end: str, reason: str) -> None:
    """Place a hold."""
    parse_timestamp("--from", start)
    parse_timestamp("--to", end)
    _out(_api(settings_for(ctx, data_dir)).add_hold(start, end, reason))


@holds_group.command("list")
@data_dir_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def holds_list(ctx: click.Context, data_dir: Path | None, fmt: str) -> None:
    """Every hold, active and released."""
    rows = _api(settings_for(ctx, data_dir)).holds()
    emit_rows(rows, fmt, ["id", "start_at", "end_at", "reason", "created_by", "released_at", "released_by"], "holds")


@holds_group.command("release")
@data_dir_option
@click.argument("hold_id")
@click.pass_context
def holds_release(ctx: click.Context, data_dir: Path | None, hold_id: str) -> None:
    """Release a hold (kept on record)."""
    _out(_api(settings_for(ctx, data_dir)).release_hold(hold_id))


# ------------------------------------------------------------------ retention (admins)
def _retention_commands(group: click.Group) -> None:
    @group.command("request")
    @data_dir_option
    @click.option("--before", required=True, help="Expire the checkpoints sealed before this RFC 3339 time, whole.")
    @click.option("--reason", required=True, help="The retention policy that ended.")
    @click.pass_context
    def retention_request(ctx: click.Context, data_dir: Path | None, before: str, reason: str) -> None:
        """Ask for a retention (admin); a second admin approves it. Refused within the floor
        (TRAIL_RETENTION_FLOOR_DAYS, ≥ 183) or over a legal hold."""
        parse_timestamp("--before", before)
        _out(_api(settings_for(ctx, data_dir)).request_retention(before, reason))

    @group.command("approve")
    @data_dir_option
    @click.argument("request_id")
    @click.pass_context
    def retention_approve(ctx: click.Context, data_dir: Path | None, request_id: str) -> None:
        """Approve another admin's request: the expiry runs now and is signed."""
        _out(_api(settings_for(ctx, data_dir)).approve_retention(request_id))

    @group.command("list")
    @data_dir_option
    @click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
    @click.pass_context
    def retention_list(ctx: click.Context, data_dir: Path | None, fmt: str) -> None:
        """Retention requests: pending, executed, with who asked and who approved."""
        rows = _api(settings_for(ctx, data_dir)).retention_requests()
        cols = ["id", "status", "before_at", "reason", "requested_by", "approved_by", "approved_at"]
        emit_rows(rows, fmt, cols, "retention requests")


# ------------------------------------------------------------------ analysts and auditors
@click.command("sql")
@data_dir_option
@click.argument("query")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def sql_cmd(ctx: click.Context, data_dir: Path | None, query: str, fmt: str) -> None:
    """Read-only SQL over the trail's tables: one SELECT (analyst); the text goes to the access log."""
    settings = settings_for(ctx, data_dir)
    api = api_client(settings)
    if api is not None:
        out = api.sql(query)
    else:
        from trail.access.sql import SqlRunner
        from trail.storage.store import open_store

        open_store(settings.store_dsn, settings.clickhouse_database).close()  # migrated
        runner = SqlRunner(
            settings.store_dsn,
            settings.clickhouse_database,
            max_rows=settings.sql_max_rows,
            timeout_s=settings.sql_timeout,
        )
        try:
            out = runner.run(query).as_dict()
        finally:
            runner.close()
    rows = [dict(zip(out["columns"], r, strict=True)) for r in out["rows"]]
    emit_rows(rows, fmt, out["columns"], f"{out['rows_returned']} rows" + (" (truncated)" if out["truncated"] else ""))


@click.command("access-log")
@data_dir_option
@click.option("--principal", default=None, help="Only this principal's requests.")
@click.option("--since", default=None)
@click.option("--until", default=None)
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def access_log_cmd(
    ctx: click.Context, data_dir: Path | None, principal: str | None, since: str | None, until: str | None,
    limit: int, fmt: str,
) -> None:  # fmt: skip
    """Who read or changed what through the API (auditor); reading it is logged too."""
    from trail.service import QueryFilters, direct_backend

    settings = settings_for(ctx, data_dir)
    f = QueryFilters(
        since=parse_timestamp("--since", since) if since else None,
        until=parse_timestamp("--until", until) if until else None,
        limit=limit,
    )
    api = api_client(settings)
    if api is not None:
        rows = api.query("access", principal, f)
    else:
        backend = direct_backend(settings)
        try:
            rows = backend.query("access", principal, f)
        finally:
            backend.client.close(timeout=30)
            backend.store.close()
    if fmt == "json":
        emit_rows(rows, "json")
        return
    flat = [
        {
            "occurred_at": r["occurred_at"],
            "principal": f"{r['actor']['kind']}:{r['actor']['id']}",
            "role": r["actor"].get("role", ""),
            "request": r["target"].get("resource", ""),
            "outcome": r["outcome"],
            "status": r["attributes"].get("status", ""),
            "rows": r["record_count"],
            "subject": "yes" if r["subject_refs"] else "",
            "purpose": r["purpose"],
            "ip": r["location"].get("ip", ""),
        }
        for r in rows
    ]
    emit_rows(flat, fmt, title=f"{len(flat)} requests")


@click.command("serve")
@data_dir_option
@click.pass_context
def serve_cmd(ctx: click.Context, data_dir: Path | None) -> None:
    """Run the API alone (production role; see consumers/api.py): Kafka, a ClickHouse server and
    the PostgreSQL incident store, on TRAIL_API_HOST:TRAIL_API_PORT until SIGTERM."""
    from trail.api.serve import run_serve

    sys.exit(run_serve(settings_for(ctx, data_dir)))


def register_access_commands(cli: click.Group, retention_group: click.Group) -> None:
    for cmd in (principals_group, tokens_group, holds_group, sql_cmd, access_log_cmd, serve_cmd):
        cli.add_command(cmd)
    _retention_commands(retention_group)
