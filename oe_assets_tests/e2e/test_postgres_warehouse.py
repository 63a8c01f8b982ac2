"""The whole graph on a PostgreSQL warehouse: the same rows as on DuckDB, the same checks passing.

One simulated API, two warehouses: a DuckDB file and a PostgreSQL database, each loaded by the
whole graph (catalog, then every day as one run). Every table DuckDB holds is compared with
PostgreSQL's, row by row, under the model's names (PostgreSQL holds names over 63 bytes under a
short form). Only the instants each run stamps itself (when a row was loaded, first seen, pushed)
are left out: they differ between two runs on any warehouse.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oe_assets.core.timestamps import format_oe_timestamp
from oe_assets.definitions import build_definitions
from oe_assets.orchestration.resources import WarehouseResource
from oe_assets.orchestration.runner import GraphRunReport, run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.postgres.copy import copy_warehouse
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.twin import connect, duckdb_table, postgres_table

RUN_STAMPS = frozenset(
    {
        "_oe_loaded_at",
        "loaded_at",
        "first_seen",
        "first_seen_at",
        "last_seen_at",
        "observed_at",
        "quarantined_at",
    }
)
"""Columns holding when a run did something: different for two runs of the same data."""
POSTGRES_ONLY = frozenset({"physical_name"})
"""The catalog's column of the names PostgreSQL gives (the model's name where it fits)."""


def postgres_resources(
    resources: dict[str, object], server: PostgresServer, tmp_path: Path
) -> dict[str, object]:
    database = server.create_database(f"graph_{uuid.uuid4().hex[:10]}")
    warehouse = WarehouseResource(
        database=f"postgresql://{server.user}@{server.host}:{server.port}/{database}",
        postgres_password=server.password,
        export_dir=str(tmp_path / "pg_exports"),
    )
    return {**resources, "warehouse": warehouse}


def _without_stamps(rows: list[tuple[tuple[str, object], ...]]) -> list[tuple[tuple[str, object], ...]]:
    left_out = RUN_STAMPS | POSTGRES_ONLY
    return sorted((tuple(cell for cell in row if cell[0] not in left_out) for row in rows), key=repr)


def _tables_and_differing(
    warehouse_path: Path, server: PostgresServer, database: str
) -> tuple[list[str], list[str]]:
    """DuckDB's tables, and those whose rows PostgreSQL holds otherwise (run stamps left out)."""
    with duckdb.connect(str(warehouse_path), read_only=True) as duck, connect(server, database) as pg:
        tables = [str(t) for (t,) in duck.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        differing = [
            t
            for t in tables
            if _without_stamps(duckdb_table(duck, t)) != _without_stamps(postgres_table(pg, t))
        ]
    return tables, differing


def _check_outcomes(report: GraphRunReport) -> list[tuple[str, str, bool, int | None]]:
    return sorted((c.asset, c.name, c.passed, c.offending_rows) for c in report.checks)


@pytest.mark.slow
def test_the_whole_graph_on_postgresql_holds_duckdbs_rows_and_passes_the_same_checks(
    simulator: SimulatorServer,
    resources: dict[str, object],
    warehouse_path: Path,
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    on_postgres = postgres_resources(resources, postgres_server, tmp_path)
    with dg.DagsterInstance.ephemeral() as instance:
        duck_report = run_whole_graph(build_definitions(resources), days[0], days[-1], instance=instance)
        pg_report = run_whole_graph(build_definitions(on_postgres), days[0], days[-1], instance=instance)
    assert duck_report.success, duck_report.failure_details
    assert pg_report.success, pg_report.failure_details
    assert pg_report.materialized == duck_report.materialized
    assert _check_outcomes(pg_report) == _check_outcomes(duck_report)
    assert all(passed for _, _, passed, _ in _check_outcomes(pg_report))

    warehouse = on_postgres["warehouse"]
    assert isinstance(warehouse, WarehouseResource)
    database = warehouse.postgres_target().database
    tables, differing = _tables_and_differing(warehouse_path, postgres_server, database)
    renamed = postgres_server.query(
        database, "SELECT count(*) FROM _oe_tables WHERE physical_name <> table_name"
    )
    assert differing == []
    assert len(tables) > 30
    assert renamed[0][0] > 0, "the simulator's deepest tables have names PostgreSQL cannot hold"


@pytest.mark.slow
def test_a_duckdb_warehouse_copied_into_postgresql_goes_on_there_as_on_duckdb(
    simulator: SimulatorServer,
    resources: dict[str, object],
    warehouse_path: Path,
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    """Moving over: `oe-assets warehouse copy --to URL`, then the graph runs on PostgreSQL. A refresh
    that changes contexts and brings a new key gives the same rows as the same refresh on DuckDB."""
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    on_postgres = postgres_resources(resources, postgres_server, tmp_path)
    warehouse = on_postgres["warehouse"]
    assert isinstance(warehouse, WarehouseResource)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_whole_graph(build_definitions(resources), days[0], days[-1], instance=instance).success
        with duckdb.connect(str(warehouse_path), read_only=True) as duck:
            copy_warehouse(duck, warehouse.postgres_target())
        changed = copy.deepcopy(simulator.world.contexts()[0])
        changed["context"]["moved.over"] = {"lines": [{"n": 1}, {"n": 2}]}
        changed["metadata"]["updatedAt"] = format_oe_timestamp(simulator.world.now)
        simulator.world.put_context(changed)
        duck_report = run_whole_graph(build_definitions(resources), days[0], days[-1], instance=instance)
        pg_report = run_whole_graph(build_definitions(on_postgres), days[0], days[-1], instance=instance)
    assert duck_report.success, duck_report.failure_details
    assert pg_report.success, pg_report.failure_details
    assert _check_outcomes(pg_report) == _check_outcomes(duck_report)
    tables, differing = _tables_and_differing(
        warehouse_path, postgres_server, warehouse.postgres_target().database
    )
    assert "execution_context$context&moved.over$lines" in tables
    assert differing == []
