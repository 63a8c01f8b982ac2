"""A DuckDB warehouse and a PostgreSQL database given the same writes, compared table by table.

Values are compared in one form (:func:`normal`): numbers as floats, NaN equal to NaN, dates and
times as Python objects (both drivers give them), nested values as their JSON text. A table is
found in PostgreSQL under its ``physical_name`` when the catalog gives one.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg

from oe_assets.warehouse.postgres.catalog import physical_table_name, postgres_columns
from oe_assets.warehouse.postgres.pull import pull_table
from oe_assets.warehouse.sql import quote_ident
from oe_assets_tests.support.postgres import PostgresServer


def normal(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _rows(columns: list[str], rows: list[tuple[Any, ...]]) -> list[tuple[tuple[str, Any], ...]]:
    return sorted((tuple(zip(columns, map(normal, row), strict=True)) for row in rows), key=repr)


def duckdb_table(conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple[tuple[str, Any], ...]]:
    """The table's rows as sorted (column, value) tuples."""
    cursor = conn.execute(f"SELECT * FROM {quote_ident(table)}")
    return _rows([d[0] for d in cursor.description], cursor.fetchall())


def postgres_table(pg: psycopg.Connection[Any], table: str) -> list[tuple[tuple[str, Any], ...]]:
    """The table's rows as :func:`duckdb_table` gives DuckDB's, under the catalog's column names."""
    physical, columns = physical_names(pg, table)
    cursor = pg.execute(f"SELECT * FROM {quote_ident(physical)}")
    assert cursor.description is not None
    names = [columns.get(d.name, d.name) for d in cursor.description]
    return _rows(names, cursor.fetchall())


def physical_names(pg: psycopg.Connection[Any], table: str) -> tuple[str, dict[str, str]]:
    """The table's name in PostgreSQL, and its columns' (PostgreSQL name -> warehouse name)."""
    columns = postgres_columns(pg, table)
    return physical_table_name(pg, table), {physical: column for column, physical in columns.items()}


def connect(server: PostgresServer, database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=server.host, port=server.port, user=server.user, password=server.password, dbname=database,
        autocommit=True,
    )  # fmt: skip


def differing_tables(
    duck: duckdb.DuckDBPyConnection, pg: psycopg.Connection[Any], tables: list[str]
) -> dict[str, str]:
    """The ``tables`` whose rows differ, each with a short account of how."""
    differing = {}
    for table in tables:
        left, right = duckdb_table(duck, table), postgres_table(pg, table)
        if left != right:
            only_duck = [r for r in left if r not in right][:2]
            only_pg = [r for r in right if r not in left][:2]
            differing[table] = (
                f"{len(left)} vs {len(right)} rows; DuckDB only {only_duck}; PostgreSQL only {only_pg}"
            )
    return differing


def postgres_as_duckdb(pg: psycopg.Connection[Any], path: Path) -> Path:
    """Every table of the PostgreSQL warehouse into a new DuckDB file under the model's table and
    column names: the DuckDB-based checks of the tests (``compare_with_simulator``, snapshots) then
    read what PostgreSQL holds."""
    path.unlink(missing_ok=True)
    tables = [
        str(t)
        for (t,) in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    ]
    logical = (
        {str(p): str(t) for t, p in pg.execute("SELECT table_name, physical_name FROM _oe_tables").fetchall()}
        if "_oe_tables" in tables
        else {}
    )
    with duckdb.connect(str(path)) as scratch:
        for physical in tables:
            pull_table(pg, scratch, logical.get(physical, physical))
    return path
