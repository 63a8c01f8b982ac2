"""The data model's checks and the polars input on a PostgreSQL warehouse: a whole-graph DuckDB
warehouse copied into PostgreSQL gives every check the same result on both (passed, offending
rows, samples, detail), and the same breaks on both fail the same checks with the same counts,
through the functions and through Dagster. The database sorts text by English rules (ICU), as a
team's server may: the samples must still come in DuckDB's byte order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from polars.testing import assert_frame_equal

from oe_assets.config.secret import Secret
from oe_assets.definitions import build_definitions
from oe_assets.examples.polars_asset import activity_steps
from oe_assets.model.data_model import build_data_model
from oe_assets.model.declaration import MODEL
from oe_assets.model.integrity import (
    Checked,
    IntegrityResult,
    check_primary_key,
    check_relation,
    undeclared_tables,
)
from oe_assets.orchestration.partitions import daily_partitions
from oe_assets.orchestration.polars_input import POLARS_INPUT_MANAGER_KEY, WarehousePolarsInputManager
from oe_assets.orchestration.resources import WarehouseResource
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse import COLUMNS_TABLE, TABLES_TABLE
from oe_assets.warehouse.postgres.catalog import physical_table_name
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.copy import copy_warehouse
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets.warehouse.sql import quote_ident, quote_literal
from oe_assets_tests.integration.test_checks import _evaluate_checks as evaluate_checks
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.twin import connect

MODEL_OF_DATA = build_data_model(MODEL)
LINES = "execution_context$context&celonis_postaction_feedback$quotes$lines"
"""A grandchild table whose name is longer than 63 bytes: PostgreSQL holds it under another."""


@dataclass(frozen=True)
class Twin:
    """The whole graph's DuckDB warehouse and its copy in a PostgreSQL database."""

    path: Path
    server: PostgresServer
    database: str

    @contextmanager
    def connections(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, PgConnection]]:
        """Short-lived connections: a Dagster run opens the DuckDB file itself in between."""
        with duckdb.connect(str(self.path)) as duck, connect(self.server, self.database) as pg:
            yield duck, pg

    def both(self, table: str, statement: str) -> None:
        """``statement`` on both warehouses, ``{t}`` standing for ``table``'s name in each."""
        with self.connections() as (duck, pg):
            duck.execute(statement.format(t=quote_ident(table)))
            pg.execute(statement.format(t=quote_ident(physical_table_name(pg, table))))

    def first(self, sql: str) -> Any:
        """The first value DuckDB's ``sql`` gives (what to break is chosen from DuckDB's data)."""
        with duckdb.connect(str(self.path), read_only=True) as duck:
            row = duck.execute(sql).fetchone()
        assert row is not None, sql
        return row[0]

    def warehouse(self) -> WarehouseResource:
        url = f"postgresql://{self.server.user}@{self.server.host}:{self.server.port}/{self.database}"
        return WarehouseResource(database=url, postgres_password=self.server.password)


def english_sorting_database(server: PostgresServer) -> str:
    """A new database whose text sorts by English rules (``a`` before ``Z``), unlike bytes."""
    name = f"checks_{uuid.uuid4().hex[:12]}"
    with server.connect() as cursor:
        cursor.execute(
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0 LOCALE_PROVIDER icu "
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    assert server.query(name, "SELECT 'a' < 'Z'") == [(True,)]
    return name


@pytest.fixture
def twin(
    simulator: SimulatorServer,
    resources: dict[str, object],
    warehouse_path: Path,
    instance: dg.DagsterInstance,
    postgres_server: PostgresServer,
) -> Twin:
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    assert run_whole_graph(build_definitions(resources), days[0], days[-1], instance=instance).success
    database = english_sorting_database(postgres_server)
    target = PostgresUrl(
        postgres_server.host,
        postgres_server.port,
        postgres_server.user,
        database,
        Secret(postgres_server.password),
    )
    with duckdb.connect(str(warehouse_path), read_only=True) as duck:
        copy_warehouse(duck, target)
    return Twin(warehouse_path, postgres_server, database)


def every_check(conn: Checked) -> dict[str, IntegrityResult]:
    """Every check of the data model on ``conn``, by its check's name."""
    results = {f"pk_{t.name}": check_primary_key(conn, t.name, t.primary_key) for t in MODEL_OF_DATA.tables}
    results |= {f"fk_{r.name}": check_relation(conn, r) for r in MODEL_OF_DATA.relations}
    declared = {t.name for t in MODEL_OF_DATA.declaration.declared_tables}
    return results | {"schema_drift": undeclared_tables(conn, declared)}


def results_on_both(twin: Twin) -> tuple[dict[str, Any], dict[str, Any]]:
    with twin.connections() as (duck, pg):
        on_duck, on_pg = every_check(duck), every_check(pg)
    return {k: asdict(v) for k, v in on_duck.items()}, {k: asdict(v) for k, v in on_pg.items()}


@dataclass(frozen=True)
class Breaks:
    """What the same breaks did, as the data said before them."""

    duplicated_context: str
    deleted_template: str
    contexts_of_template: int
    orphaned_line_context: str
    accounts: int


def break_both(twin: Twin) -> Breaks:
    """A duplicate key (also in the long-named table and in the timestamp-keyed activity log),
    orphan rows, a 1:1 partner deleted, a key column dropped and undeclared tables registered."""
    template = twin.first(
        'SELECT "context$executionTemplateID" FROM execution_context GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1'
    )
    breaks = Breaks(
        duplicated_context=twin.first(
            'SELECT min("context$processid") FROM execution_context '
            f'WHERE "context$executionTemplateID" <> {quote_literal(template)}'
        ),
        deleted_template=template,
        contexts_of_template=twin.first(
            f'SELECT count(*) FROM execution_context WHERE "context$executionTemplateID" = {quote_literal(template)}'
        ),
        orphaned_line_context=twin.first(
            f'SELECT "context$processid" FROM {quote_ident(LINES)} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1'
        ),
        accounts=twin.first("SELECT count(*) FROM accounts"),
    )
    _duplicate_and_orphan(twin, breaks)
    twin.both("accounts", "ALTER TABLE {t} DROP COLUMN id")
    for name in ("execution_context$Zebra", "execution_context$apple"):
        twin.both("_oe_tables", f"INSERT INTO {{t}} (table_name, family) VALUES ({quote_literal(name)}, 'x')")
    return breaks


def _duplicate_and_orphan(twin: Twin, breaks: Breaks) -> None:
    context = quote_literal(breaks.duplicated_context)
    twin.both(
        "execution_context", f'INSERT INTO {{t}} SELECT * FROM {{t}} WHERE "context$processid" = {context}'
    )
    twin.both("execution_templates", f"DELETE FROM {{t}} WHERE id = {quote_literal(breaks.deleted_template)}")
    victim = quote_literal(twin.first("SELECT min(instance_id) FROM event_log"))
    twin.both("event_log", f"DELETE FROM {{t}} WHERE instance_id = {victim}")
    case = quote_literal(twin.first("SELECT min(case_id) FROM activity_log"))
    twin.both("activity_log", f"INSERT INTO {{t}} SELECT * FROM {{t}} WHERE case_id = {case}")
    line = twin.first(
        f"SELECT max(\"context$processid\" || '/' || _oe_row_id) FROM {quote_ident(LINES)} "
        f'WHERE "context$processid" <> {quote_literal(breaks.orphaned_line_context)}'
    )
    twin.both(
        LINES,
        "INSERT INTO {t} SELECT * FROM {t} WHERE \"context$processid\" || '/' || _oe_row_id = "
        + quote_literal(line),
    )
    orphaned = quote_literal(breaks.orphaned_line_context)
    for parent in ("aa-missing", "Zz-missing"):  # bytes put Zz first, English aa
        twin.both(
            LINES,
            f"UPDATE {{t}} SET _oe_parent_row_id = {quote_literal(parent)} "
            f'WHERE "context$processid" = {orphaned} AND _oe_row_id = ('
            f'SELECT max(_oe_row_id) FROM {{t}} WHERE "context$processid" = {orphaned} '
            "AND _oe_parent_row_id NOT LIKE '%-missing')",
        )


def test_every_check_gives_the_same_result_on_both_and_the_same_breaks_fail_the_same_way(twin: Twin) -> None:
    on_duck, on_pg = results_on_both(twin)
    assert len(on_duck) == len(MODEL_OF_DATA.tables) + len(MODEL_OF_DATA.relations) + 1
    assert [name for name, result in on_duck.items() if not result["passed"]] == []
    assert on_pg == on_duck

    breaks = break_both(twin)
    on_duck, on_pg = results_on_both(twin)
    assert {k: v for k, v in on_pg.items() if v != on_duck[k]} == {}

    failed = {name: (r["offending_rows"], r["sample"]) for name, r in on_duck.items() if not r["passed"]}
    assert failed["pk_execution_context"] == (2, [breaks.duplicated_context])
    assert failed["fk_context_to_template"] == (breaks.contexts_of_template, [breaks.deleted_template])
    assert failed["fk_event_log_instance_to_context"][0] > 0
    assert failed["pk_activity_log"][0] >= 2
    assert failed[f"pk_{LINES}"][0] == 2
    orphaned = breaks.orphaned_line_context
    assert failed[f"fk_{LINES}__to_parent_row"] == (
        2,
        [f"{orphaned} | Zz-missing", f"{orphaned} | aa-missing"],
    )
    assert failed["pk_accounts"] == (breaks.accounts, ["<null key>"])
    assert on_duck["pk_accounts"]["detail"].endswith("accounts has no column id (read as NULL)")
    assert failed["fk_template_tenant_to_account"][0] > 0
    assert failed["schema_drift"] == (2, ["execution_context$Zebra", "execution_context$apple"])


def dagster_evaluations(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, Any]:
    """Every check as Dagster reports it: passed, severity and metadata values, by check name."""
    return {
        name: (e.passed, e.severity, {k: v.value for k, v in e.metadata.items()})
        for name, e in evaluate_checks(defs, instance).items()
    }


def test_dagster_runs_the_checks_on_postgresql_and_reports_what_it_reports_on_duckdb(
    twin: Twin, resources: dict[str, object], instance: dg.DagsterInstance
) -> None:
    break_both(twin)
    on_duck = dagster_evaluations(build_definitions(resources), instance)
    on_pg = dagster_evaluations(build_definitions({**resources, "warehouse": twin.warehouse()}), instance)
    assert len(on_duck) == len(MODEL_OF_DATA.tables) + len(MODEL_OF_DATA.relations) + 1
    assert {k: v for k, v in on_pg.items() if v != on_duck[k]} == {}
    passed, severity, metadata = on_pg["pk_execution_context"]
    assert (passed, severity, metadata["offending_rows"]) == (False, dg.AssetCheckSeverity.ERROR, 2)
    assert not on_pg["schema_drift"][0]
    assert on_pg["schema_drift"][1] == dg.AssetCheckSeverity.WARN


def frame_context(table: str, day: str | None) -> dg.InputContext:
    """What Dagster gives the input manager for ``table`` (of ``day``, when given)."""
    return dg.build_input_context(
        asset_key=dg.AssetKey(table),
        definition_metadata={"dagster/table_name": table},
        asset_partitions_def=daily_partitions() if day else None,
        partition_key=day,
    )


def test_the_polars_input_reads_every_table_from_postgresql_as_from_duckdb(twin: Twin) -> None:
    """Every table whole, and a day of each partitioned one, as the same frame (columns under the
    model's names, types, rows); the catalog tables are left out: PostgreSQL's have physical_name."""
    duck_manager = WarehousePolarsInputManager(warehouse=WarehouseResource(database=str(twin.path)))
    pg_manager = WarehousePolarsInputManager(warehouse=twin.warehouse())
    day = str(twin.first("SELECT max(_oe_partition) FROM activity_log"))
    with duckdb.connect(str(twin.path), read_only=True) as duck:
        tables = duck.execute(
            "SELECT table_name, bool_or(column_name = '_oe_partition') FROM information_schema.columns "
            f"WHERE table_name NOT IN ('{TABLES_TABLE}', '{COLUMNS_TABLE}') GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert (LINES, True) in tables
    assert ("process_kpis", True) in tables  # a list column: JSON text in PostgreSQL
    for table, partitioned in tables:
        for partition in (None, day) if partitioned else (None,):
            expected = duck_manager.load_input(frame_context(table, partition))
            got = pg_manager.load_input(frame_context(table, partition))
            assert_frame_equal(got.sort(got.columns), expected.sort(expected.columns), check_exact=True)
    with pytest.raises(
        dg.Failure, match="no table 'nothing_here' yet: build it with `oe-assets materialize`"
    ):
        pg_manager.load_input(frame_context("nothing_here", None))


def test_the_example_asset_reads_its_partition_from_postgresql_as_from_duckdb(
    twin: Twin, instance: dg.DagsterInstance
) -> None:
    day = str(twin.first("SELECT _oe_partition FROM activity_log GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"))
    metadata: list[dict[str, Any]] = []
    for warehouse in (WarehouseResource(database=str(twin.path)), twin.warehouse()):
        result = dg.materialize(
            [dg.AssetSpec("activity_log", partitions_def=daily_partitions()), activity_steps],
            selection=[activity_steps],
            partition_key=day,
            resources={POLARS_INPUT_MANAGER_KEY: WarehousePolarsInputManager(warehouse=warehouse)},
            instance=instance,
        )
        assert result.success
        materialization = result.asset_materializations_for_node("activity_steps")[0]
        metadata.append({k: v.value for k, v in materialization.metadata.items()})
    assert metadata[1] == metadata[0]
    assert 0 < metadata[0]["rows_read"] < twin.first("SELECT count(*) FROM activity_log")


def test_a_one_to_one_relation_counts_parents_without_a_child_only_on_the_runs_own_days(twin: Twin) -> None:
    """Another run between its two steps: its day's contexts committed, their event-log rows not
    yet. The check of a run for another day passes; the same check for that day, or for the whole
    table, finds the contexts without their event-log rows (and a child without its parent counts
    on every day)."""
    relation = next(r for r in MODEL_OF_DATA.relations if r.one_to_one)
    assert (relation.child_table, relation.parent_table) == ("event_log", "execution_context")
    in_flight = twin.first(
        "SELECT _oe_partition FROM execution_context GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )
    other = twin.first(
        f"SELECT _oe_partition FROM execution_context WHERE _oe_partition <> DATE '{in_flight}' LIMIT 1"
    )
    contexts = twin.first(f"SELECT count(*) FROM execution_context WHERE _oe_partition = DATE '{in_flight}'")
    with twin.connections() as (_, pg):
        pg.execute(
            f"DELETE FROM event_log WHERE instance_id IN (SELECT {quote_ident(relation.parent_columns[0])} "
            f"FROM execution_context WHERE _oe_partition = %s)",
            [in_flight],
        )
        assert check_relation(pg, relation, [other]).passed
        on_that_day = check_relation(pg, relation, [in_flight])
        whole_table = check_relation(pg, relation)
        pg.execute("INSERT INTO event_log (instance_id) VALUES ('no such context')")
        orphan_elsewhere = check_relation(pg, relation, [other])
    assert (on_that_day.passed, on_that_day.offending_rows) == (False, contexts)
    assert whole_table.offending_rows == contexts
    assert (orphan_elsewhere.passed, orphan_elsewhere.offending_rows) == (False, 1)
