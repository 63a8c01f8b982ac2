"""Column types of the stand-in's pool: Celonis' push ``ColumnType``, their DuckDB and Arrow forms, and casts.

Celonis keeps strings as VARCHAR of a fixed length (80 characters unless a column config says otherwise)
and cuts longer values; DuckDB ignores VARCHAR lengths, so the stand-in keeps each column's length itself
and cuts values with Arrow before they reach DuckDB. Which Parquet types may land in which column type
is a stand-in choice (undocumented by Celonis): lossless or parse-from-string casts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

COLUMN_TYPES = ("INTEGER", "DATE", "TIME", "DATETIME", "FLOAT", "BOOLEAN", "STRING")
DEFAULT_STRING_LENGTH = 80
MAX_STRING_LENGTH = 65000
CHANGE_DATE_COLUMN = "_CELONIS_CHANGE_DATE"

DUCKDB_TYPES = {
    "INTEGER": "BIGINT",
    "FLOAT": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIME": "TIME",
    "DATETIME": "TIMESTAMP",
    "STRING": "VARCHAR",
}
ARROW_TYPES: dict[str, pa.DataType] = {
    "INTEGER": pa.int64(),
    "FLOAT": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
    "DATETIME": pa.timestamp("us"),
    "STRING": pa.string(),
}
# the integration API reports PoolColumnType (4 values); the mapping of the other 3 is a stand-in choice
POOL_COLUMN_TYPES = {
    "INTEGER": "INTEGER",
    "FLOAT": "FLOAT",
    "BOOLEAN": "INTEGER",
    "DATE": "DATE",
    "DATETIME": "DATE",
    "TIME": "STRING",
    "STRING": "STRING",
}
# which source type (as a ColumnType, None = all-null) may be written into which column type
_CASTABLE: dict[str | None, frozenset[str]] = {
    "INTEGER": frozenset({"INTEGER", "FLOAT", "STRING"}),
    "FLOAT": frozenset({"FLOAT", "INTEGER", "STRING"}),
    "BOOLEAN": frozenset({"BOOLEAN", "INTEGER", "STRING"}),
    "DATE": frozenset({"DATE", "DATETIME", "STRING"}),
    "DATETIME": frozenset({"DATETIME", "DATE", "STRING"}),
    "TIME": frozenset({"TIME", "STRING"}),
    "STRING": frozenset(COLUMN_TYPES),
    None: frozenset(COLUMN_TYPES),
}


class ApplyError(Exception):
    """A push job cannot be applied; the message becomes the job's log line."""


class SchemaError(ValueError):
    """A declared ``tableSchema`` is invalid; the message is the 400's ``errorInformation``."""


@dataclass(frozen=True, slots=True)
class Column:
    """One pool column: its name, its Celonis ColumnType and (strings only) its length in characters."""

    name: str
    ctype: str
    length: int | None = None

    def ddl(self) -> str:
        """The DuckDB type (VARCHAR(n) for strings: DuckDB ignores n, the stand-in enforces it)."""
        if self.ctype == "STRING" and self.length:
            return f"VARCHAR({self.length})"
        return DUCKDB_TYPES[self.ctype]


def quote_ident(name: str) -> str:
    """A DuckDB identifier for any name (``$``, ``&``, dots, quotes, non-ASCII)."""
    return '"' + name.replace('"', '""') + '"'


def parse_table_schema(raw: Any, fallback_length: int) -> list[Column]:
    """The columns of a job's ``tableSchema``; SchemaError names the first bad column."""
    if raw is None:
        return []
    if not isinstance(raw, dict) or not isinstance(raw.get("columns", []), list):
        raise SchemaError("tableSchema must be an object with a columns array")
    columns: list[Column] = []
    seen: set[str] = set()
    for entry in raw.get("columns") or []:
        name = entry.get("columnName") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise SchemaError("every column needs a columnName")
        if name.lower() in seen:
            raise SchemaError(f"{name}: declared twice")
        seen.add(name.lower())
        ctype = entry.get("columnType")
        if ctype not in COLUMN_TYPES:
            raise SchemaError(f"{name}: unsupported column type {ctype}")
        length = entry.get("fieldLength")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise SchemaError(f"{name}: fieldLength must be a positive integer")
        length = min(length or fallback_length, MAX_STRING_LENGTH) if ctype == "STRING" else None
        columns.append(Column(name, ctype, length))
    return columns


def source_type(name: str, arrow_type: pa.DataType) -> str | None:
    """The ColumnType a Parquet column's type stands for (None for an all-null column).

    ApplyError for what Celonis does not ingest: DECIMAL (per the Kafka connector's docs) and nested or
    binary types (stand-in choice)."""
    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_decimal(t):
        raise ApplyError(f"Column {name}: DECIMAL is not supported")
    checks = (
        (pa.types.is_null, None),
        (pa.types.is_boolean, "BOOLEAN"),
        (pa.types.is_integer, "INTEGER"),
        (pa.types.is_floating, "FLOAT"),
        (pa.types.is_date, "DATE"),
        (pa.types.is_time, "TIME"),
        (pa.types.is_timestamp, "DATETIME"),
        (lambda x: pa.types.is_string(x) or pa.types.is_large_string(x), "STRING"),
    )
    for check, ctype in checks:
        if check(t):
            return ctype
    if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t):
        return "STRING"
    raise ApplyError(f"Column {name}: Parquet type {t} is not supported")


def cast_column(values: pa.ChunkedArray, column: Column, table: str) -> pa.ChunkedArray:
    """``values`` as the column's Arrow type, strings cut to the column's length.

    ApplyError naming table and column when the Parquet type does not fit the column or a value cannot
    be converted (a string that is no number, a fraction into an INTEGER column, ...)."""
    src = source_type(column.name, values.type)
    if column.ctype not in _CASTABLE[src]:
        raise ApplyError(
            f"Table {table}, column {column.name}: Parquet type {values.type} cannot be written "
            f"into a {column.ctype} column"
        )
    target = ARROW_TYPES[column.ctype]
    try:
        if pa.types.is_timestamp(values.type) and values.type.tz is not None:
            values = pc.cast(values, pa.timestamp("us", tz="UTC"))  # the stored instant is UTC
            values = values.cast(pa.timestamp("us", tz=None), safe=False)
        elif src == "STRING" and column.ctype == "DATETIME":
            values = _parse_datetimes(values)
        values = pc.cast(values, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ApplyError(
            f"Table {table}, column {column.name}: values of Parquet type {values.type} cannot be "
            f"converted to {column.ctype} ({_first_line(exc)})"
        ) from None
    if column.ctype == "STRING" and column.length:
        values = pc.utf8_slice_codeunits(values, 0, column.length)
    return values


def _parse_datetimes(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Strings as timestamps: without an offset as UTC wall time, else converted to UTC."""
    try:
        return pc.cast(values, pa.timestamp("us"))
    except pa.ArrowInvalid:
        aware = pc.cast(values, pa.timestamp("us", tz="UTC"))
        return aware.cast(pa.timestamp("us", tz=None), safe=False)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
