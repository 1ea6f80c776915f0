"""The store's schema for one ClickHouse server or for a ClickHouse cluster.

On one server (and on chDB) the numbered migrations in ``trail/storage/migrations`` are the
schema. On a cluster the same migrations are rewritten, statement by statement:

* the big tables are sharded: each becomes ``<table>_local`` (``Replicated…MergeTree`` with the
  ``{shard}`` and ``{replica}`` macros) and a ``Distributed`` table of the old name over it, so
  every query of trail reads and writes the old name unchanged. Sharding keys keep lookups on one
  shard where it matters: ``events`` by producer (one producer's hash chain stays whole on one
  shard, so gaps and chains are checked shard-locally), ``pages_by_subject`` by subject
  reference (one person's history and report read one shard), ``pages_by_actor`` by actor (one
  actor's events read one shard), as the copies they replaced, ``alerts`` by alert id (every version of an alert on one
  shard, so ``FINAL`` is exact);
* the small tables (checkpoints, their ranges, retention records, detector checkpoints, the
  migrations ledger) are replicated whole to every node (one ZooKeeper path for all shards);
* materialised views read each shard's local ``events_local`` and write into the Distributed
  index tables, which route every row to the shard of its subject or actor;
* every DDL statement runs ``ON CLUSTER``; a backfill ``INSERT … SELECT`` runs once, through the
  Distributed tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

from trail.errors import ConfigError


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The numbered, append-only migrations shipped in ``trail/storage/migrations``."""
    out = []
    for entry in resources.files("trail.storage").joinpath("migrations").iterdir():
        m = re.match(r"^(\d{4})_(.+)\.sql$", entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out, key=lambda mig: mig.version)


def statements(sql: str) -> list[str]:
    """The statements of one migration file (comment lines dropped)."""
    text = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


#: Sharded tables and their sharding expressions.
SHARDED: Final[dict[str, str]] = {
    "events": "cityHash64(producer_id)",
    "subject_index": "cityHash64(subject_ref)",
    "actor_index": "cityHash64(actor_id)",
    "subject_events": "cityHash64(subject_ref)",
    "events_by_subject": "cityHash64(subject_ref)",
    "events_by_actor": "cityHash64(actor_id)",
    "pages_by_subject": "cityHash64(subject_ref)",
    "pages_by_actor": "cityHash64(actor_id)",
    "alerts": "cityHash64(alert_id)",
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CREATE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS \{db\}\.(?P<table>\w+)\s*(?P<columns>\(.*\))\s*"
    r"ENGINE = (?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$",
    re.S,
)
_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS \{db\}\.(?P<view>\w+) TO (?P<rest>.*)$", re.S)
_DROP = re.compile(r"^DROP (?P<kind>TABLE|VIEW) IF EXISTS \{db\}\.(?P<name>\w+)$")
_ALTER = re.compile(r"^ALTER TABLE \{db\}\.(?P<table>\w+) (?P<rest>.*)$", re.S)


def single_server_ddl(database: str) -> list[str]:
    """The migrations as they run on one server (and on chDB)."""
    return [
        stmt.replace("{db}", database)
        for mig in load_migrations()
        for stmt in [f"-- {mig.version:04d} {mig.name}", *statements(mig.sql)]
    ]


def cluster_ddl(database: str, cluster: str) -> list[str]:
    """The migrations rewritten for the ClickHouse cluster ``cluster`` (see the module's text)."""
    for what, name in (("database", database), ("cluster", cluster)):
        if not _NAME.match(name):
            raise ConfigError(f"the {what} name {name!r} must be a plain identifier (letters, digits, _)")
    out = cluster_preamble(database, cluster)
    for mig in load_migrations():
        out.append(f"-- {mig.version:04d} {mig.name}")
        for stmt in statements(mig.sql):
            out.extend(s.replace("{db}", database) for s in rewrite(stmt, cluster, database))
    return out


def cluster_preamble(database: str, cluster: str) -> list[str]:
    """The database and the migrations ledger on every node of ``cluster``."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}",
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations ON CLUSTER {cluster} "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        f"ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/schema_migrations', '{{replica}}') "
        "ORDER BY version",
    ]


def rewrite(stmt: str, cluster: str, database: str) -> list[str]:
    """One migration statement (still with ``{db}``) as the statements a cluster runs."""
    on = f"ON CLUSTER {cluster}"
    if m := _CREATE.match(stmt):
        table, args = m["table"], (m["args"] or "").strip()
        engine = "Replicated" + m["engine"]
        if table in SHARDED:
            path = f"'/clickhouse/tables/{{shard}}/{database}/{table}_local', '{{replica}}'"
            local = (
                f"CREATE TABLE IF NOT EXISTS {{db}}.{table}_local {on} {m['columns']} "
                f"ENGINE = {engine}({path}{', ' + args if args else ''}){m['rest']}"
            )
            dist = (
                f"CREATE TABLE IF NOT EXISTS {{db}}.{table} {on} AS {{db}}.{table}_local "
                f"ENGINE = Distributed({cluster}, {database}, {table}_local, {SHARDED[table]})"
            )
            return [local, dist]
        path = f"'/clickhouse/tables/all/{database}/{table}', '{{replica}}'"
        return [
            f"CREATE TABLE IF NOT EXISTS {{db}}.{table} {on} {m['columns']} "
            f"ENGINE = {engine}({path}{', ' + args if args else ''}){m['rest']}"
        ]
    if m := _VIEW.match(stmt):
        rest = re.sub(r"FROM \{db\}\.events\b", "FROM {db}.events_local", m["rest"])
        return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{m['view']} {on} TO {rest}"]
    if m := _ALTER.match(stmt):
        table = m["table"]
        if table in SHARDED and (m["rest"].startswith("MODIFY SETTING") or " CODEC(" in m["rest"]):
            return [f"ALTER TABLE {{db}}.{table}_local {on} {m['rest']}"]  # storage settings, codecs: local tables only
        if table in SHARDED:
            return [
                f"ALTER TABLE {{db}}.{table}_local {on} {m['rest']}",
                f"ALTER TABLE {{db}}.{table} {on} {m['rest']}",
            ]
        return [f"ALTER TABLE {{db}}.{table} {on} {m['rest']}"]
    if m := _DROP.match(stmt):
        kind, name = m["kind"], m["name"]
        if kind == "TABLE" and name in SHARDED:  # the Distributed table first, then what it reads
            return [
                f"DROP TABLE IF EXISTS {{db}}.{name} {on} SYNC",
                f"DROP TABLE IF EXISTS {{db}}.{name}_local {on} SYNC",
            ]
        return [f"DROP {kind} IF EXISTS {{db}}.{name} {on} SYNC"]
    if stmt.startswith("INSERT INTO"):
        return [stmt]  # a backfill: once, through the Distributed tables
    raise ConfigError(f"no cluster form for this migration statement: {stmt[:80]}")
