"""Read-only SQL over the trail's tables, for analysts (``POST /v1/sql``, ``trail sql``).

Checked with ClickHouse's own parser, never with patterns over the text: the statement is
parsed (``EXPLAIN AST``) and refused unless

- it is one ``SELECT`` (``WITH`` and ``UNION`` allowed): no INSERT, ALTER, DROP, CREATE, SET,
  SYSTEM, KILL, OPTIMIZE or any other statement, and no second statement;
- it carries no ``SETTINGS``, ``FORMAT`` or ``INTO OUTFILE`` clause;
- every table it names is one of :data:`TABLES` in trail's database (unqualified names are
  trail's tables or the query's own ``WITH`` names; ``system.*``, ``INFORMATION_SCHEMA``,
  other databases and trail's internal tables are refused);
- it uses no table function (``file``, ``url``, ``remote``, ``s3``, ``numbers``, ... all of
  them) and no function that reads outside the query (``dictGet*``, ``joinGet``, ``file``,
  ``url``, ...).

The text is first handed to ClickHouse's parser as a value (``formatQuerySingleLine``), never
as SQL: chDB executes every statement of a multi-statement string, even after ``EXPLAIN``, so
nothing typed reaches the engine as SQL before it is known to be one statement (a ``;`` is
refused, also inside literals). What runs is that canonical form (comments gone), wrapped as
``SELECT * FROM (...) LIMIT n`` and executed on a connection of its own with ``readonly = 1``,
``max_execution_time``, ``max_result_rows`` and
``result_overflow_mode = 'break'``, so the database itself refuses any write that got past
the parser. The query text is kept in the access log (analysts query pseudonymised data; a
personal value typed into a query is then visible to the auditor, which is the point).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from trail.errors import StoreError, UsageError, ValidationError

#: The tables analysts may read.
TABLES: Final = frozenset(
    {
        "events",
        "pages_by_subject",
        "pages_by_actor",
        "alerts",
        "checkpoints",
        "checkpoint_ranges",
        "retention_records",
    }
)
#: Function names (lower case) that read outside the query or the server's own state.
_DENIED_PREFIXES: Final = (
    "dictget", "dicthas", "dictisin", "joinget", "file", "url", "s3", "hdfs", "remote", "cluster", "mysql",
    "postgresql", "mongodb", "redis", "jdbc", "odbc", "azure", "gcs", "oss", "cos", "hudi", "iceberg", "deltalake",
    "executable", "input", "getmacro", "getsetting", "filesystem", "sqlite", "arrowflight", "ytsaurus",
)  # fmt: skip
MAX_QUERY_CHARS: Final = 20_000


@dataclass
class SqlResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    query: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "rows_returned": len(self.rows),
            "truncated": self.truncated,
        }


def _refuse(reason: str) -> ValidationError:
    return ValidationError("query", reason)


def _node(line: str) -> tuple[int, str, str]:
    """(depth, node type, rest) of one EXPLAIN AST line."""
    depth = len(line) - len(line.lstrip(" "))
    parts = line.strip().split(" ", 1)
    return depth, parts[0], parts[1] if len(parts) > 1 else ""


def check_ast(lines: list[str], database: str, internal_tables: frozenset[str]) -> None:
    """Refuse what the parsed statement must not do (see the module docstring)."""
    if not lines:
        raise _refuse("empty statement")
    _, root, _ = _node(lines[0])
    if root != "SelectWithUnionQuery":
        raise _refuse("only SELECT (with WITH and UNION) is allowed: no writes, DDL, SET or other statements")
    for i, line in enumerate(lines):
        depth, kind, rest = _node(line)
        if depth == 1 and kind not in ("ExpressionList",) and not (kind == "Identifier" and rest == "Native"):
            raise _refuse("FORMAT, INTO OUTFILE and similar clauses are not allowed")
        if kind in ("Set", "SetQuery"):
            raise _refuse("SETTINGS are not allowed; the server sets the limits")
        if kind == "TableIdentifier":
            name = rest.split(" (", 1)[0].strip().strip('`"')
            db, _, table = name.rpartition(".")
            db = db.strip('`"')
            if db:
                if db != database or table not in TABLES:
                    raise _refuse(f"table {name}: only trail's tables ({', '.join(sorted(TABLES))}) may be read")
            elif table in internal_tables or table.lower() in ("system", "information_schema"):
                raise _refuse(f"table {table}: only trail's tables ({', '.join(sorted(TABLES))}) may be read")
        if kind == "Function":
            fname = rest.split(" ", 1)[0].strip().lower()
            parent = _node(lines[i - 1])[1] if i else ""
            if parent == "TableExpression":
                raise _refuse(f"table function {fname}(): not allowed; read trail's tables")
            if fname.startswith(_DENIED_PREFIXES):
                raise _refuse(f"function {fname}(): not allowed (it reads outside the trail's tables)")


class SqlRunner:
    """Runs analysts' SQL on a store connection of its own (per-query limits never leak)."""

    def __init__(self, dsn: str, database: str, *, max_rows: int, timeout_s: float) -> None:
        import clickhouse_connect

        self.database = database
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        try:
            self._client = clickhouse_connect.get_client(dsn=dsn)
            self._client.database = database  # unqualified names are trail's tables
        except Exception as exc:  # noqa: BLE001  # any driver failure becomes one clear error
            raise StoreError(f"cannot open the store for SQL: {type(exc).__name__}") from None
        import threading

        self._lock = threading.Lock()
        self._internal: frozenset[str] | None = None

    def _query(self, sql: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self._client.query(sql, parameters=params, settings=settings)

    def internal_tables(self) -> frozenset[str]:
        """trail's tables analysts may not read (migrations, detector state, the index's view)."""
        if self._internal is None:
            r = self._query("SELECT name FROM system.tables WHERE database = {db:String}", {"db": self.database})
            self._internal = frozenset(str(row[0]) for row in r.result_rows) - TABLES
        return self._internal

    def check(self, query: str) -> str:
        """The canonical text of an allowed statement; ValidationError naming why otherwise."""
        if not isinstance(query, str) or not query.strip():
            raise _refuse("give one SELECT statement")
        if len(query) > MAX_QUERY_CHARS:
            raise _refuse(f"at most {MAX_QUERY_CHARS} characters")
        text = query.strip()
        # 1. ClickHouse's parser, on the text as a value (never executed): one statement, comments gone.
        #    (chDB runs every statement of a multi-statement string, EXPLAIN or not: so nothing the user
        #    typed is sent as SQL before this.)
        try:
            canon = str(self._query("SELECT formatQuerySingleLine({q:String})", {"q": text}).result_rows[0][0])
        except Exception as exc:  # noqa: BLE001  # a parse error is the user's to fix
            raise _refuse(f"not one statement ClickHouse can parse ({_first(exc)})") from None
        if ";" in canon:
            raise _refuse("one statement, without ';' (also inside literals)")
        # 2. What the one statement does, from its syntax tree.
        try:
            ast = self._query("EXPLAIN AST " + canon)
        except Exception as exc:  # noqa: BLE001
            raise _refuse(f"not a statement ClickHouse can explain ({_first(exc)})") from None
        check_ast([str(r[0]) for r in ast.result_rows], self.database, self.internal_tables())
        return canon

    def run(self, query: str) -> SqlResult:
        canon = self.check(query)
        wrapped = f"SELECT * FROM ({canon}) LIMIT {self.max_rows + 1}"
        settings = {
            "readonly": 1,
            "max_execution_time": self.timeout_s,
            "max_result_rows": self.max_rows + 1,
            "result_overflow_mode": "break",
        }
        try:
            with self._lock:
                r = self._client.query(wrapped, settings=settings)
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"query: refused or failed in the store ({_first(exc)})") from None
        rows = [[_plain(v) for v in row] for row in r.result_rows]
        truncated = len(rows) > self.max_rows
        return SqlResult(list(r.column_names), rows[: self.max_rows], truncated, canon)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection is fine
            self._client.close()


def query_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, int | float | str | bool) or v is None:
        return v
    return str(v)


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    # the driver's messages start with the code; keep what a user can act on
    return line.replace("DB::Exception: ", "")[:300]
