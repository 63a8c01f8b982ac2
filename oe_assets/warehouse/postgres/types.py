"""How a DuckDB column travels to PostgreSQL: its PostgreSQL type, and the SQL that writes it.

Values travel as CSV text, which both sides read and write in the same forms (an unquoted empty
field is NULL, a quoted one an empty string; ``inf`` and ``nan``; ISO times). JSON stays text, so
a raw document arrives with the exact characters the API sent. Nested values arrive as their JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oe_assets.warehouse.sql import quote_ident

_SCALARS = {
    "VARCHAR": "text",
    "JSON": "text",
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20)",
    "HUGEINT": "numeric(39)",
    "UHUGEINT": "numeric(39)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
    "UUID": "uuid",
}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
_NESTED = re.compile(r"(\[\d*\]$|^STRUCT\(|^MAP\(|^UNION\()")


class UnsupportedColumnError(ValueError):
    """A column of a type that has no faithful PostgreSQL form here."""


@dataclass(frozen=True)
class ColumnTransfer:
    name: str
    """the column's name in the warehouse"""
    physical_name: str
    """its name in PostgreSQL"""
    postgres_type: str
    as_json: bool = False
    """a nested value, written as its JSON text"""

    def select(self, alias: str) -> str:
        """The DuckDB expression that writes this column's values from the table ``alias``."""
        column = f"{alias}.{quote_ident(self.name)}"
        return f"CAST(to_json({column}) AS VARCHAR)" if self.as_json else column


def column_transfer(table: str, name: str, physical_name: str, duckdb_type: str) -> ColumnTransfer:
    """How ``table.name`` travels; :class:`UnsupportedColumnError` names it when it cannot."""
    if duckdb_type in _SCALARS:
        return ColumnTransfer(name, physical_name, _SCALARS[duckdb_type])
    decimal = _DECIMAL.match(duckdb_type)
    if decimal:
        return ColumnTransfer(name, physical_name, f"numeric({decimal[1]},{decimal[2]})")
    if _NESTED.search(duckdb_type):
        return ColumnTransfer(name, physical_name, "text", as_json=True)
    raise UnsupportedColumnError(
        f"{table}.{name} is of type {duckdb_type}, which is not copied to PostgreSQL"
    )


_DUCKDB_OF_POSTGRES = {
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "json": "VARCHAR",
    "jsonb": "VARCHAR",
    "boolean": "BOOLEAN",
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double precision": "DOUBLE",
    "date": "DATE",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
}
"""The way back, for the types the warehouse's tables hold: a PostgreSQL column read as the DuckDB
type whose values it holds, so that the writer's rules (which type widens to which) serve both."""


def postgres_type(duckdb_type: str) -> str:
    """The PostgreSQL type a warehouse column of ``duckdb_type`` gets."""
    return _SCALARS[duckdb_type]


def duckdb_type_of(table: str, column: str, postgres_type: str) -> str:
    """The DuckDB type of a PostgreSQL column; :class:`UnsupportedColumnError` names a column whose
    type the warehouse never makes (changed by hand)."""
    known = _DUCKDB_OF_POSTGRES.get(postgres_type)
    if known is None:
        raise UnsupportedColumnError(
            f"{table}.{column} is of type {postgres_type} in PostgreSQL, which the warehouse does not write; "
            "change it back to the type oe_assets gave it"
        )
    return known


def retype_expr(column_sql: str, from_type: str, to_type: str, *, had_values: bool) -> str:
    """PostgreSQL's ``USING`` for a column changing from ``from_type`` to ``to_type`` (DuckDB
    types): the values DuckDB's :func:`~oe_assets.warehouse.schema.cast_expr` would give, so a
    widened column reads the same on both (a TIMESTAMP as ISO-8601 UTC text, milliseconds unless
    the value has microseconds)."""
    target = postgres_type(to_type)
    if not had_values:
        return f"NULL::{target}"
    if to_type == "VARCHAR" and from_type == "TIMESTAMP":
        fraction = f"(extract(microseconds FROM {column_sql})::bigint % 1000 = 0)"
        return (
            f'CASE WHEN {fraction} THEN to_char({column_sql}, \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\') '
            f'ELSE to_char({column_sql}, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') END'
        )
    if to_type == "VARCHAR" and from_type == "DOUBLE":
        return _double_text(f"CAST({column_sql} AS text)")
    return f"CAST({column_sql} AS {target})"


def _double_text(text: str) -> str:
    """DuckDB's text of a DOUBLE (Python's ``repr``) from PostgreSQL's: the same shortest digits,
    but integral values end in ``.0``, values from 1e15 to 1e16 are written out, and ``inf``/``nan``
    are lower case (PostgreSQL: ``1``, ``1e+15``, ``Infinity``)."""
    mantissa = f"replace(split_part({text}, 'e', 1), '-', '')"
    digits = f"replace({mantissa}, '.', '')"
    sign = f"CASE WHEN left({text}, 1) = '-' THEN '-' ELSE '' END"
    written_out = f"{sign} || left(rpad({digits}, 16, '0'), 16) || '.' || coalesce(nullif(substr({digits}, 17), ''), '0')"
    return (
        f"CASE {text} WHEN 'NaN' THEN 'nan' WHEN 'Infinity' THEN 'inf' WHEN '-Infinity' THEN '-inf' ELSE "
        f"CASE WHEN {text} ~ 'e\\+15$' THEN {written_out} "
        f"WHEN {text} ~ '^-?[0-9]+$' THEN {text} || '.0' ELSE {text} END END"
    )
