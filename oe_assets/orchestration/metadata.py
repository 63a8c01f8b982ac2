"""Dagster metadata built from the warehouse: row counts, column schemas, markdown summaries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import duckdb

from oe_assets.warehouse import quote_ident

OWNERS = ["team:data-engineering"]
"""Who answers for every asset of the project (shown on each asset's page)."""


def table_schema(conn: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(name=str(n), type=str(t)) for n, t in rows])


def row_count(
    conn: duckdb.DuckDBPyConnection, table: str, where: str = "", params: list[object] | None = None
) -> int:
    row = conn.execute(f"SELECT count(*) FROM {quote_ident(table)} {where}", params or []).fetchone()
    return int(row[0]) if row else 0


def table_metadata(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    *,
    partition_rows: int | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The standard metadata every table asset reports."""
    rows = row_count(conn, table)
    schema = table_schema(conn, table)
    meta: dict[str, Any] = {
        "summary": summary_markdown(table, rows, len(schema.columns), partition_rows, extra or {}),
        "table": dg.MetadataValue.text(table),
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
