"""The OCEL 2.0 and XES exports of a PostgreSQL warehouse are the files a DuckDB warehouse with the
same rows gives, byte for byte: the simulator's days through the whole graph into DuckDB (with
business objects whose tables and columns have names over PostgreSQL's 63 bytes), copied into
PostgreSQL, exported from both; the pulled columns, the missing-table sentence, the one snapshot,
and the two export assets materialized on a PostgreSQL warehouse."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from oe_assets.config.secret import Secret
from oe_assets.definitions import build_definitions
from oe_assets.defs.process_mining.exports import OCEL_EXPORT, OCEL_FILES, XES_EXPORT, XES_FILE
from oe_assets.exports.business_objects import ROOT_KEY_COLUMN
from oe_assets.exports.ocel import export_ocel, ocel_format, write_ocel
from oe_assets.exports.ocel_model import build_ocel
from oe_assets.exports.source import MissingTablesError
from oe_assets.exports.source_pg import (
    READ_COLUMNS,
    build_ocel_pg,
    export_xes_pg,
    object_columns,
    pull_columns,
)
from oe_assets.exports.xes import export_xes
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.postgres import pull as pulling
from oe_assets.warehouse.postgres.copy import copy_warehouse
from oe_assets.warehouse.postgres.family import scratch_warehouse
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets.warehouse.schema import COLUMNS_TABLE, TABLES_TABLE
from oe_assets.warehouse.sql import quote_ident
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.twin import connect, physical_names

LONG_STEP = "supplier.evaluation.completed.for.the.quarterly.procurement.review"
LONG_SCORE = "overallSupplierScoreAcrossAllCategoriesWeightedByProcurementVolume"
LONG_COMMENT = "reviewerCommentWrittenInFullForTheQuarterlyProcurementAuditTrailOfRecord"
ON_TIME, SCORE = "onTimeDelivery%", "score%"  # a % in a name: pull's placeholder is %s
REVIEWS = f"execution_context$context&{LONG_STEP}$reviews"
SUPPLIER_ID = f"context${LONG_STEP}$evaluatedSupplierId"
OCEL_NAMES = ["log.jsonocel", "log.sqlite", "log.xmlocel"]


@dataclasses.dataclass(frozen=True)
class Twins:
    """A DuckDB warehouse built by the whole graph, and its copy in a PostgreSQL database."""

    duckdb_path: Path
    database: str
    server: PostgresServer
    days: list[str]

    def url(self, database: str | None = None) -> PostgresUrl:
        s = self.server
        return PostgresUrl(s.host, s.port, s.user, database or self.database, Secret(s.password))


def _name_long_objects(simulator: SimulatorServer) -> None:
    """A third of the contexts also name a supplier (floats beside its id) and reviews (an id, a
    comment, one with a control character, a score): names over 63 bytes or with a ``%``, in the
    contexts' table and in a child table."""
    for n, doc in enumerate(simulator.world.contexts()[::3]):
        changed = copy.deepcopy(doc)
        changed["context"][LONG_STEP] = {
            "evaluatedSupplierId": f"SUP-{n % 4}",
            LONG_SCORE: 2.5 + n % 5,
            ON_TIME: 97.5 - n,
            "reviews": [
                {"reviewId": f"R-{n}-{i}", LONG_COMMENT: f"fine{chr(1) * (n % 2)}", SCORE: n * 10 + i}
                for i in range(2)
            ],
        }
        simulator.world.put_context(changed)


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Twins:
    path = tmp_path_factory.mktemp("exports_pg") / "oe.duckdb"
    with (
        SimulatorServer(seed=7, days=3, contexts_per_day=25) as sim,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        _name_long_objects(sim)
        api = OeApiResource(api_url=sim.url, client_id=sim.client_id, client_secret=sim.client_secret)
        defs = build_definitions({"oe_api": api, "warehouse": WarehouseResource(database=str(path))})
        days = sorted({created_day(c) for c in sim.world.contexts()})
        assert run_whole_graph(defs, days[0], days[-1], instance=instance).success
    twins = Twins(path, postgres_server.create_database(f"exports_{uuid.uuid4().hex[:12]}"), postgres_server,
                  [d.isoformat() for d in days])  # fmt: skip
    with duckdb.connect(str(path), read_only=True) as duck:
        copy_warehouse(duck, twins.url())
    return twins


@pytest.fixture
def duck(twins: Twins) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(twins.duckdb_path), read_only=True) as conn:
        yield conn


def _fresh_copy(twins: Twins, duck: duckdb.DuckDBPyConnection) -> str:
    """A database of its own for a test that changes it."""
    database = twins.server.create_database(f"exports_{uuid.uuid4().hex[:12]}")
    copy_warehouse(duck, twins.url(database))
    return database


@pytest.mark.parametrize("name", OCEL_NAMES)
def test_ocel_files_are_duckdbs_bytes(
    twins: Twins, duck: duckdb.DuckDBPyConnection, tmp_path: Path, name: str
) -> None:
    expected = export_ocel(duck, tmp_path / "duckdb" / name)
    with connect(twins.server, twins.database) as pg:
        got = write_ocel(build_ocel_pg(pg), tmp_path / "postgres" / name, ocel_format(Path(name)))
    assert got.path.read_bytes() == expected.path.read_bytes()
    assert dataclasses.replace(got, path=expected.path) == expected
    assert expected.events > 0
    assert {"evaluatedSupplier", "review", "quote", "order"} <= set(expected.objects_per_type)
    assert expected.dropped == {"control characters escaped": len(duck.sql(
        f"SELECT 1 FROM {quote_ident(REVIEWS)} WHERE contains({quote_ident(LONG_COMMENT)}, chr(1))"
    ).fetchall())}  # fmt: skip


def test_xes_file_is_duckdbs_bytes(twins: Twins, duck: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    expected = export_xes(duck, tmp_path / "duckdb.xes")
    with connect(twins.server, twins.database) as pg:
        got = export_xes_pg(pg, tmp_path / "postgres.xes")
    assert got.path.read_bytes() == expected.path.read_bytes()
    assert dataclasses.replace(got, path=expected.path) == expected
    assert expected.events == len(duck.sql("SELECT 1 FROM activity_log").fetchall()) > 0


def test_long_names_are_resolved_to_the_models_names(twins: Twins, duck: duckdb.DuckDBPyConnection) -> None:
    with connect(twins.server, twins.database) as pg:
        physical_reviews, reviews_columns = physical_names(pg, REVIEWS)
        _, context_columns = physical_names(pg, "execution_context")
        data = build_ocel_pg(pg)
    assert physical_reviews != REVIEWS  # PostgreSQL's names differ from the model's
    assert LONG_COMMENT in reviews_columns.values()
    assert LONG_COMMENT not in reviews_columns
    assert SUPPLIER_ID in context_columns.values()
    assert SUPPLIER_ID not in context_columns
    assert data.attribute_types["review"] == {LONG_COMMENT: "string", SCORE: "integer"}
    assert data.attribute_types["evaluatedSupplier"] == {LONG_SCORE: "float", ON_TIME: "float"}
    values = {(r["ocel_type"], r["name"]) for r in data.attributes.to_pylist()}
    assert {("review", LONG_COMMENT), ("review", SCORE), ("evaluatedSupplier", LONG_SCORE)} <= values
    assert ("evaluatedSupplier", ON_TIME) in values
    assert data.objects_per_type()["evaluatedSupplier"] == len(duck.sql(
        f"SELECT DISTINCT {quote_ident(SUPPLIER_ID)} FROM execution_context WHERE {quote_ident(SUPPLIER_ID)} IS NOT NULL"
    ).fetchall())  # fmt: skip


def test_only_the_columns_the_export_reads_are_pulled_with_duckdbs_values(
    twins: Twins, duck: duckdb.DuckDBPyConnection
) -> None:
    with connect(twins.server, twins.database) as pg, scratch_warehouse() as scratch:
        pull_columns(pg, scratch, {t: READ_COLUMNS[t] for t in (TABLES_TABLE, COLUMNS_TABLE)})
        reads = object_columns(scratch)
        assert set(reads[REVIEWS]) == {ROOT_KEY_COLUMN, "reviewId", LONG_COMMENT, SCORE}
        supplier = {
            ROOT_KEY_COLUMN,
            SUPPLIER_ID,
            f"context${LONG_STEP}${LONG_SCORE}",
            f"context${LONG_STEP}${ON_TIME}",
        }
        assert supplier <= set(reads["execution_context"])
        wanted = {**reads, "activity_log": READ_COLUMNS["activity_log"], "no_such_table": ("x",)}
        pulled = pull_columns(pg, scratch, wanted)
        tables = {str(t) for (t,) in scratch.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert tables == {TABLES_TABLE, COLUMNS_TABLE, *reads, "activity_log"}
        for table in [*reads, "activity_log"]:
            columns = ", ".join(map(quote_ident, wanted[table]))
            query = f"SELECT {columns} FROM {quote_ident(table)}"
            expected = sorted(duck.sql(query).fetchall(), key=repr)
            assert sorted(scratch.sql(query).fetchall(), key=repr) == expected
            assert pulled[table] == len(expected)
        pulled_columns = len(scratch.sql("DESCRIBE execution_context").fetchall())
        assert pulled_columns == len(reads["execution_context"])
        assert pulled_columns < len(duck.sql("DESCRIBE execution_context").fetchall())


def test_an_empty_warehouse_says_what_is_missing_as_duckdb_does(twins: Twins, tmp_path: Path) -> None:
    database = twins.server.create_database(f"exports_{uuid.uuid4().hex[:12]}")
    with connect(twins.server, database) as pg, duckdb.connect(str(tmp_path / "empty.duckdb")) as empty:
        for on_duckdb, on_postgres in (
            (lambda: build_ocel(empty), lambda: build_ocel_pg(pg)),
            (lambda: export_xes(empty, tmp_path / "d.xes"), lambda: export_xes_pg(pg, tmp_path / "p.xes")),
        ):
            with pytest.raises(MissingTablesError) as duckdb_says:
                on_duckdb()
            with pytest.raises(MissingTablesError) as postgres_says:
                on_postgres()
            assert str(postgres_says.value) == str(duckdb_says.value)
    assert not list(tmp_path.glob("*.xes"))


def test_the_tables_are_read_in_one_snapshot_while_another_run_writes(
    twins: Twins, duck: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run empties the activity log after the export has begun reading, before it pulls
    the log: the export still sees the log as it was when it began."""
    database = _fresh_copy(twins, duck)
    real_pull = pulling.pull
    with connect(twins.server, database) as other:

        def write_then_pull(*args: Any) -> int:
            if args[-1] == "activity_log":
                other.execute("DELETE FROM activity_log")
            return real_pull(*args)

        monkeypatch.setattr(pulling, "pull", write_then_pull)
        with connect(twins.server, database) as pg:
            got = export_xes_pg(pg, tmp_path / "postgres.xes")
        assert other.execute("SELECT count(*) FROM activity_log").fetchone() == (0,)
    assert got.path.read_bytes() == export_xes(duck, tmp_path / "duckdb.xes").path.read_bytes()


# ------------------------------------------------------------------------------- through Dagster
def _materialize(twins: Twins, warehouse: WarehouseResource) -> dict[str, dict[str, Any]]:
    """The two export assets for the last day; what each reported, the folder's paths left out."""
    resources = {"oe_api": OeApiResource(client_id="unused", client_secret="unused"), "warehouse": warehouse}
    defs = build_definitions(resources)
    with dg.DagsterInstance.ephemeral() as instance:
        run = dg.materialize(
            list(defs.assets or []), selection=[OCEL_EXPORT, XES_EXPORT], partition_key=twins.days[-1],  # type: ignore[arg-type]
            resources=defs.resources, instance=instance,
        )  # fmt: skip
    assert run.success
    reported = {}
    for event in run.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        metadata = {k: v.value for k, v in materialization.metadata.items() if k not in ("path", "files")}
        reported[materialization.asset_key.to_user_string()] = metadata
    return reported


def _postgres_resource(twins: Twins, database: str, folder: Path) -> WarehouseResource:
    s = twins.server
    return WarehouseResource(
        database=f"postgresql://{s.user}@{s.host}:{s.port}/{database}",
        postgres_password=s.password,
        export_dir=str(folder),
    )


def test_the_export_assets_on_postgresql_write_duckdbs_files(twins: Twins, tmp_path: Path) -> None:
    on_duckdb = WarehouseResource(database=str(twins.duckdb_path), export_dir=str(tmp_path / "duckdb"))
    on_postgres = _postgres_resource(twins, twins.database, tmp_path / "postgres")
    assert on_postgres.on_postgres
    reported_by_duckdb = _materialize(twins, on_duckdb)
    reported_by_postgres = _materialize(twins, on_postgres)
    assert reported_by_postgres == reported_by_duckdb
    assert reported_by_postgres[OCEL_EXPORT]["events"] > 0
    for name in (*OCEL_FILES, XES_FILE):
        assert (tmp_path / "postgres" / name).read_bytes() == (tmp_path / "duckdb" / name).read_bytes()


def test_the_export_assets_on_an_empty_postgresql_warehouse_have_nothing_yet(
    twins: Twins, tmp_path: Path
) -> None:
    database = twins.server.create_database(f"exports_{uuid.uuid4().hex[:12]}")
    reported = _materialize(twins, _postgres_resource(twins, database, tmp_path / "postgres"))
    assert reported == {
        name: {"events": 0, "note": "no process contexts yet"} for name in (OCEL_EXPORT, XES_EXPORT)
    }
    assert not (tmp_path / "postgres").exists()
