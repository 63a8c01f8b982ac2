"""A table family written into PostgreSQL (scratch in DuckDB, one publishing transaction) holds
what the DuckDB writer's warehouse holds after the same writes: rows, catalog, quarantine, types."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from oe_assets.config.secret import Secret
from oe_assets.flatten import CONTEXTS, Flattener, SchemaRegistry, TableFamily
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse import load_registry, replace_all, replace_partition
from oe_assets.warehouse.postgres import catalog
from oe_assets.warehouse.postgres.connect import OLDEST_SERVER, PostgresWarehouseError, connected
from oe_assets.warehouse.postgres.family import replace_partition_pg
from oe_assets.warehouse.postgres.names import MAX_IDENTIFIER_BYTES
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.tcp_cut import cutting_proxy
from oe_assets_tests.support.twin import connect, differing_tables, physical_names, postgres_table

FAM = TableFamily("t", ("id",), "t_id")
LONG = "k" * 70  # a key longer than PostgreSQL's 63 bytes, twice with different ends
LOADED = datetime(2024, 1, 1)
CATALOG = {  # compared without the time each writer stamps
    "_oe_tables": "table_name, family, parent_table, json_path",
    "_oe_columns": "table_name, column_name, json_path, data_type",
    "_oe_quarantine": "family, partition_key, record_key, reason, document",
}


@dataclass
class Twin:
    """The same writes into a DuckDB file and a PostgreSQL database."""

    duck: duckdb.DuckDBPyConnection
    pg: psycopg.Connection[Any]
    server: PostgresServer
    database: str

    def write(self, family: TableFamily, day: str | None, *chunks: list[Any]) -> None:
        duck_report = replace_partition_or_all(
            self.duck, family, day, _batches(load_registry(self.duck, family), family, day, chunks)
        )
        pg_report = replace_partition_pg(
            self.pg, family, day, _batches(catalog.load_registry(self.pg, family), family, day, chunks),
            partition_column="_oe_partition" if day else None,
        )  # fmt: skip
        assert pg_report.rows_per_table == duck_report.rows_per_table
        assert pg_report.quarantined == duck_report.quarantined

    def differences(self) -> dict[str, str]:
        tables = [str(t) for (t,) in self.duck.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        differing = differing_tables(self.duck, self.pg, [t for t in tables if t not in CATALOG])
        for table, columns in CATALOG.items():
            duck = sorted(self.duck.execute(f"SELECT {columns} FROM {table}").fetchall(), key=repr)
            pg = sorted(self.pg.execute(f"SELECT {columns} FROM {table}").fetchall(), key=repr)
            if [tuple(map(str, r)) for r in duck] != [tuple(map(str, r)) for r in pg]:
                differing[table] = f"{len(duck)} vs {len(pg)} catalog rows"
        return differing


def replace_partition_or_all(
    conn: duckdb.DuckDBPyConnection, family: TableFamily, day: str | None, batches: Any
) -> Any:
    return (
        replace_all(conn, family, batches) if day is None else replace_partition(conn, family, day, batches)
    )


def _batches(
    registry: SchemaRegistry, family: TableFamily, day: str | None, chunks: tuple[list[Any], ...]
) -> Iterator[Any]:
    flattener = Flattener(family, registry)
    constants: dict[str, object] = {"_oe_loaded_at": LOADED}
    if day is not None:
        constants["_oe_partition"] = date.fromisoformat(day)
    for chunk in chunks:
        yield flattener.flatten(chunk, constant_columns=constants)


@pytest.fixture
def twin(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Twin]:
    database = postgres_server.create_database(f"family_{uuid.uuid4().hex[:12]}")
    with duckdb.connect(str(tmp_path / "twin.duckdb")) as duck, connect(postgres_server, database) as pg:
        yield Twin(duck, pg, postgres_server, database)


def test_the_simulators_contexts_day_by_day_and_a_refreshed_day_equal_duckdbs(
    twin: Twin, simulator: SimulatorServer
) -> None:
    contexts = simulator.world.contexts()
    days = sorted({created_day(c) for c in contexts})
    for day in days:
        twin.write(CONTEXTS, day.isoformat(), [c for c in contexts if created_day(c) == day])
    assert twin.differences() == {}
    refreshed = [dict(c, status="failed") for c in contexts if created_day(c) == days[0]][1:]  # one vanished
    twin.write(CONTEXTS, days[0].isoformat(), refreshed)
    assert twin.differences() == {}
    long_tables = twin.pg.execute(
        "SELECT physical_name FROM _oe_tables WHERE physical_name <> table_name"
    ).fetchall()
    assert long_tables, "the simulator's deepest tables have names over 63 bytes"
    assert all(len(str(name).encode()) <= MAX_IDENTIFIER_BYTES for (name,) in long_tables)


def test_types_widen_across_partitions_as_on_duckdb(twin: Twin) -> None:
    twin.write(FAM, "2024-01-01", [{"id": "1", "n": 1, "t": "2023-10-16T10:13:42.322Z", "e": None}])
    twin.write(FAM, "2024-01-02", [{"id": "2", "n": 2.5, "t": "2023-10-16T10:13:42.322001Z", "e": 7}])
    twin.write(
        FAM,
        "2024-01-03",
        [{"id": "3", "n": "many", "t": "soon", "e": None, "items": [{"a": 1}, {"a": True}]}],
    )
    assert twin.differences() == {}
    types = dict(
        twin.pg.execute("SELECT column_name, data_type FROM _oe_columns WHERE table_name = 't'").fetchall()
    )
    assert (types["n"], types["t"], types["e"]) == ("VARCHAR", "VARCHAR", "BIGINT")
    texts = {r[1]: r for r in postgres_table(twin.pg, "t")}  # the timestamps became ISO text, as on DuckDB
    assert {dict(r)["t"] for r in texts.values()} == {
        "2023-10-16T10:13:42.322Z",
        "2023-10-16T10:13:42.322001Z",
        "soon",
    }


def test_long_names_get_distinct_short_forms_recorded_in_the_catalog(twin: Twin) -> None:
    documents = [{"id": "1", LONG + "a": 1, LONG + "b": 2, LONG + "list": [{"v": 1}]}]
    twin.write(FAM, "2024-01-01", documents)
    twin.write(FAM, "2024-01-02", [{"id": "2", LONG + "a": 3, LONG + "c": "new"}])
    assert twin.differences() == {}
    _, columns = physical_names(twin.pg, "t")
    long_columns = {p: c for p, c in columns.items() if c.startswith(LONG)}
    assert len(long_columns) == 3
    assert all(len(p.encode()) <= MAX_IDENTIFIER_BYTES for p in long_columns)


def test_quarantine_and_an_unpartitioned_family_are_replaced_as_on_duckdb(twin: Twin) -> None:
    twin.write(FAM, "2024-01-01", [{"id": "1"}, {"no_id": True}, "not an object"])
    twin.write(FAM, "2024-01-01", [{"id": "1"}, {"id": "2"}])  # the day's quarantine is this read's
    twin.write(FAM, "2024-01-02", [{"missing": 1}])
    assert twin.differences() == {}
    assert twin.pg.execute("SELECT partition_key FROM _oe_quarantine").fetchall() == [("2024-01-02",)]
    other = TableFamily("u", ("id",), "u_id")
    twin.write(other, None, [{"id": "1", "x": [1, 2]}, {"id": "2"}])
    twin.write(other, None, [{"id": "3"}])
    assert twin.differences() == {}


def test_a_refused_value_rolls_the_partition_back_and_names_the_table(twin: Twin) -> None:
    twin.write(FAM, "2024-01-01", [{"id": "1", "s": "fine"}])
    before = postgres_table(twin.pg, "t")
    batches = _batches(
        catalog.load_registry(twin.pg, FAM), FAM, "2024-01-01", ([{"id": "2", "s": "nul\x00"}],)
    )
    with pytest.raises(PostgresWarehouseError, match=r"^t: PostgreSQL refused a value"):
        replace_partition_pg(twin.pg, FAM, "2024-01-01", batches)
    assert postgres_table(twin.pg, "t") == before


def test_concurrent_days_that_change_the_schema_all_land(twin: Twin) -> None:
    """Rounds of four threads, each a day bringing a column of its own, a column all days of the
    round bring, and a column of a child table (each publish must change the family's tables): the
    shared lock gives way to the exclusive one, and no publish plans against a schema another one
    is changing, deadlocks or is lost. Without the family lock this fails (a column added twice)."""
    twin.write(FAM, "2024-01-01", [{"id": "0"}])
    errors: list[BaseException] = []

    def write(day: str, round_days: list[str], start: threading.Barrier) -> None:
        try:
            with connect(twin.server, twin.database) as pg:
                docs = [{"id": day, f"only_{day}": day, f"shared_{round_days[0]}": 1, "list": [{day: 1}]}]
                batches = list(_batches(catalog.load_registry(pg, FAM), FAM, day, (docs,)))
                start.wait(timeout=60)
                replace_partition_pg(pg, FAM, day, batches)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    days = [f"2024-02-{i:02d}" for i in range(1, 13)]
    for round_days in (days[0:4], days[4:8], days[8:12]):
        start = threading.Barrier(len(round_days))
        threads = [threading.Thread(target=write, args=(day, round_days, start)) for day in round_days]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert errors == []
    assert sorted(dict(r)["id"] for r in postgres_table(twin.pg, "t")) == ["0", *days]
    columns = {
        c for (c,) in twin.pg.execute("SELECT column_name FROM _oe_columns WHERE table_name = 't'").fetchall()
    }
    assert {f"only_{day}" for day in days} <= columns


DOUBLES = [1.0, 2.5, -7.0, 0.1, 1e15, 1.2345678901234568e15, 9999999999999998.0, 1e16, 1e-05, 0.0001, -0.0,
           123456789.0, 1e300, -1.5e-10, 5e-324, 1.7976931348623157e308]  # fmt: skip


def test_doubles_widened_to_text_read_as_on_duckdb(twin: Twin) -> None:
    """PostgreSQL writes 1.0 as ``1`` and 1e15 as ``1e+15``; the widened column holds DuckDB's text."""
    twin.write(FAM, "2024-01-01", [{"id": str(i), "v": v} for i, v in enumerate(DOUBLES)])
    twin.write(FAM, "2024-01-02", [{"id": "text", "v": "now text"}])
    assert twin.differences() == {}
    texts = {dict(row)["v"] for row in postgres_table(twin.pg, "t")}
    assert texts == {repr(v) for v in DOUBLES} | {"now text"}


def test_a_connection_lost_mid_publish_leaves_the_day_and_a_rerun_completes_it(twin: Twin) -> None:
    """A proxy cuts the connection while the day's rows stream into COPY: PostgreSQL rolls the
    publish back (the day as it was), and the same write again lands it as DuckDB has it."""
    day = "2024-03-01"
    twin.write(FAM, day, [{"id": "kept", "v": 1}])
    before = postgres_table(twin.pg, "t")
    documents = [
        {"id": str(i), "text": "x" * 200, "items": [{"n": n} for n in range(5)]} for i in range(20_000)
    ]
    server = twin.server
    with cutting_proxy(server.port, cut_after_bytes=3_000_000) as proxy:
        cut = psycopg.connect(host="127.0.0.1", port=proxy.port, user=server.user, password=server.password,
                              dbname=twin.database, autocommit=True)  # fmt: skip
        batches = _batches(catalog.load_registry(cut, FAM), FAM, day, (documents,))
        with pytest.raises(psycopg.OperationalError):
            replace_partition_pg(cut, FAM, day, batches)
        cut.close()
    assert proxy.cuts == 1
    assert postgres_table(twin.pg, "t") == before
    twin.write(FAM, day, documents)
    assert twin.differences() == {}


def test_a_server_older_than_the_warehouse_needs_is_one_sentence(twin: Twin) -> None:
    """The warehouse needs PostgreSQL 15 (MERGE); the check reads the server's own version, shown
    here by asking for one more major version than the test server has."""
    target = PostgresUrl(
        twin.server.host, twin.server.port, twin.server.user, twin.database, Secret(twin.server.password)
    )
    version = twin.pg.info.server_version
    with (
        pytest.raises(PostgresWarehouseError) as refused,
        connected(target, "OE_WAREHOUSE", oldest=(version // 10000 + 1) * 10000),
    ):
        pass
    major = version // 10000
    assert str(refused.value).startswith(f"OE_WAREHOUSE {target.shown}: the server runs PostgreSQL {major}.")
    assert str(refused.value).endswith(f"and the warehouse needs {major + 1} or newer")
    with connected(target, "OE_WAREHOUSE", oldest=OLDEST_SERVER) as conn:
        assert conn.info.server_version >= OLDEST_SERVER
