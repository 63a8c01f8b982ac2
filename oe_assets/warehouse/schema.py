"""Schema evolution in DuckDB: bookkeeping tables, new tables and columns, type widening.

Columns are never dropped and values never lost: a column whose type no longer fits is
widened (``BIGINT -> DOUBLE``; anything else -> ``VARCHAR``, existing values kept as text),
or the batch is cast to the column's type when that is lossless (``BIGINT`` into ``DOUBLE``,
anything into ``VARCHAR``). Text of a TIMESTAMP is ISO-8601 UTC (``2023-10-16T10:13:42.322Z``,
microseconds only when present), like the JSON it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from oe_assets.warehouse.sql import quote_ident

TABLES_TABLE = "_oe_tables"
COLUMNS_TABLE = "_oe_columns"
QUARANTINE_TABLE = "_oe_quarantine"

BOOKKEEPING_DDL: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (
        table_name VARCHAR PRIMARY KEY,
        family VARCHAR,
        parent_table VARCHAR,
        json_path JSON,
        first_seen TIMESTAMP
    )""",
    f"""CREATE TABLE IF NOT EXISTS {COLUMNS_TABLE} (
        table_name VARCHAR,
        column_name VARCHAR,
        json_path JSON,
        data_type VARCHAR,
        first_seen TIMESTAMP,
        PRIMARY KEY (table_name, column_name)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (
        family VARCHAR,
        partition_key VARCHAR,
        record_key VARCHAR,
        reason VARCHAR,
        document VARCHAR,
        quarantined_at TIMESTAMP
    )""",
)
"""``_oe_columns.data_type`` is the column's DuckDB type, or NULL while only NULLs have been
written to it (it is then created as VARCHAR and gets its real type with its first value)."""

VARCHAR = "VARCHAR"
BIGINT = "BIGINT"
DOUBLE = "DOUBLE"
TIMESTAMP = "TIMESTAMP"

_ARROW_TO_DUCKDB: dict[pa.DataType, str] = {
    pa.string(): VARCHAR,
    pa.large_string(): VARCHAR,
    pa.string_view(): VARCHAR,
    pa.int64(): BIGINT,
    pa.int32(): "INTEGER",
    pa.int16(): "SMALLINT",
    pa.int8(): "TINYINT",
    pa.float64(): DOUBLE,
    pa.float32(): "FLOAT",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us"): TIMESTAMP,
    pa.timestamp("ms"): TIMESTAMP,
    pa.timestamp("s"): TIMESTAMP,
    pa.timestamp("ns"): "TIMESTAMP_NS",
    pa.date32(): "DATE",
}


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """A column whose type was changed in the warehouse (``old_type`` ``NULL``: it had only NULLs)."""

    table: str
    column: str
    old_type: str
    new_type: str


def ensure_bookkeeping(conn: duckdb.DuckDBPyConnection) -> None:
    for ddl in BOOKKEEPING_DDL:
        conn.execute(ddl)


def bookkeeping_exists(conn: duckdb.DuckDBPyConnection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name IN (?, ?)",
        [TABLES_TABLE, COLUMNS_TABLE],
    ).fetchone()
    return row is not None and row[0] == 2


def duckdb_type(arrow_type: pa.DataType) -> str | None:
    """The DuckDB type of an arrow column; ``None`` for a NULL-typed column."""
    if arrow_type == pa.null():
        return None
    known = _ARROW_TO_DUCKDB.get(arrow_type)
    if known is not None:
        return known
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP WITH TIME ZONE"
    return None


def is_typeless(column: pa.ChunkedArray | pa.Array) -> bool:
    """A column that holds only NULLs (at least one row): it says nothing about its type."""
    return column.type == pa.null() or (len(column) > 0 and column.null_count == len(column))


def all_table_columns(conn: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """Table -> column name -> DuckDB type for every table of the current schema, in one query."""
    rows = conn.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = current_schema() ORDER BY table_name, column_index"
    ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, name, dtype in rows:
        tables.setdefault(table, {})[name] = dtype
    return tables


def table_columns(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
    """Column name -> DuckDB type of ``table`` in the current schema, or None if it does not exist."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    if rows:
        return {name: dtype for name, dtype in rows}
    exists = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ?",
        [table],
    ).fetchone()
    return {} if exists and exists[0] else None


def widened_type(old: str, new: str) -> str:
    """The narrowest type both ``old`` and ``new`` values fit in without loss of information."""
    if old == new:
        return old
    if {old, new} == {BIGINT, DOUBLE}:
        return DOUBLE
    return VARCHAR


def text_expr(column_sql: str, from_type: str) -> str:
    """SQL turning a column of ``from_type`` into VARCHAR (timestamps as ISO-8601 UTC)."""
    if from_type == TIMESTAMP:
        return (
            f"CASE WHEN microsecond({column_sql}) % 1000 = 0 "
            f"THEN strftime({column_sql}, '%Y-%m-%dT%H:%M:%S.%gZ') "
            f"ELSE strftime({column_sql}, '%Y-%m-%dT%H:%M:%S.%fZ') END"
        )
    return f"CAST({column_sql} AS VARCHAR)"


def cast_expr(column_sql: str, from_type: str | None, to_type: str) -> str:
    """SQL turning a column of ``from_type`` (None: only NULLs) into ``to_type``."""
    if from_type == to_type:
        return column_sql
    if to_type == VARCHAR and from_type is not None:
        return text_expr(column_sql, from_type)
    return f"CAST({column_sql} AS {to_type})"


def create_table(conn: duckdb.DuckDBPyConnection, table: str, columns: list[tuple[str, str, bool]]) -> None:
    """``CREATE TABLE`` with ``(name, type, not_null)`` columns (no PRIMARY KEY constraints)."""
    cols = ", ".join(f"{quote_ident(n)} {t}{' NOT NULL' if nn else ''}" for n, t, nn in columns)
    conn.execute(f"CREATE TABLE {quote_ident(table)} ({cols})")


def add_column(conn: duckdb.DuckDBPyConnection, table: str, column: str, dtype: str) -> None:
    conn.execute(f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(column)} {dtype}")


def alter_column_type(
    conn: duckdb.DuckDBPyConnection, table: str, column: str, old_type: str, new_type: str
) -> None:
    """Changes a column's type, converting the existing values (to text for VARCHAR)."""
    col = quote_ident(column)
    using = cast_expr(col, old_type, new_type)
    conn.execute(
        f"ALTER TABLE {quote_ident(table)} ALTER COLUMN {col} SET DATA TYPE {new_type} USING {using}"
    )
