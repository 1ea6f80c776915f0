"""``trail alerts …`` and ``trail rules …``: the review queue and the effective rules.

Registered on the main ``trail`` group with ``cli.add_command(alerts_group)`` and
``cli.add_command(rules_group)``; also runnable alone: ``python -m trail.cli.detect_commands``.

Where alerts come from: while ``trail up`` runs on the data directory (it owns the chDB
store), from ``trail.alerts`` on its broker; with ``TRAIL_KAFKA_BOOTSTRAP`` set (production),
read from the store and reviews published to ``trail.alerts`` (the alert sink applies them);
otherwise from the data directory's store directly. Every review is recorded as an audit event
with the reviewer as actor (MIIT Art. 13(3)).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trail.cli.common import FORMATS, TrailGroup, api_client, data_dir_option, emit_rows, settings_for
from trail.config import Settings, kafka_options
from trail.detect.alerts import STATUSES, Alert
from trail.detect.review import Alerts, SplitAlerts, StoreAlerts, TopicAlerts, get_alert, list_alerts, review_alert
from trail.detect.rules import ALERT_RULES, SEVERITIES, load_rules, rules_from_settings
from trail.errors import UsageError
from trail.events.model import parse_timestamp
from trail.sdk.client import Client

LIST_COLUMNS = ["alert_id", "rule", "severity", "actor", "window_start", "window_end", "count", "status", "summary"]


def _settings(ctx: click.Context, data_dir: Path | None) -> Settings:
    return settings_for(ctx, data_dir)


def _open(settings: Settings, *, review: bool) -> tuple[Alerts, Client | None, Callable[[], None]]:
    """Where to read and write alerts, and (for reviews) an SDK client for the audit event."""
    from trail.config import running_server
    from trail.sdk.transport import KafkaTransport
    from trail.service import direct_backend
    from trail.storage.store import open_store

    info = running_server(settings)
    if info and not settings.clickhouse_dsn:
        bootstrap = str(info["kafka"])
        alerts: Alerts = TopicAlerts(bootstrap, settings.topic("alerts"))
        client = None
        if review:
            client = Client(
                service="trail-cli",
                transport=KafkaTransport(bootstrap, settings.topic("events")),
                subject_key=settings.require_subject_key(),
                spool_dir=settings.effective_spool_dir,
                environment=settings.mode,
            )

        def close_stack() -> None:
            if client is not None:
                client.close(timeout=30)

        return alerts, client, close_stack
    if settings.kafka_bootstrap:
        store = open_store(settings.store_dsn, settings.clickhouse_database)
        alerts = SplitAlerts(
            StoreAlerts(store),
            TopicAlerts(settings.kafka_bootstrap, settings.topic("alerts"), options=kafka_options(settings)),
        )
        client = None
        if review:
            client = Client(
                service="trail-cli",
                transport=KafkaTransport(
                    settings.kafka_bootstrap, settings.topic("events"), extra=kafka_options(settings)
                ),
                subject_key=settings.require_subject_key(),
                spool_dir=settings.effective_spool_dir,
                environment=settings.mode,
            )

        def close_remote() -> None:
            if client is not None:
                client.close(timeout=30)
            store.close()

        return alerts, client, close_remote
    backend = direct_backend(settings)

    def close_direct() -> None:
        backend.client.close(timeout=30)
        backend.store.close()

    return StoreAlerts(backend.store), backend.client, close_direct


def _row(a: Alert) -> dict[str, Any]:
    return a.public()


@click.group("alerts", cls=TrailGroup)
def alerts_group() -> None:
    """The review queue of the streaming detectors (MIIT Art. 13(3); Shenzhen Art. 83)."""


@alerts_group.command("list")
@data_dir_option
@click.option("--status", type=click.Choice(STATUSES), help="Only alerts in this state.")
@click.option("--rule", type=click.Choice(ALERT_RULES), help="Only this rule's alerts.")
@click.option("--severity", type=click.Choice(SEVERITIES))
@click.option("--actor", help="Only alerts about this actor id.")
@click.option("--since", help="Only windows ending at or after this RFC 3339 time.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def alerts_list(
    ctx: click.Context,
    data_dir: Path | None,
    status: str | None,
    rule: str | None,
    severity: str | None,
    actor: str | None,
    since: str | None,
    limit: int,
    fmt: str,
) -> None:
    """Alerts, newest window first (json: one object per line)."""
    settings = _settings(ctx, data_dir)
    api = api_client(settings)
    if api is not None:
        params = {k: v for k, v in {"status": status, "rule": rule, "severity": severity, "actor": actor,
                                    "since": since, "limit": str(limit)}.items() if v}  # fmt: skip
        rows = api.alerts(params)
        emit_rows(rows, fmt, LIST_COLUMNS if fmt != "json" else None, title=f"{len(rows)} alerts")
        return
    alerts, _client, close = _open(settings, review=False)
    try:
        found = list_alerts(
            alerts,
            status=status,
            rule=rule,
            severity=severity,
            actor=actor,
            since=parse_timestamp("--since", since) if since else None,
            limit=limit,
        )
    finally:
        close()
    emit_rows([_row(a) for a in found], fmt, LIST_COLUMNS if fmt != "json" else None, title=f"{len(found)} alerts")


@alerts_group.command("show")
@click.argument("alert_id")
@data_dir_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def alerts_show(ctx: click.Context, alert_id: str, data_dir: Path | None, fmt: str) -> None:
    """One alert with its evidence (event ids) and the articles it serves."""
    settings = _settings(ctx, data_dir)
    api = api_client(settings)
    if api is not None:
        row = api.alert(alert_id)
    else:
        alerts, _client, close = _open(settings, review=False)
        try:
            row = _row(get_alert(alerts, alert_id))
        finally:
            close()
    if fmt == "json":
        click.echo(json.dumps(row, ensure_ascii=False))
    else:
        emit_rows([{"field": k, "value": v} for k, v in row.items()], fmt, ["field", "value"], title="alert")


def _review(
    ctx: click.Context, data_dir: Path | None, alert_id: str, decision: str, reviewer: str | None, reason: str
) -> None:
    settings = _settings(ctx, data_dir)
    api = api_client(settings)
    if api is not None:
        click.echo(json.dumps(api.review(alert_id, decision, reason, reviewer)))
        return
    if not reviewer:
        raise UsageError("--reviewer: give your staff id (or set TRAIL_REVIEWER)")
    alerts, client, close = _open(settings, review=True)
    assert client is not None
    try:
        alert = review_alert(alerts, client, alert_id, decision, reviewer=reviewer, reason=reason)
    finally:
        close()
    click.echo(json.dumps({"alert_id": alert.alert_id, "status": alert.status, "reviewer": alert.reviewer}))


def _review_options(fn: Any) -> Any:
    fn = click.option("--reason", required=True, help="Why; kept with the alert and in the trail.")(fn)
    fn = click.option(
        "--reviewer",
        envvar="TRAIL_REVIEWER",
        default=None,
        help="Your staff id (default: $TRAIL_REVIEWER); the audit event names you as actor. Through an API "
        "the reviewer is your principal (only trail up's local token names one).",
    )(fn)
    return data_dir_option(fn)


@alerts_group.command("ack")
@click.argument("alert_id")
@_review_options
@click.pass_context
def alerts_ack(ctx: click.Context, alert_id: str, data_dir: Path | None, reviewer: str | None, reason: str) -> None:
    """Acknowledge an alert: reviewed, follow-up under way. Recorded in the trail."""
    _review(ctx, data_dir, alert_id, "ack", reviewer, reason)


@alerts_group.command("dismiss")
@click.argument("alert_id")
@_review_options
@click.pass_context
def alerts_dismiss(ctx: click.Context, alert_id: str, data_dir: Path | None, reviewer: str | None, reason: str) -> None:
    """Dismiss an alert as not a finding (say why). Recorded in the trail."""
    _review(ctx, data_dir, alert_id, "dismiss", reviewer, reason)


@click.group("rules", cls=TrailGroup)
def rules_group() -> None:
    """The detection rules."""


@rules_group.command("show")
@data_dir_option
@click.option("--file", "path", type=click.Path(path_type=Path, dir_okay=False), help="A rules file to check instead.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def rules_show(ctx: click.Context, data_dir: Path | None, path: Path | None, fmt: str) -> None:
    """Print the effective rules: thresholds, severity and the articles each serves."""
    settings = _settings(ctx, data_dir)
    rs = load_rules(path) if path else rules_from_settings(settings)
    rows = rs.describe()
    if fmt == "json":
        click.echo(json.dumps({"globals": rs.globals()}, ensure_ascii=False))
        emit_rows(rows, "json")
        return
    flat = [
        {**r, "params": ", ".join(f"{k}={v}" for k, v in r["params"].items()), "articles": "; ".join(r["articles"])}
        for r in rows
    ]
    emit_rows(flat, fmt, ["rule", "enabled", "severity", "params", "articles"], title=json.dumps(rs.globals()))


@click.group(cls=TrailGroup)
def detect_cli() -> None:
    """trail's detection commands (also available as `trail alerts` and `trail rules`)."""


detect_cli.add_command(alerts_group)
detect_cli.add_command(rules_group)

if __name__ == "__main__":
    detect_cli.main(prog_name="trail")
