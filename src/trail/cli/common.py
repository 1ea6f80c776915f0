"""Helpers shared by the command groups: options, output formats, error handling."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from trail.config import Settings, load_settings
from trail.errors import (
    ConfigError,
    Forbidden,
    NotFound,
    Refused,
    TrailError,
    Unauthorized,
    UsageError,
    ValidationError,
)

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = click.Choice(["table", "json", "csv"])


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"trail: error: {message}", err=True)
    sys.exit(code)


def data_dir_option(fn: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Data directory (default: $TRAIL_DATA_DIR, else ./.trail).",
        expose_value=True,
    )(fn)


def settings_for(ctx: click.Context, data_dir: Path | None) -> Settings:
    """The settings of this invocation; a command's own ``--data-dir`` wins over the group's."""
    if data_dir is not None or not isinstance(ctx.obj, Settings):
        try:
            ctx.obj = load_settings(data_dir=data_dir)
        except ConfigError as exc:
            _fail(str(exc), 2)
    settings: Settings = ctx.obj
    return settings


class TrailGroup(click.Group):
    """Turns trail's own errors into one line on stderr and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a missing option, a bad choice: one line, like our own errors
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            _fail(exc.format_message() + hint, 2)
        except (ValidationError, ConfigError, UsageError, Refused, NotFound, Unauthorized, Forbidden) as exc:
            _fail(str(exc), 2)
        except TrailError as exc:
            _fail(str(exc), 3)
        except KeyboardInterrupt:
            _fail("interrupted", 130)


# -------------------------------------------------------------------- output helpers
def emit_rows(rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None, title: str = "") -> None:
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    cols = columns or (list(rows[0]) if rows else [])
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(cols)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in cols])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, show_lines=False)
    for c in cols:
        table.add_column(c)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in cols])
    Console(soft_wrap=False, width=max(160, Console().width)).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# -------------------------------------------------------------------- the API, when one runs
LOCAL_LOOKUP_PURPOSE = "local owner lookup (trail query subject on the data directory's machine; no purpose given)"


def api_token(settings: Settings) -> str | None:
    """``TRAIL_TOKEN`` (or ``TRAIL_TOKEN_FILE``), else the local principal's token file of ``trail up``."""
    if settings.token:
        return settings.token
    try:
        return settings.local_token_path.read_text().strip() or None
    except OSError:
        return None


def api_client(settings: Settings) -> Any:
    """The API to go through: ``TRAIL_API_URL``, else the ``trail up`` running on the data
    directory; None when neither (direct mode: the command opens the data directory itself)."""
    from trail.api.client import ApiClient
    from trail.config import running_server

    url = settings.api_url
    if not url:
        info = running_server(settings)
        url = str(info["api"]) if info else None
    if not url:
        return None
    return ApiClient(url, api_token(settings))


def uses_local_token(settings: Settings) -> bool:
    return not settings.token and not settings.api_url
