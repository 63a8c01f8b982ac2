"""Dagster metadata built from the warehouse: row counts, column schemas, markdown summaries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import duckdb

from oe_assets.model.integrity import table_exists
from oe_assets.warehouse import TABLES_TABLE, quote_ident
from oe_assets.warehouse.postgres.catalog import logical_columns, physical_table_name
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.locks import missing_tables
from oe_assets.warehouse.schema import table_columns

OWNERS = ["team:data-engineering"]
"""Who answers for every asset of the project (shown on each asset's page)."""


Warehouse = duckdb.DuckDBPyConnection | PgConnection
"""A connection to either warehouse: the metadata reads the same facts from both."""


def physical_name(conn: Warehouse, table: str) -> str:
    """The table's name in the database: PostgreSQL's short form of a name over 63 bytes, else the name."""
    if isinstance(conn, duckdb.DuckDBPyConnection):
        return table
    return physical_table_name(conn, table)


def has_table(conn: Warehouse, table: str) -> bool:
    if isinstance(conn, duckdb.DuckDBPyConnection):
        return table_exists(conn, table)
    return not missing_tables(conn, [physical_table_name(conn, table)])


def family_tables(conn: Warehouse, family: str) -> list[str]:
    """The tables registered to ``family`` in the catalog (none before its first write)."""
    if not has_table(conn, TABLES_TABLE):
        return []
    placeholder = "?" if isinstance(conn, duckdb.DuckDBPyConnection) else "%s"
    rows = conn.execute(
        f"SELECT table_name FROM {TABLES_TABLE} WHERE family = {placeholder}", [family]
    ).fetchall()
    return [str(name) for (name,) in rows]


def table_schema(conn: Warehouse, table: str) -> dg.TableSchema:
    if isinstance(conn, duckdb.DuckDBPyConnection):
        rows = list((table_columns(conn, table) or {}).items())
    else:
        rows = list(logical_columns(conn, table).items())
    return dg.TableSchema(columns=[dg.TableColumn(name=str(n), type=str(t)) for n, t in rows])


def row_count(conn: Warehouse, table: str, where: str = "") -> int:
    """Rows of ``table`` (``where``: a condition on its columns, with no parameters)."""
    row = conn.execute(f"SELECT count(*) FROM {quote_ident(physical_name(conn, table))} {where}").fetchone()
    return int(str(row[0])) if row else 0


def table_metadata(
    conn: Warehouse,
    table: str,
    *,
    partition_rows: int | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The standard metadata every table asset reports (``physical_name``: the table's name in the
    database, which differs from ``table`` only for a name PostgreSQL cannot hold)."""
    rows = row_count(conn, table)
    schema = table_schema(conn, table)
    meta: dict[str, Any] = {
        "summary": summary_markdown(table, rows, len(schema.columns), partition_rows, extra or {}),
        "table": dg.MetadataValue.text(table),
        "physical_name": dg.MetadataValue.text(physical_name(conn, table)),
        "dagster/table_name": table,
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": schema,
    }
    if partition_rows is not None:
        meta["dagster/partition_row_count"] = dg.MetadataValue.int(partition_rows)
    if extra:
        meta.update(extra)
    return meta


_SUMMARY_COUNTS = ("api_pages", "api_retries", "quarantined", "newly_missing", "inserted", "updated")


def summary_markdown(
    table: str, rows: int, columns: int, partition_rows: int | None, extra: Mapping[str, object]
) -> dg.MetadataValue:
    """One short line a reader takes in at a glance on the asset's page."""
    parts = [f"**{table}**: {rows} rows, {columns} columns"]
    if partition_rows is not None:
        parts.append(f"{partition_rows} rows written for this run's partitions")
    for name in _SUMMARY_COUNTS:
        value = extra.get(name)
        if isinstance(value, dg.IntMetadataValue) and value.value is not None:
            parts.append(f"{name.replace('_', ' ')}: {value.value}")
    return dg.MetadataValue.md("; ".join(parts) + ".")


def markdown_table(rows: list[tuple[object, ...]], header: tuple[str, ...]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))
