"""The activity log, the process KPIs and the process map on PostgreSQL (`*_pg`) against DuckDB's on
the same warehouse: a whole graph run over the simulator, copied into a fresh PostgreSQL database,
the tables dropped on both and rebuilt partition by partition on each; the partition locks (two days
at once, the same day twice); and the three assets materialized by Dagster on a PostgreSQL
`WarehouseResource`."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from polars.testing import assert_frame_equal

from oe_assets.config.secret import Secret
from oe_assets.definitions import build_definitions
from oe_assets.defs.process_mining.assets import activity_log_asset, event_log_asset, process_kpis_asset
from oe_assets.orchestration.partitions import daily_partitions
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.orchestration.runner import RANGE_END_TAG, RANGE_START_TAG, run_whole_graph
from oe_assets.process_mining.activity_log import ACTIVITY_LOG, rebuild_activity_log_partition
from oe_assets.process_mining.activity_log_pg import rebuild_activity_log_partition_pg
from oe_assets.process_mining.event_log import EVENT_LOG
from oe_assets.process_mining.kpis import PROCESS_KPIS, rebuild_kpis
from oe_assets.process_mining.kpis_pg import rebuild_kpis_pg
from oe_assets.process_mining.process_map import PROCESS_MAP_FILE, write_process_map
from oe_assets.process_mining.process_map_pg import write_process_map_pg
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.copy import copy_warehouse
from oe_assets.warehouse.postgres.locks import partition_locks
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets.warehouse.sql import quote_ident, quote_literal
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.twin import connect, differing_tables

BUILT = [ACTIVITY_LOG, PROCESS_KPIS]
LONG_KEY = "carrier.shipment.confirmed_by_the_forwarder_" + "x" * 16
"""An event-type key whose two time columns have names over 63 bytes, alike in their first 63."""
LONG_TEXT_TIME = f"context${LONG_KEY}$occurredAt"
LONG_TYPED_TIME = f"context${LONG_KEY}$metadata$occurredAt"


# ------------------------------------------------------------------------------- the warehouses
@pytest.fixture(scope="module")
def graph_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's days run through the whole graph into a DuckDB file (tests use copies)."""
    warehouse = tmp_path_factory.mktemp("process_mining_pg") / "oe.duckdb"
    with SimulatorServer(seed=7, days=3, contexts_per_day=25) as oe, dg.DagsterInstance.ephemeral() as runs:
        api = OeApiResource(
            api_url=oe.url, client_id=oe.client_id, client_secret=oe.client_secret, page_size=50
        )
        defs = build_definitions({"oe_api": api, "warehouse": WarehouseResource(database=str(warehouse))})
        days = sorted({created_day(c) for c in oe.world.contexts()})
        graph = run_whole_graph(defs, days[0], days[-1], instance=runs)
        assert graph.success, graph.failure
    return warehouse


@dataclass(frozen=True)
class Twin:
    """A DuckDB copy of the graph's warehouse and a PostgreSQL database holding the same tables."""

    duck: duckdb.DuckDBPyConnection
    pg: PgConnection
    server: PostgresServer
    database: str
    days: list[date]

    def both(self, sql: str) -> None:
        self.duck.execute(sql)
        self.pg.execute(sql)

    def drop(self, *tables: str) -> None:
        for table in tables:
            self.both(f"DROP TABLE IF EXISTS {quote_ident(table)}")

    def rebuild_all(self) -> None:
        """Every day's activities, then the KPIs of all days, on both; the same counts and frames."""
        for day in self.days:
            assert rebuild_activity_log_partition_pg(self.pg, day) == rebuild_activity_log_partition(
                self.duck, day
            ), day
        assert_frame_equal(rebuild_kpis_pg(self.pg, self.days), rebuild_kpis(self.duck, self.days))

    def differing(self, tables: list[str] = BUILT) -> dict[str, str]:
        return differing_tables(self.duck, self.pg, tables)

    def another_connection(self) -> PgConnection:
        return connect(self.server, self.database)

    def url(self) -> PostgresUrl:
        return PostgresUrl(
            self.server.host, self.server.port, self.server.user, self.database, Secret(self.server.password)
        )


@pytest.fixture
def make_twin(
    graph_warehouse: Path, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[Callable[..., Twin]]:
    """``make_twin(prepare=...)``: ``prepare`` changes the DuckDB copy before PostgreSQL gets it."""
    with ExitStack() as opened:

        def make(prepare: Callable[[duckdb.DuckDBPyConnection], None] = lambda _: None) -> Twin:
            duck = opened.enter_context(duckdb.connect(shutil.copy(graph_warehouse, tmp_path / "oe.duckdb")))
            prepare(duck)
            database = postgres_server.create_database(f"process_mining_{uuid.uuid4().hex[:12]}")
            pg = opened.enter_context(connect(postgres_server, database))
            days = duck.execute("SELECT DISTINCT _oe_partition FROM execution_context ORDER BY 1").fetchall()
            twin = Twin(duck, pg, postgres_server, database, [day for (day,) in days])
            copy_warehouse(duck, twin.url())
            return twin

        yield make


def add_long_event_key(duck: duckdb.DuckDBPyConnection) -> None:
    """An event-type key whose times live in two columns PostgreSQL names otherwise: ISO texts with
    offsets, a `Z`, an unreadable one and NULL in the first, TIMESTAMPs (which win) in some rows of
    the second."""
    duck.execute(f"ALTER TABLE execution_context ADD COLUMN {quote_ident(LONG_TEXT_TIME)} VARCHAR")
    duck.execute(f"ALTER TABLE execution_context ADD COLUMN {quote_ident(LONG_TYPED_TIME)} TIMESTAMP")
    created = quote_ident("metadata$createdAt")
    duck.execute(
        f"""UPDATE execution_context SET {quote_ident(LONG_TEXT_TIME)} = CASE hash("context$processid") % 4
              WHEN 0 THEN strftime({created} + INTERVAL 150 MINUTE, '%Y-%m-%dT%H:%M:%S.%f+02:00')
              WHEN 1 THEN strftime({created} + INTERVAL 7 MINUTE, '%Y-%m-%dT%H:%M:%SZ')
              WHEN 2 THEN 'when the truck came' END,
            {quote_ident(LONG_TYPED_TIME)} = CASE WHEN hash("context$processid") % 3 = 0
              THEN {created} + INTERVAL 3 MINUTE END"""
    )
    for column, path in ((LONG_TEXT_TIME, ["occurredAt"]), (LONG_TYPED_TIME, ["metadata", "occurredAt"])):
        json_path = "[" + ", ".join(f'"{p}"' for p in ["context", LONG_KEY, *path]) + "]"
        duck.execute(
            "INSERT INTO _oe_columns (table_name, column_name, json_path, data_type, first_seen) "
            "VALUES ('execution_context', ?, ?, 'VARCHAR', now())",
            [column, json_path],
        )


# ------------------------------------------------------------------------- rows, table by table
def test_every_partition_rebuilt_on_postgresql_gives_duckdbs_rows_and_a_rerun_changes_nothing(
    make_twin: Callable[..., Twin],
) -> None:
    twin = make_twin(add_long_event_key)
    physical = twin.pg.execute(
        "SELECT column_name, physical_name FROM _oe_columns WHERE column_name IN (%s, %s)",
        [LONG_TEXT_TIME, LONG_TYPED_TIME],
    ).fetchall()
    assert len({p for _, p in physical}) == 2
    assert all(c != p for c, p in physical)  # renamed in PostgreSQL
    twin.drop(*BUILT)
    assert len(twin.days) >= 3
    twin.rebuild_all()
    assert twin.differing() == {}
    kinds = dict(twin.pg.execute("SELECT activity_type, count(*) FROM activity_log GROUP BY 1").fetchall())
    assert set(kinds) == {"start", "step", "status", "end"}, kinds
    long_key = twin.pg.execute(
        "SELECT source, count(*) FROM activity_log WHERE activity = %s GROUP BY 1", [LONG_KEY]
    ).fetchall()
    assert {source for source, _ in long_key} == {
        f"execution_context.{LONG_TEXT_TIME}",
        f"execution_context.{LONG_TYPED_TIME}",
    }
    assert count(twin.pg, PROCESS_KPIS) > 0
    before = {table: count(twin.pg, table) for table in BUILT}
    twin.rebuild_all()  # again: the same counts, the same rows, nothing doubled
    assert twin.differing() == {}
    assert before == {table: count(twin.pg, table) for table in BUILT}


def count(conn: PgConnection | duckdb.DuckDBPyConnection, table: str, where: str = "") -> int:
    """Rows of ``table`` (``where``: a condition with no parameters)."""
    row = conn.execute(f"SELECT count(*) FROM {quote_ident(table)} {where}").fetchone()
    assert row is not None
    return int(str(row[0]))


def test_postgresql_tables_have_the_columns_of_duckdbs_and_top_variants_as_json_text(
    make_twin: Callable[..., Twin],
) -> None:
    twin = make_twin()
    twin.drop(*BUILT)
    twin.rebuild_all()
    for table in BUILT:
        on_duckdb = twin.duck.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [table],
        ).fetchall()
        on_postgres = twin.pg.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            [table],
        ).fetchall()
        assert on_postgres == on_duckdb, table
    types = dict(
        twin.pg.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'process_kpis'"
        ).fetchall()
    )
    assert (types["_oe_partition"], types["throughput_p90_seconds"], types["top_variants"]) == (
        "date", "double precision", "text",
    )  # fmt: skip
    variants = "SELECT _oe_partition, execution_template_id, top_variants FROM process_kpis"
    as_json = {(day, tid): json.loads(text) for day, tid, text in twin.pg.execute(variants).fetchall()}
    assert as_json == {(day, tid): listed for day, tid, listed in twin.duck.execute(variants).fetchall()}


def test_a_day_is_replaced_alone_and_the_others_stay_as_they_were(make_twin: Callable[..., Twin]) -> None:
    """A context's new status reaches its day's activities and KPIs; the other days are untouched."""
    twin = make_twin()
    twin.drop(*BUILT)
    twin.rebuild_all()
    day = twin.days[1]
    others = count(twin.pg, ACTIVITY_LOG, f"WHERE _oe_partition <> {quote_literal(day.isoformat())}")
    finished = finished_context(twin, day)
    pause(twin, finished)
    assert rebuild_activity_log_partition_pg(twin.pg, day) == rebuild_activity_log_partition(twin.duck, day)
    assert_frame_equal(rebuild_kpis_pg(twin.pg, [day]), rebuild_kpis(twin.duck, [day]))
    assert twin.differing() == {}
    ended = f"WHERE case_id = {quote_literal(finished)} AND activity_type = 'end'"
    assert count(twin.pg, ACTIVITY_LOG, ended) == 0
    assert count(twin.pg, ACTIVITY_LOG, f"WHERE _oe_partition <> {quote_literal(day.isoformat())}") == others


def finished_context(twin: Twin, day: date) -> str:
    row = twin.duck.execute(
        """SELECT "context$processid" FROM execution_context WHERE _oe_partition = ? AND status = 'finished'
           ORDER BY 1 LIMIT 1""",
        [day],
    ).fetchone()
    assert row, f"{day} has a finished run"
    return str(row[0])


def pause(twin: Twin, case: str) -> None:
    """The case's run is no longer finished: its end activity goes, its status mix changes."""
    twin.both(
        f"UPDATE execution_context SET status = 'paused' WHERE \"context$processid\" = {quote_literal(case)}"
    )


def test_before_anything_landed_the_tables_are_made_empty_and_the_map_is_empty_as_on_duckdb(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database = postgres_server.create_database(f"process_mining_empty_{uuid.uuid4().hex[:12]}")
    day = date(2025, 3, 1)
    with connect(postgres_server, database) as pg, duckdb.connect() as duck:
        assert rebuild_activity_log_partition_pg(pg, day) == rebuild_activity_log_partition(duck, day) == {}
        assert rebuild_kpis_pg(pg, [day]).is_empty()
        assert rebuild_kpis(duck, [day]).is_empty()
        assert [count(pg, table) for table in BUILT] == [count(duck, table) for table in BUILT] == [0, 0]
        pg.execute("DROP TABLE activity_log")
        duck.execute("DROP TABLE activity_log")
        on_postgres, _ = write_process_map_pg(pg, tmp_path / "pg")
        on_duckdb, _ = write_process_map(duck, tmp_path / "duck")
    assert on_postgres.read_bytes() == on_duckdb.read_bytes()


def test_the_process_map_file_is_duckdbs_byte_for_byte(
    make_twin: Callable[..., Twin], tmp_path: Path
) -> None:
    twin = make_twin(add_long_event_key)
    twin.drop(*BUILT)
    twin.rebuild_all()
    on_postgres, graph_pg = write_process_map_pg(twin.pg, tmp_path / "pg")
    on_duckdb, graph_duck = write_process_map(twin.duck, tmp_path / "duck")
    assert on_postgres.name == PROCESS_MAP_FILE
    assert graph_pg == graph_duck
    assert LONG_KEY in graph_pg.nodes
    assert on_postgres.read_bytes() == on_duckdb.read_bytes()
    assert not list((tmp_path / "pg").glob("*.tmp"))


# ------------------------------------------------------------------------------------ the locks
@dataclass(frozen=True)
class Step:
    """A partitioned step, on either warehouse, one day at a time."""

    table: str
    on_postgres: Callable[[PgConnection, date], object]
    on_duckdb: Callable[[duckdb.DuckDBPyConnection, date], object]

    def on_own_connection(self, twin: Twin, day: date) -> None:
        """The day on PostgreSQL through a connection of its own, as another run's."""
        with twin.another_connection() as pg:
            self.on_postgres(pg, day)


STEPS = [
    Step(ACTIVITY_LOG, rebuild_activity_log_partition_pg, rebuild_activity_log_partition),
    Step(
        PROCESS_KPIS, lambda pg, day: rebuild_kpis_pg(pg, [day]), lambda duck, day: rebuild_kpis(duck, [day])
    ),
]


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """``work`` started in a thread; what it raised is in the list once the thread ends."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def joined(thread: threading.Thread, errors: list[BaseException]) -> None:
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert not errors, errors


def test_two_days_rebuilt_at_once_both_land(make_twin: Callable[..., Twin]) -> None:
    """Each day's activities then its KPIs in runs of their own, started together; both also race
    to create the tables, which neither has yet."""
    twin = make_twin()
    twin.drop(*BUILT)
    days = twin.days[1:3]
    together = threading.Barrier(len(days))

    def run(day: date) -> None:
        together.wait()
        for step in STEPS:
            step.on_own_connection(twin, day)

    for thread, errors in [in_thread(lambda day=day: run(day)) for day in days]:
        joined(thread, errors)
    for step in STEPS:
        for day in days:
            step.on_duckdb(twin.duck, day)
    assert twin.differing() == {}
    landed = twin.pg.execute("SELECT DISTINCT _oe_partition FROM process_kpis").fetchall()
    assert sorted(day for (day,) in landed) == days


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.table)
def test_the_same_day_twice_waits_and_reads_what_the_first_committed(
    make_twin: Callable[..., Twin], step: Step
) -> None:
    """While another run holds a day, another day goes through and the held one waits; it reads its
    inputs only once it has the day (a change made while it waits is in its rows)."""
    twin = make_twin()
    twin.drop(step.table)
    held, free = twin.days[1], twin.days[2]
    held_rows = f"WHERE _oe_partition = {quote_literal(held.isoformat())}"
    with twin.another_connection() as holder, partition_locks(holder, step.table, [held.isoformat()]):
        step.on_own_connection(twin, free)  # a different day does not wait
        waiting, errors = in_thread(lambda: step.on_own_connection(twin, held))
        time.sleep(1.0)
        assert waiting.is_alive()
        assert count(twin.pg, step.table, held_rows) == 0
        pause(twin, finished_context(twin, held))
    joined(waiting, errors)
    for day in (held, free):
        step.on_duckdb(twin.duck, day)
    assert twin.differing([step.table]) == {}
    assert count(twin.pg, step.table, held_rows) > 0


# ------------------------------------------------------------------------------------- Dagster
def test_dagster_materializes_the_three_assets_on_postgresql_with_duckdbs_rows(
    make_twin: Callable[..., Twin], graph_warehouse: Path, tmp_path: Path
) -> None:
    twin = make_twin()
    twin.pg.execute(f"DROP TABLE {EVENT_LOG}, {ACTIVITY_LOG}, {PROCESS_KPIS}")
    server = twin.server
    warehouse = WarehouseResource(
        database=f"postgresql://{server.user}@{server.host}:{server.port}/{twin.database}",
        postgres_password=server.password,
        export_dir=str(tmp_path / "exports"),
    )
    partitions = daily_partitions()
    assets = [event_log_asset(partitions), activity_log_asset(partitions), process_kpis_asset(partitions)]
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            assets,
            resources={"warehouse": warehouse},
            instance=instance,
            tags={RANGE_START_TAG: twin.days[0].isoformat(), RANGE_END_TAG: twin.days[-1].isoformat()},
        )
    assert result.success
    assert twin.differing([EVENT_LOG, *BUILT]) == {}  # the copy is the graph's DuckDB warehouse as it was
    activities = result.asset_materializations_for_node("activity_log")[0].metadata
    assert activities["dagster/partition_row_count"].value == count(twin.duck, ACTIVITY_LOG)
    kpis = result.asset_materializations_for_node("process_kpis")[0].metadata
    drawn = Path(str(kpis["process_map"].value))
    on_duckdb, _ = write_process_map(twin.duck, tmp_path / "duck")
    assert drawn.parent == tmp_path / "exports"
    assert drawn.read_bytes() == on_duckdb.read_bytes()
    assert kpis["dagster/row_count"].value == count(twin.duck, PROCESS_KPIS)
