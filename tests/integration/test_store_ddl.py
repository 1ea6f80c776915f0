"""`trail store ddl`: the schema for one server and for a ClickHouse cluster. No cluster runs
here; every statement of the cluster form is parsed by ClickHouse's own parser (chDB's
``formatQuery``), and its shape (Replicated engines with the shard and replica macros,
Distributed tables with the sharding keys, views over each shard's local events) is checked."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from trail.cli.main import cli
from trail.errors import ConfigError
from trail.storage.schema import SHARDED, cluster_ddl, load_migrations, rewrite, single_server_ddl, statements
from trail.storage.store import Store

pytestmark = [pytest.mark.clickhouse]


def _sql(stmts: list[str]) -> list[str]:
    return [s for s in stmts if not s.startswith("--")]


def test_every_cluster_statement_parses(store: Store) -> None:
    stmts = _sql(cluster_ddl("trail", "main"))
    for stmt in stmts:
        formatted = store.query("SELECT formatQuery({q:String}) AS f", {"q": stmt})[0]["f"]
        assert formatted, stmt
    # a broken statement does not parse: the check above can fail
    with pytest.raises(Exception, match=r"Syntax error|SYNTAX_ERROR"):
        store.query("SELECT formatQuery({q:String}) AS f", {"q": stmts[2].replace("ORDER BY", "ORDER")})


def test_cluster_tables_are_replicated_sharded_and_on_cluster() -> None:
    stmts = _sql(cluster_ddl("trail", "main"))
    for stmt in stmts:
        if not stmt.startswith("INSERT"):
            assert " ON CLUSTER main " in stmt or stmt.endswith(" ON CLUSTER main"), stmt
    text = "\n".join(stmts)
    for table, key in SHARDED.items():
        assert re.search(
            rf"CREATE TABLE IF NOT EXISTS trail\.{table}_local ON CLUSTER main .*ENGINE = Replicated\w*MergeTree\("
            rf"'/clickhouse/tables/\{{shard\}}/trail/{table}_local', '\{{replica\}}'",
            text,
            re.S,
        ), table
        assert f"ENGINE = Distributed(main, trail, {table}_local, {key})" in text
    # alerts keep their version column in the replicated engine
    assert "'{replica}', version)" in text
    # small tables are whole on every node
    assert "ReplicatedMergeTree('/clickhouse/tables/all/trail/checkpoints', '{replica}')" in text
    # views fire on each shard's local inserts and route through the Distributed indexes
    views = [s for s in stmts if "MATERIALIZED VIEW" in s]
    assert len(views) == 7 and all("FROM trail.events_local" in v and "TO trail." in v for v in views)
    # a table dropped by a later migration goes from every node, its Distributed table before its local one
    drops = [s for s in stmts if s.startswith("DROP TABLE")]
    assert drops[:2] == [
        "DROP TABLE IF EXISTS trail.subject_events ON CLUSTER main SYNC",
        "DROP TABLE IF EXISTS trail.subject_events_local ON CLUSTER main SYNC",
    ]
    assert "DROP VIEW IF EXISTS trail.subject_index_mv ON CLUSTER main SYNC" in stmts
    assert "DROP TABLE IF EXISTS trail.actor_index_local ON CLUSTER main SYNC" in stmts
    assert "TO trail.pages_by_actor AS" in text
    assert "DROP TABLE IF EXISTS trail.events_by_actor_local ON CLUSTER main SYNC" in stmts
    # an added column reaches the local and the Distributed table
    assert sum("detector_checkpoints" in s and s.startswith("ALTER") for s in stmts) == 1
    assert any(
        s.startswith("ALTER TABLE trail.events_local")
        for s in _sql(rewrite_all("ALTER TABLE {db}.events ADD COLUMN x String"))
    )


def test_storage_settings_change_only_the_local_tables() -> None:
    out = rewrite_all("ALTER TABLE {db}.events MODIFY SETTING max_compress_block_size = 65536")
    assert out == ["ALTER TABLE trail.events_local ON CLUSTER main MODIFY SETTING max_compress_block_size = 65536"]
    out = rewrite_all("ALTER TABLE {db}.events MODIFY COLUMN hash CODEC(ZSTD(1))")
    assert out == ["ALTER TABLE trail.events_local ON CLUSTER main MODIFY COLUMN hash CODEC(ZSTD(1))"]


def rewrite_all(stmt: str) -> list[str]:
    return [s.replace("{db}", "trail") for s in rewrite(stmt, "main", "trail")]


def test_single_server_ddl_is_the_migrations() -> None:
    stmts = _sql(single_server_ddl("audit"))
    assert len(stmts) == sum(len(statements(m.sql)) for m in load_migrations())
    assert all("{db}" not in s for s in stmts) and any(
        s.startswith("CREATE TABLE IF NOT EXISTS audit.events") for s in stmts
    )
    assert not any("ON CLUSTER" in s for s in stmts)


def test_names_that_are_not_identifiers_are_refused() -> None:
    with pytest.raises(ConfigError, match="cluster name"):
        cluster_ddl("trail", "main; DROP TABLE x")


def test_trail_store_ddl_prints_both_forms() -> None:
    runner = CliRunner()
    one = runner.invoke(cli, ["store", "ddl", "--database", "trail"])
    assert one.exit_code == 0 and "ENGINE = ReplacingMergeTree" in one.output and "ON CLUSTER" not in one.output
    many = runner.invoke(cli, ["store", "ddl", "--cluster", "main"])
    assert many.exit_code == 0 and "Distributed(main, trail, events_local" in many.output
    bad = runner.invoke(cli, ["store", "ddl", "--cluster", "x y"])
    assert bad.exit_code == 2 and "cluster name" in bad.output and "Traceback" not in bad.output
