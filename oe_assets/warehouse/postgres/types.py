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
