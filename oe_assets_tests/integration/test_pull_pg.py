"""A PostgreSQL query's rows pulled into DuckDB keep their values and types exactly; a model
table pulled with ``pull_table`` is, in the scratch, the table a DuckDB warehouse holds (names over
63 bytes and names with ``%`` included); ``one_snapshot`` reads at one instant."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb
import psycopg
import pytest

from oe_assets.config.secret import Secret
from oe_assets.warehouse.postgres.catalog import physical_table_name, postgres_columns
from oe_assets.warehouse.postgres.connect import one_snapshot
from oe_assets.warehouse.postgres.copy import copy_warehouse
from oe_assets.warehouse.postgres.pull import pull, pull_table
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets.warehouse.schema import COLUMNS_TABLE, TABLES_TABLE, ensure_bookkeeping
from oe_assets.warehouse.sql import quote_ident
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.twin import connect

ROWS = [
    ("plain", 1, 1.5, True, datetime(2024, 1, 2, 3, 4, 5, 123456), date(2024, 1, 2)),
    ("", None, float("nan"), False, None, None),
    (None, -(2**62), float("inf"), None, datetime(1, 1, 1), date(9999, 12, 31)),
    ('quote " comma , newline \n ü €', 0, -0.0, True, None, None),
]


def test_values_nulls_and_types_arrive_as_postgresql_holds_them(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database(f"pull_{uuid.uuid4().hex[:10]}")
    with connect(postgres_server, database) as pg, duckdb.connect() as scratch:
        pg.execute(
            "CREATE TABLE src (s text, n bigint, d double precision, b boolean, t timestamp, day date)"
        )
        with pg.cursor() as cursor, cursor.copy("COPY src FROM STDIN") as copy:
            for row in ROWS:
                copy.write_row(row)
        assert pull(pg, "SELECT * FROM src WHERE s IS DISTINCT FROM %s", ["it's %s"], scratch, "t") == len(
            ROWS
        )
        described = {name: dtype for name, dtype, *_ in scratch.execute("DESCRIBE t").fetchall()}
        assert described == {
            "s": "VARCHAR",
            "n": "BIGINT",
            "d": "DOUBLE",
            "b": "BOOLEAN",
            "t": "TIMESTAMP",
            "day": "DATE",
        }
        pulled = scratch.execute("SELECT * FROM t").fetchall()
    assert sorted(map(_comparable, pulled), key=repr) == sorted(map(_comparable, ROWS), key=repr)


def test_a_parameter_is_a_value_never_sql(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database(f"pull_{uuid.uuid4().hex[:10]}")
    with connect(postgres_server, database) as pg, duckdb.connect() as scratch:
        pg.execute("CREATE TABLE src (s text)")
        pg.execute("INSERT INTO src VALUES ('a'), ($$x'); DROP TABLE src; --$$)")
        assert pull(pg, "SELECT s FROM src WHERE s = %s", ["x'); DROP TABLE src; --"], scratch, "t") == 1
        assert pg.execute("SELECT count(*) FROM src").fetchone() == (2,)
        with pytest.raises(psycopg.ProgrammingError, match="placeholder"):
            pull(pg, "SELECT s FROM src WHERE s = %s OR s = %s", ["a"], scratch, "t")


def test_names_holding_a_percent_sign_are_read(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database(f"pull_{uuid.uuid4().hex[:10]}")
    with connect(postgres_server, database) as pg, duckdb.connect() as scratch:
        pg.execute('CREATE TABLE "a%s" ("discount%" double precision, "%s" text)')
        pg.execute("""INSERT INTO "a%s" VALUES (0.5, 'x')""")
        assert pull(pg, 'SELECT "discount%", "%s" FROM "a%s"', [], scratch, "plain") == 1
        assert (
            pull(pg, 'SELECT "discount%%", "%%s" FROM "a%%s" WHERE "%%s" = %s', ["x"], scratch, "bound") == 1
        )
        assert (
            scratch.execute("SELECT * FROM plain").fetchall()
            == scratch.execute("SELECT * FROM bound").fetchall()
            == [(0.5, "x")]
        )


def _comparable(row: tuple[object, ...]) -> tuple[object, ...]:
    return tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row)


# ------------------------------------------------------------------------------------ pull_table
LONG_TABLE = "execution_context$discount%$" + "priceBreaks" * 5  # over 63 bytes, with a %
LONG_COMMENT = "reviewerComment" + "WrittenInFull" * 5
LONG_DISCOUNT = "discount%" + "WeightedByVolume" * 4
PERCENT_TABLE = "rates%s"  # fits, with a % that reads as a placeholder
TABLES = {
    LONG_TABLE: {
        "id": "VARCHAR", LONG_COMMENT: "VARCHAR", LONG_DISCOUNT: "DOUBLE", "%s": "VARCHAR", "n": "BIGINT",
        "at": "TIMESTAMP", "day": "DATE", "ok": "BOOLEAN",
    },
    PERCENT_TABLE: {"id": "VARCHAR", "discount%": "DOUBLE", "%s": "VARCHAR", "n": "BIGINT"},
}  # fmt: skip
LONG_ROWS = [
    ("a", "plain", 1.5, "x", 1, datetime(2024, 1, 2, 3, 4, 5, 123456), date(2024, 1, 2), True),
    ("b", "", float("nan"), "", None, None, None, False),
    ("c", None, float("inf"), None, -(2**62), datetime(1, 1, 1), date(9999, 12, 31), None),
    ("d", 'quote " comma , newline \n ü € %s %%', -0.0, "%", 0, None, None, True),
]
PERCENT_ROWS = [("a", 0.5, "x", 1), ("b", None, "", 2), ("c", -1.0, None, None)]


@dataclass(frozen=True)
class Twin:
    """A DuckDB warehouse of :data:`TABLES` (registered in its catalog) and its PostgreSQL copy."""

    duck: duckdb.DuckDBPyConnection
    pg: psycopg.Connection[Any]
    server: PostgresServer
    database: str


@pytest.fixture
def twin(postgres_server: PostgresServer) -> Iterator[Twin]:
    with duckdb.connect() as duck:
        ensure_bookkeeping(duck)
        for table, columns in TABLES.items():
            duck.execute(
                f"CREATE TABLE {quote_ident(table)} ({', '.join(f'{quote_ident(c)} {t}' for c, t in columns.items())})"
            )
            duck.execute(
                f"INSERT INTO {TABLES_TABLE} (table_name, family) VALUES (?, 'execution_context')", [table]
            )
            for column, dtype in columns.items():
                duck.execute(
                    f"INSERT INTO {COLUMNS_TABLE} (table_name, column_name, data_type) VALUES (?, ?, ?)",
                    [table, column, dtype],
                )
        for table, rows in ((LONG_TABLE, LONG_ROWS), (PERCENT_TABLE, PERCENT_ROWS)):
            for row in rows:
                duck.execute(
                    f"INSERT INTO {quote_ident(table)} VALUES ({', '.join('?' for _ in row)})", list(row)
                )
        s = postgres_server
        database = s.create_database(f"pull_{uuid.uuid4().hex[:10]}")
        copy_warehouse(duck, PostgresUrl(s.host, s.port, s.user, database, Secret(s.password)))
        with connect(s, database) as pg:
            yield Twin(duck, pg, s, database)


def _described(conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [
        (str(name), str(dtype))
        for name, dtype, *_ in conn.execute(f"DESCRIBE {quote_ident(table)}").fetchall()
    ]


def _rows(conn: duckdb.DuckDBPyConnection, query: str) -> list[tuple[object, ...]]:
    return sorted(map(_comparable, conn.execute(query).fetchall()), key=repr)


def test_the_twin_holds_long_and_percent_names_under_other_names(twin: Twin) -> None:
    """What the other tests rely on: PostgreSQL holds the long names under short forms with a %."""
    physical = physical_table_name(twin.pg, LONG_TABLE)
    columns = postgres_columns(twin.pg, LONG_TABLE)
    assert physical != LONG_TABLE
    assert "%" in physical
    assert list(columns) == list(TABLES[LONG_TABLE])
    assert columns[LONG_COMMENT] != LONG_COMMENT
    assert columns[LONG_DISCOUNT] != LONG_DISCOUNT
    assert "%" in columns[LONG_DISCOUNT]


@pytest.mark.parametrize("bound", [False, True], ids=["without-params", "with-params"])
@pytest.mark.parametrize("table", list(TABLES))
def test_a_table_arrives_as_duckdb_holds_it(twin: Twin, table: str, bound: bool) -> None:
    """Every column under the model's names, in the table's order, with DuckDB's types, NULLs,
    empty strings and values, whether pull binds parameters (and reads a name's % as psycopg does)
    or not."""
    condition, params = ("WHERE id IS DISTINCT FROM %s", ["no such id"]) if bound else ("", [])
    with duckdb.connect() as scratch:
        assert pull_table(twin.pg, scratch, table, condition=condition, params=params)
        assert _described(scratch, table) == _described(twin.duck, table)
        query = f"SELECT * FROM {quote_ident(table)}"
        assert _rows(scratch, query) == _rows(twin.duck, query)


@pytest.mark.parametrize("table", list(TABLES))
def test_a_column_subset_of_the_rows_a_condition_keeps_into_another_name(twin: Twin, table: str) -> None:
    """Only the asked columns the table has, in the table's order (not the order asked), of the
    rows the condition keeps; its % placeholders bound, a % of its own written %%."""
    asked = ["n", "%s", "no_such_column", "id"] + ([LONG_DISCOUNT] if table == LONG_TABLE else [])
    kept = [column for column in TABLES[table] if column in asked]
    pct = quote_ident(postgres_columns(twin.pg, table)["%s"]).replace("%", "%%")
    condition = f"WHERE (n >= %s OR n IS NULL) AND {pct} IS DISTINCT FROM %s"
    with duckdb.connect() as scratch:
        assert pull_table(twin.pg, scratch, table, asked, condition, [1, "x"], into="subset")
        assert [name for name, _ in _described(scratch, "subset")] == kept
        assert scratch.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
        ).fetchone() == (0,)
        selected = ", ".join(map(quote_ident, kept))
        expected = _rows(
            twin.duck,
            f"SELECT {selected} FROM {quote_ident(table)} WHERE (n >= 1 OR n IS NULL) AND \"%s\" IS DISTINCT FROM 'x'",
        )
        assert _rows(scratch, "SELECT * FROM subset") == expected
        assert 0 < len(expected) < len(twin.duck.execute(f"SELECT * FROM {quote_ident(table)}").fetchall())


def test_a_missing_table_or_none_of_its_columns_is_false_and_no_table(
    twin: Twin, postgres_server: PostgresServer
) -> None:
    with duckdb.connect() as scratch:
        assert not pull_table(twin.pg, scratch, "no_such_table")
        assert not pull_table(twin.pg, scratch, LONG_TABLE, ["no_such_column"], "WHERE n = %s", [1])
        assert not pull_table(twin.pg, scratch, LONG_TABLE, [], into="nothing")
        assert scratch.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)
    database = postgres_server.create_database(f"pull_{uuid.uuid4().hex[:10]}")
    with connect(postgres_server, database) as pg, duckdb.connect() as scratch:
        assert not pull_table(pg, scratch, "plain")  # no catalog either
        pg.execute('CREATE TABLE plain (s text, "a%" bigint)')
        pg.execute("INSERT INTO plain VALUES ('x', 1), ('', NULL)")
        assert pull_table(pg, scratch, "plain", condition='WHERE "a%%" = %s OR s = %s', params=[1, ""])
        assert _described(scratch, "plain") == [("s", "VARCHAR"), ("a%", "BIGINT")]
        assert _rows(scratch, "SELECT * FROM plain") == [("", None), ("x", 1)]


def test_a_table_pulled_again_after_another_run_changed_it_has_its_new_columns(twin: Twin) -> None:
    """psycopg prepares a query it has run five times, and a prepared query whose table another
    connection changed fails: a table's description is never prepared."""
    with duckdb.connect() as scratch, connect(twin.server, twin.database) as other:
        for _ in range(6):
            assert pull_table(twin.pg, scratch, PERCENT_TABLE, ["n"])
        other.execute(f"ALTER TABLE {quote_ident(PERCENT_TABLE)} ALTER COLUMN n TYPE text")
        assert pull_table(twin.pg, scratch, PERCENT_TABLE, ["n"])
        assert _described(scratch, PERCENT_TABLE) == [("n", "VARCHAR")]


# ---------------------------------------------------------------------------------- one_snapshot
def test_one_snapshot_reads_at_one_instant_or_in_the_callers_transaction(
    postgres_server: PostgresServer,
) -> None:
    """Outside a transaction: REPEATABLE READ and read only, so a row another connection commits
    meanwhile is not seen; inside the caller's transaction: that transaction, its own writes seen."""
    database = postgres_server.create_database(f"pull_{uuid.uuid4().hex[:10]}")
    with connect(postgres_server, database) as pg, connect(postgres_server, database) as other:
        pg.execute("CREATE TABLE t (n bigint)")
        with one_snapshot(pg):
            assert pg.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
            assert pg.execute("SHOW transaction_read_only").fetchone() == ("on",)
            assert pg.execute("SELECT count(*) FROM t").fetchone() == (0,)
            other.execute("INSERT INTO t VALUES (1)")
            assert pg.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert pg.execute("SELECT count(*) FROM t").fetchone() == (1,)
        with pg.transaction():
            pg.execute("INSERT INTO t VALUES (2)")
            with one_snapshot(pg):
                assert pg.execute("SHOW transaction_isolation").fetchone() == ("read committed",)
                assert pg.execute("SELECT count(*) FROM t").fetchone() == (2,)
        assert pg.execute("SELECT count(*) FROM t").fetchone() == (2,)
