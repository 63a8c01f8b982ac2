"""Copy the whole warehouse into a PostgreSQL schema, in one transaction (`oe-assets warehouse copy`).

Every table is written in bulk: DuckDB writes it as CSV, which PostgreSQL's ``COPY ... FROM STDIN``
reads, never a row at a time. Either every table of the copy is there, or the schema is as it was:
a failed copy rolls back, a re-run replaces the previous copy, and tables the previous copy made
that the warehouse no longer has are dropped. Two copies into one schema wait for each other (an
advisory lock, held until the transaction ends, on any machine). ``_oe_tables`` and ``_oe_columns``
get a ``physical_name`` column: the table's or column's name in PostgreSQL, which differs from the
Celonis name only where that is longer than PostgreSQL's 63 bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from oe_assets.warehouse.postgres.connect import PgConnection, PostgresWarehouseError, connected, copy_in
from oe_assets.warehouse.postgres.names import physical_names
from oe_assets.warehouse.postgres.types import ColumnTransfer, column_transfer
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets.warehouse.schema import COLUMNS_TABLE, TABLES_TABLE
from oe_assets.warehouse.sql import quote_ident

_TABLE_NAMES = "_oe_copy_table_names"
_COLUMN_NAMES = "_oe_copy_column_names"


WarehouseCopyError = PostgresWarehouseError
"""The copy could not be made; the message is one sentence naming the target or the table."""


@dataclass(frozen=True)
class TableTransfer:
    name: str
    physical_name: str
    columns: list[ColumnTransfer]


@dataclass
class CopyReport:
    target: str
    """the target without its password"""
    schema: str
    rows: dict[str, int] = field(default_factory=dict)
    """rows copied per table (warehouse name)"""
    physical_names: dict[str, str] = field(default_factory=dict)
    """the tables whose name in PostgreSQL differs: warehouse name -> PostgreSQL name"""
    dropped: list[str] = field(default_factory=list)
    """tables of the previous copy the warehouse no longer has"""
    seconds: float = 0.0


def copy_warehouse(
    source: duckdb.DuckDBPyConnection, target: PostgresUrl, *, schema: str = "public", setting: str = "--to"
) -> CopyReport:
    """Copies every table of ``source`` into ``schema`` of ``target`` (see the module's doc)."""
    started = time.monotonic()
    tables = plan_tables(source)
    report = CopyReport(target=target.shown, schema=schema)
    _register_names(source, tables)
    try:
        with connected(target, setting) as conn, conn.transaction():
            _prepare_schema(conn, schema)
            report.dropped = _drop_vanished(conn, schema, {t.physical_name for t in tables})
            for table in tables:
                report.rows[table.name] = _copy_table(source, conn, schema, table)
    finally:
        for name in (_TABLE_NAMES, _COLUMN_NAMES):
            source.unregister(name)
    report.physical_names = {t.name: t.physical_name for t in tables if t.name != t.physical_name}
    report.seconds = time.monotonic() - started
    return report


def plan_tables(source: duckdb.DuckDBPyConnection) -> list[TableTransfer]:
    """Every base table of the warehouse with its columns, named for PostgreSQL."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in source.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'main' AND t.table_type = 'BASE TABLE' "
        "ORDER BY c.table_name, c.ordinal_position"
    ).fetchall():
        columns.setdefault(table, []).append((column, dtype))
    table_names = physical_names(columns)
    plans = []
    for table, cols in columns.items():
        column_names = physical_names(name for name, _ in cols)
        transfers = [column_transfer(table, name, column_names[name], dtype) for name, dtype in cols]
        plans.append(TableTransfer(table, table_names[table], transfers))
    return plans


def _register_names(source: duckdb.DuckDBPyConnection, tables: list[TableTransfer]) -> None:
    """The physical names as two relations the catalog tables' copies join (see :func:`_select`)."""
    source.register(
        _TABLE_NAMES,
        pa.table({"name": [t.name for t in tables], "physical_name": [t.physical_name for t in tables]}),
    )
    source.register(
        _COLUMN_NAMES,
        pa.table(
            {
                "table_name": [t.name for t in tables for _ in t.columns],
                "column_name": [c.name for t in tables for c in t.columns],
                "physical_name": [c.physical_name for t in tables for c in t.columns],
            }
        ),
    )


def _prepare_schema(conn: PgConnection, schema: str) -> None:
    """Waits for any other copy into ``schema`` (until this transaction ends), then makes sure it exists."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"oe_assets.warehouse_copy.{schema}"])
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")


def _drop_vanished(conn: PgConnection, schema: str, keeping: set[str]) -> list[str]:
    """Drops the tables the previous copy registered that this copy does not write."""
    registered = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name = 'physical_name'",
        [schema, TABLES_TABLE],
    ).fetchone()
    if registered is None:
        return []
    previous = conn.execute(
        f"SELECT physical_name FROM {quote_ident(schema)}.{quote_ident(TABLES_TABLE)}"
    ).fetchall()
    vanished = sorted({str(name) for (name,) in previous if name and name not in keeping})
    for name in vanished:
        conn.execute(f"DROP TABLE IF EXISTS {quote_ident(schema)}.{quote_ident(name)}")
    return vanished


def _copy_table(
    source: duckdb.DuckDBPyConnection,
    conn: PgConnection,
    schema: str,
    table: TableTransfer,
) -> int:
    """Recreates ``table`` in PostgreSQL and fills it with COPY; returns the rows copied."""
    target = f"{quote_ident(schema)}.{quote_ident(table.physical_name)}"
    columns = [*table.columns, *_physical_name_column(table)]
    conn.execute(f"DROP TABLE IF EXISTS {target}")
    definition = ", ".join(f"{quote_ident(c.physical_name)} {c.postgres_type}" for c in columns)
    conn.execute(f"CREATE TABLE {target} ({definition})")
    names = ", ".join(quote_ident(c.physical_name) for c in columns)
    copied = copy_in(source, _select(table), conn, f"{target} ({names})", table.name)
    counted = source.execute(f"SELECT count(*) FROM {quote_ident(table.name)}").fetchone()
    expected = counted[0] if counted else None
    if copied != expected:
        raise WarehouseCopyError(f"{table.name}: {copied} rows arrived of {expected}; nothing was copied")
    return copied


def _physical_name_column(table: TableTransfer) -> list[ColumnTransfer]:
    """The catalog tables' extra column (the select in :func:`_select` fills it)."""
    if table.name in (TABLES_TABLE, COLUMNS_TABLE):
        return [ColumnTransfer("physical_name", "physical_name", "text")]
    return []


def _select(table: TableTransfer) -> str:
    """The DuckDB query that writes ``table``'s rows (the catalog tables joined to their names)."""
    values = ", ".join(c.select("t") for c in table.columns)
    source = f"{quote_ident(table.name)} t"
    if table.name == TABLES_TABLE:
        return f"SELECT {values}, n.physical_name FROM {source} LEFT JOIN {_TABLE_NAMES} n ON n.name = t.table_name"
    if table.name == COLUMNS_TABLE:
        return (
            f"SELECT {values}, n.physical_name FROM {source} LEFT JOIN {_COLUMN_NAMES} n "
            "ON n.table_name = t.table_name AND n.column_name = t.column_name"
        )
    return f"SELECT {values} FROM {source}"
