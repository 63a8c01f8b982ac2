"""How a warehouse column travels to Celonis: its Celonis column type, the SQL that writes it to
Parquet, and its declared string length.

Celonis cuts an undeclared string at 80 characters and does not ingest DECIMAL, so every column
is declared (``tableSchema``) and converted here, in one place: integers as INTEGER, every other
number as FLOAT (a DOUBLE in Parquet), times with a zone as DATETIME in UTC, nested values as
their text. A string column is declared at least as long as its longest value (bytes, as
Celonis counts its VARCHAR), rounded up so that a slightly longer value later needs no change
of the table; it never shrinks below what an earlier push declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb

from oe_assets.celonis.errors import CelonisError
from oe_assets.flatten.naming import LOADED_AT
from oe_assets.warehouse.sql import quote_ident

MAX_STRING_BYTES = 65000
"""The longest VARCHAR Celonis holds."""
MIN_STRING_LENGTH = 80
NOT_DELIVERED = frozenset({LOADED_AT})
"""When the warehouse last wrote a row: it changes on every rewrite of an unchanged row (which would
make every push resend everything), and Celonis stamps its own ``_CELONIS_CHANGE_DATE``."""
_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
_FLOATS = {"FLOAT", "DOUBLE", "REAL", "UBIGINT", "HUGEINT", "UHUGEINT"}
PARQUET_TYPES = {
    "INTEGER": "BIGINT",
    "FLOAT": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIME": "TIME",
    "DATETIME": "TIMESTAMP",
    "STRING": "VARCHAR",
}
"""The DuckDB type each Celonis column type is written as (and a delete file's keys are read back as)."""


@dataclass(frozen=True)
class PushColumn:
    name: str
    celonis_type: str  # INTEGER, FLOAT, BOOLEAN, DATE, TIME, DATETIME or STRING
    select_sql: str  # the expression that writes this column to Parquet
    field_length: int | None = None  # STRING only

    def declared(self) -> dict[str, object]:
        column: dict[str, object] = {"columnName": self.name, "columnType": self.celonis_type}
        if self.field_length is not None:
            column["fieldLength"] = self.field_length
        return column


def celonis_type(duckdb_type: str) -> str:
    """The Celonis column type of a DuckDB column type."""
    base = duckdb_type.upper().split("(", 1)[0].strip()
    if base in _INTEGERS:
        return "INTEGER"
    if base in _FLOATS or base == "DECIMAL":
        return "FLOAT"
    if base == "BOOLEAN":
        return "BOOLEAN"
    if base == "DATE":
        return "DATE"
    if base == "TIME":
        return "TIME"
    if base.startswith("TIMESTAMP"):
        return "DATETIME"
    return "STRING"


def select_sql(name: str, duckdb_type: str) -> str:
    """The column converted to what its Celonis type is written as in Parquet."""
    column = quote_ident(name)
    kind = celonis_type(duckdb_type)
    if duckdb_type.upper() in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return f"timezone('UTC', {column})"
    return f"CAST({column} AS {PARQUET_TYPES[kind]})"


def push_columns(
    conn: duckdb.DuckDBPyConnection, table: str, declared_before: Mapping[str, int] | None = None
) -> list[PushColumn]:
    """Every column of ``table`` (but :data:`NOT_DELIVERED`), typed for Celonis, strings with the
    length their values need."""
    described = conn.execute(f"DESCRIBE {quote_ident(table)}").fetchall()
    columns = [(str(row[0]), str(row[1])) for row in described if str(row[0]) not in NOT_DELIVERED]
    lengths = _string_bytes(conn, table, [(n, t) for n, t in columns if celonis_type(t) == "STRING"])
    before = declared_before or {}
    return [
        PushColumn(
            name,
            celonis_type(kind),
            select_sql(name, kind),
            _declared_length(table, name, lengths[name], before.get(name)) if name in lengths else None,
        )
        for name, kind in columns
    ]


def _string_bytes(
    conn: duckdb.DuckDBPyConnection, table: str, columns: list[tuple[str, str]]
) -> dict[str, int]:
    if not columns:
        return {}
    measures = ", ".join(f"coalesce(max(strlen({select_sql(n, t)})), 0)" for n, t in columns)
    row = conn.execute(f"SELECT {measures} FROM {quote_ident(table)}").fetchone() or ()
    return {name: int(value) for (name, _), value in zip(columns, row, strict=True)}


def _declared_length(table: str, column: str, longest: int, before: int | None) -> int:
    if longest > MAX_STRING_BYTES:
        raise CelonisError(
            f"Table {table}, column {column}: a value is {longest:,} bytes long; Celonis holds at most "
            f"{MAX_STRING_BYTES:,} bytes in a column, so it would arrive cut. Nothing of {table} was pushed."
        )
    length = MIN_STRING_LENGTH
    while length < longest:
        length *= 2
    return max(min(length, MAX_STRING_BYTES), before or 0)
