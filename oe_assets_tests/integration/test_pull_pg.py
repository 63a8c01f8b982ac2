"""A PostgreSQL query's rows pulled into DuckDB keep their values and types exactly."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime

import duckdb
import psycopg
import pytest

from oe_assets.warehouse.postgres.pull import pull
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
