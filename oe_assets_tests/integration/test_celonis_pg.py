"""Celonis delivery from a PostgreSQL warehouse against delivery from DuckDB: a whole graph run over
the simulator into DuckDB, copied into a fresh PostgreSQL database; each warehouse pushes into a
Celonis stand-in of its own, and the pools must hold the same tables, columns and rows. Also: the
push files of every table equal DuckDB's, a delivery a Celonis fault interrupted resumes without
pushing a table twice, two runs pushing the same tables wait for each other, a ledger copied from
DuckDB goes on, and the push assets materialize with a PostgreSQL ``WarehouseResource``."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oe_assets.celonis import CelonisApi, CelonisJobFailed, PushOutcome, PushTable, push_and_reload
from oe_assets.celonis.delivery import destination_id
from oe_assets.celonis.ledger import ROWS, TABLES, TablePlan, plan_table, submitted_this_hour
from oe_assets.celonis.ledger_pg import plan_table_pg
from oe_assets.celonis.service_pg import push_and_reload_pg, push_lock_scope
from oe_assets.celonis_simulator import CelonisSimulatorServer
from oe_assets.config.secret import Secret
from oe_assets.definitions import build_definitions
from oe_assets.defs.celonis.assets import POOL_ROWS_CHECK
from oe_assets.defs.celonis.definitions import CATCH_UP_JOB
from oe_assets.model.data_model import build_data_model
from oe_assets.model.declaration import MODEL
from oe_assets.model.integrity import table_exists
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.connection import open_warehouse
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.copy import CopyReport, copy_warehouse
from oe_assets.warehouse.postgres.locks import partition_locks
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets.warehouse.sql import quote_ident
from oe_assets_tests.support.celonis_support import (
    POOL_ID,
    PUSHED_TABLES,
    celonis_resource,
    celonis_settings,
    differences,
    stand_in,
)
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.reliability_support import run_job
from oe_assets_tests.support.twin import normal

MODEL_TABLES = build_data_model(MODEL)
KEYS = {t.name: t.primary_key for t in MODEL_TABLES.tables}
PUSH = [PushTable(name, KEYS[name]) for name in PUSHED_TABLES]
LONG_TEXT = "Ångström-" + "0123456789" * 14 + "-end"  # longer than 80 characters, more bytes
PERCENT_KEY = "discount%share"  # a `%` in a column name: psycopg reads it as a placeholder
LONG_KEY = "promised_delivery_window_" + "w" * 40  # its column's name is longer than 63 bytes


# ------------------------------------------------------------------------------- the warehouses
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, date]:
    """The whole graph over the simulator's days, into a DuckDB file (tests push copies of it), and
    its first day. One context has a long text, a column with `%` in its name and one whose name
    is longer than PostgreSQL's 63 bytes."""
    warehouse = tmp_path_factory.mktemp("celonis_pg") / "oe.duckdb"
    with (
        SimulatorServer(seed=7, days=3, contexts_per_day=25) as simulator,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        doc = simulator.world.contexts()[0]
        doc["context"]["long_note"] = LONG_TEXT
        doc["context"][PERCENT_KEY] = 0.25
        doc["context"][LONG_KEY] = "soon"
        simulator.world.put_context(doc)
        resources = {
            "oe_api": OeApiResource(
                api_url=simulator.url, client_id=simulator.client_id,
                client_secret=simulator.client_secret, page_size=50,
            ),
            "warehouse": WarehouseResource(database=str(warehouse)),
        }  # fmt: skip
        days = sorted({created_day(c) for c in simulator.world.contexts()})
        report = run_whole_graph(build_definitions(resources), days[0], days[-1], instance=instance)
        assert report.success, report.failure
    return warehouse, days[0]


@dataclass
class Twin:
    """A copy of the pipeline's DuckDB file and a PostgreSQL database the copy was copied into."""

    duckdb_path: Path
    database: str
    target: PostgresUrl
    copied: CopyReport
    server: PostgresServer

    def connect(self) -> PgConnection:
        return psycopg.connect(**self.target.connect_kwargs(), autocommit=True)  # type: ignore[arg-type]

    def open_duckdb(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return open_warehouse(self.duckdb_path)

    def resource(self) -> WarehouseResource:
        url = f"postgresql://{self.target.user}@{self.target.host}:{self.target.port}/{self.database}"
        return WarehouseResource(database=url, postgres_password=self.server.password)


def copied_into_postgres(path: Path, server: PostgresServer) -> Twin:
    """The DuckDB file ``path`` copied into a new database of ``server``."""
    database = server.create_database(f"celonis_{uuid.uuid4().hex[:12]}")
    target = PostgresUrl(server.host, server.port, server.user, database, Secret(server.password))
    with duckdb.connect(str(path)) as conn:
        copied = copy_warehouse(conn, target)
    return Twin(path, database, target, copied, server)


@pytest.fixture
def twin(pipeline: tuple[Path, date], tmp_path: Path, postgres_server: PostgresServer) -> Twin:
    """The pipeline's warehouse copied into a new file, and that file into a new database."""
    path = tmp_path / "oe.duckdb"
    shutil.copy(pipeline[0], path)
    return copied_into_postgres(path, postgres_server)


@pytest.fixture
def pools(tmp_path: Path) -> Iterator[tuple[CelonisSimulatorServer, CelonisSimulatorServer]]:
    """Two Celonis stand-ins: one for DuckDB's push, one for PostgreSQL's."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with stand_in(tmp_path / "a") as from_duckdb, stand_in(tmp_path / "b") as from_postgres:
        yield from_duckdb, from_postgres


def api_of(celonis: CelonisSimulatorServer) -> CelonisApi:
    return CelonisApi(celonis_resource(celonis).api_config())


def push_from_duckdb(
    twin: Twin, celonis: CelonisSimulatorServer, tables: list[PushTable] = PUSH
) -> PushOutcome:
    with api_of(celonis) as api:
        return push_and_reload(api, twin.open_duckdb, tables, **_options())


def push_from_postgres(
    twin: Twin, celonis: CelonisSimulatorServer, tables: list[PushTable] = PUSH
) -> PushOutcome:
    with api_of(celonis) as api, twin.connect() as pg:
        return push_and_reload_pg(api, pg, tables, **_options())


def _options() -> dict[str, Any]:
    return {"model": MODEL_TABLES, "model_name": "OE Process Contexts", "jobs_per_hour": 250}


# ------------------------------------------------------------------------------- comparisons
def pool_table(celonis: CelonisSimulatorServer, table: str) -> tuple[Any, ...]:
    """The pool's columns (name, type, length) and rows (sorted, in one form) of ``table``."""
    columns = sorted(celonis.pool_columns(table))
    names = [name for name, _, _ in columns]
    rows = sorted(
        (tuple(normal(row.get(name)) for name in names) for row in celonis.pool_rows(table)), key=repr
    )
    return columns, rows


def differing_pools(left: CelonisSimulatorServer, right: CelonisSimulatorServer) -> list[str]:
    """The tables whose columns or rows differ between two pools (or that only one holds)."""
    left_tables, right_tables = set(left.pool_counts()), set(right.pool_counts())
    found = sorted(left_tables ^ right_tables)
    found += [t for t in sorted(left_tables & right_tables) if pool_table(left, t) != pool_table(right, t)]
    return found


def ledger_rows_duckdb(twin: Twin) -> dict[str, list[tuple[str, int]]]:
    with twin.open_duckdb() as conn:
        rows = conn.execute(f"SELECT target, row_key, row_hash FROM {ROWS}").fetchall()
    return _by_target(rows)


def ledger_rows_postgres(twin: Twin) -> dict[str, list[tuple[str, int]]]:
    with twin.connect() as pg:
        rows = pg.execute(f"SELECT target, row_key, row_hash FROM {ROWS}").fetchall()
    return _by_target(rows)


def _by_target(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[str, int]]]:
    found: dict[str, list[tuple[str, int]]] = {}
    for target, key, row_hash in rows:
        found.setdefault(str(target), []).append((str(key), int(row_hash)))
    return {target: sorted(keys) for target, keys in found.items()}


def confirmed_postgres(twin: Twin) -> set[str]:
    with twin.connect() as pg:
        return {str(target) for (target,) in pg.execute(f"SELECT target FROM {TABLES}").fetchall()}


def parquet_rows(paths: list[Path]) -> list[tuple[Any, ...]]:
    rows = [tuple(r.values()) for path in paths for r in pq.read_table(path).to_pylist()]
    return sorted((tuple(normal(v) for v in row) for row in rows), key=repr)


def parquet_schema(paths: list[Path]) -> pa.Schema | None:
    return pq.read_schema(paths[0]) if paths else None


def plan_summary(plan: TablePlan) -> dict[str, Any]:
    """What a plan sends: its job, counts, and its files' schema and rows."""
    return {
        "job": plan.job_body(),
        "counts": (plan.upserts, plan.deletes, plan.warehouse_rows),
        "upsert_schema": parquet_schema(plan.upsert_files),
        "upserts": parquet_rows(plan.upsert_files),
        "delete_schema": parquet_schema(plan.delete_files),
        "deletes": parquet_rows(plan.delete_files),
    }


DEST = destination_id("https://team.example", POOL_ID, "")


# ------------------------------------------------------------------------------- the tests
def test_every_table_s_push_files_from_postgresql_equal_duckdb_s(twin: Twin, tmp_path: Path) -> None:
    assert any(t in twin.copied.physical_names for t in PUSHED_TABLES), "a pushed table has a short name"
    with twin.connect() as pg:
        renamed = pg.execute(
            "SELECT count(*) FROM _oe_columns WHERE table_name = 'execution_context' AND physical_name <> column_name"
        ).fetchall()
    assert renamed == [(1,)], "the long column has a short name in PostgreSQL"
    differing, planned = [], 0
    with twin.open_duckdb() as duck, twin.connect() as pg:
        for i, table in enumerate(PUSH):
            from_postgres = plan_table_pg(pg, DEST, table.name, table.keys, tmp_path / f"pg{i}")
            if not table_exists(duck, table.name):
                assert from_postgres is None, table.name
                continue
            from_duckdb = plan_table(duck, DEST, table.name, table.keys, tmp_path / f"duck{i}")
            assert from_postgres is not None, table.name
            planned += 1
            if plan_summary(from_postgres) != plan_summary(from_duckdb):
                differing.append(table.name)
    assert planned > len(PUSH) // 2
    assert not differing, differing


def test_the_pools_pushed_from_each_warehouse_hold_the_same_tables_columns_and_rows(
    twin: Twin, pools: tuple[CelonisSimulatorServer, CelonisSimulatorServer]
) -> None:
    from_duckdb, from_postgres = pools

    on_duckdb = push_from_duckdb(twin, from_duckdb)
    on_postgres = push_from_postgres(twin, from_postgres)

    assert sorted(on_postgres.delivery.pushed) == sorted(on_duckdb.delivery.pushed)
    assert on_postgres.pool_rows == on_duckdb.pool_rows
    assert len(from_postgres.pool_counts()) == len(on_duckdb.delivery.pushed)
    assert differing_pools(from_duckdb, from_postgres) == []
    assert not list(differences(from_postgres, twin.duckdb_path))
    assert ledger_rows_postgres(twin) == ledger_rows_duckdb(twin)  # same keys, same hashes
    with twin.open_duckdb() as duck, twin.connect() as pg:
        destination = destination_id(from_postgres.url, POOL_ID, "")
        assert submitted_this_hour(pg, destination) == len(from_postgres.executions)
        assert submitted_this_hour(duck, destination_id(from_duckdb.url, POOL_ID, "")) == len(
            from_duckdb.executions
        )
    notes = [r["context$long_note"] for r in from_postgres.pool_rows("execution_context")]
    assert LONG_TEXT in notes
    columns = {name for name, _, _ in from_postgres.pool_columns("execution_context")}
    assert {f"context${PERCENT_KEY}", f"context${LONG_KEY}"} <= columns  # the model's names

    jobs = len(from_postgres.executions)
    again = push_from_postgres(twin, from_postgres)

    assert again.delivery.pushed == []
    assert len(from_postgres.executions) == jobs


def test_changed_and_removed_rows_go_as_a_delta_and_the_pools_stay_equal(
    twin: Twin, pools: tuple[CelonisSimulatorServer, CelonisSimulatorServer]
) -> None:
    from_duckdb, from_postgres = pools
    contexts = [PushTable("execution_context", KEYS["execution_context"])]
    push_from_duckdb(twin, from_duckdb, contexts)
    push_from_postgres(twin, from_postgres, contexts)
    key = quote_ident(KEYS["execution_context"][0])
    with twin.open_duckdb() as duck, twin.connect() as pg:
        removed, changed = [
            k for (k,) in duck.execute(f"SELECT {key} FROM execution_context LIMIT 2").fetchall()
        ]
        for statement, value in (
            (f"DELETE FROM execution_context WHERE {key} = ?", removed),
            (f"UPDATE execution_context SET \"context$long_note\" = 'changed' WHERE {key} = ?", changed),
        ):
            duck.execute(statement, [value])
            pg.execute(statement.replace("?", "%s"), [value])

    on_duckdb = push_from_duckdb(twin, from_duckdb, contexts).delivery.tables["execution_context"]
    on_postgres = push_from_postgres(twin, from_postgres, contexts).delivery.tables["execution_context"]

    assert (on_postgres.mode, on_postgres.upserts, on_postgres.deletes) == ("DELTA", 1, 1)
    assert (on_postgres.mode, on_postgres.upserts, on_postgres.deletes) == (
        on_duckdb.mode, on_duckdb.upserts, on_duckdb.deletes,
    )  # fmt: skip
    assert differing_pools(from_duckdb, from_postgres) == []
    assert ledger_rows_postgres(twin) == ledger_rows_duckdb(twin)


def test_a_delivery_a_celonis_fault_interrupted_resumes_without_pushing_twice(
    twin: Twin, pools: tuple[CelonisSimulatorServer, CelonisSimulatorServer]
) -> None:
    _, celonis = pools
    celonis.faults.fail_jobs = 1

    with pytest.raises(CelonisJobFailed):
        push_from_postgres(twin, celonis)

    first = celonis.executions
    failed = [target for _, target, _, status in first if status == "ERROR"]
    done = {target for _, target, _, status in first if status == "DONE"}
    assert len(failed) == 1
    assert confirmed_postgres(twin) == done  # what Celonis finished stays recorded, the failure not

    push_from_postgres(twin, celonis)

    assert [target for _, target, _, _ in celonis.executions[len(first) :]] == failed
    assert not list(differences(celonis, twin.duckdb_path))


def test_two_runs_pushing_the_same_tables_wait_for_each_other_and_push_each_once(
    twin: Twin, pools: tuple[CelonisSimulatorServer, CelonisSimulatorServer]
) -> None:
    _, celonis = pools
    tables = PUSH[:4]

    with ThreadPoolExecutor(2) as runs:  # a run's error is raised here
        outcomes = list(runs.map(lambda _: push_from_postgres(twin, celonis, tables), range(2)))

    pushed = sorted(target for _, target, _, _ in celonis.executions)
    assert pushed == sorted(t.name for t in tables if t.name in celonis.pool_counts())
    assert sorted(len(o.delivery.pushed) for o in outcomes) == [0, len(pushed)]


def test_a_push_waits_while_another_run_holds_its_table(
    twin: Twin, pools: tuple[CelonisSimulatorServer, CelonisSimulatorServer]
) -> None:
    _, celonis = pools
    tables = PUSH[:1]
    with twin.connect() as holder:
        scope = push_lock_scope(destination_id(celonis.url, POOL_ID, ""))
        with partition_locks(holder, scope, [tables[0].name]):
            waiting = threading.Thread(target=push_from_postgres, args=(twin, celonis, tables))
            waiting.start()
            waiting.join(timeout=1.5)
            assert waiting.is_alive()
            assert celonis.executions == []
        waiting.join(timeout=60)
    assert [target for _, target, _, _ in celonis.executions] == [tables[0].name]


def test_a_ledger_copied_from_duckdb_goes_on_without_pushing_again(
    pipeline: tuple[Path, date],
    postgres_server: PostgresServer,
    tmp_path: Path,
    pools: tuple[CelonisSimulatorServer, CelonisSimulatorServer],
) -> None:
    celonis, _ = pools
    path = tmp_path / "pushed.duckdb"
    shutil.copy(pipeline[0], path)
    with api_of(celonis) as api:
        push_and_reload(api, lambda: open_warehouse(path), PUSH, **_options())
    jobs = len(celonis.executions)
    copied = copied_into_postgres(path, postgres_server)

    outcome = push_from_postgres(copied, celonis)

    assert outcome.delivery.pushed == []
    assert len(celonis.executions) == jobs
    assert not list(differences(celonis, path))


def test_the_push_assets_materialize_from_a_postgresql_warehouse_resource(
    twin: Twin,
    pipeline: tuple[Path, date],
    pools: tuple[CelonisSimulatorServer, CelonisSimulatorServer],
) -> None:
    _, celonis = pools
    resources = {"warehouse": twin.resource(), "celonis": celonis_resource(celonis)}
    defs = build_definitions(resources, config=celonis_settings(celonis, pipeline[1]))
    partitions = defs.resolve_job_def(CATCH_UP_JOB).partitions_def
    assert partitions is not None
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_job(defs, instance, CATCH_UP_JOB, partition_key=partitions.get_last_partition_key())

    assert result.success
    checks = [e.passed for e in result.get_asset_check_evaluations() if e.check_name == POOL_ROWS_CHECK]
    assert len(checks) == len(PUSHED_TABLES)
    assert all(checks)
    materialized = result.get_asset_materialization_events()
    assert len(materialized) == len(PUSHED_TABLES)
    assert not list(differences(celonis, twin.duckdb_path))
    assert confirmed_postgres(twin) == set(celonis.pool_counts())
