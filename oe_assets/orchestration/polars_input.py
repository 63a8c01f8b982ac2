"""Give a user's own asset any warehouse table as a :class:`polars.DataFrame`.

Declare the input with this manager's key and name the upstream asset; the table is the one
named by the input's or the upstream asset's ``dagster/table_name`` metadata, else the upstream
asset's name (every table of the project is named like its asset: ``activity_log``,
``process_kpis``, ``execution_context``, ...)::

    @dg.asset(partitions_def=daily_partitions(),
              ins={"activity_log": dg.AssetIn(input_manager_key=POLARS_INPUT_MANAGER_KEY)})
    def my_asset(activity_log: pl.DataFrame) -> ...

    dg.Definitions(assets=[my_asset],
                   resources={POLARS_INPUT_MANAGER_KEY: WarehousePolarsInputManager(warehouse=warehouse)})

A partitioned asset receives only its partitions' rows of a table with ``_oe_partition`` (the
creation-day partitions all our partitioned tables share); an unpartitioned one, the whole table.
The rows come through Arrow, not row by row; from a PostgreSQL warehouse they come with
``COPY`` into a scratch DuckDB first (:func:`~oe_assets.warehouse.postgres.pull.pull_table`), so the
frame has the same columns, under the model's names, and the same types as from DuckDB (a list
column, which PostgreSQL holds as its JSON text, is a list again). A complete example:
``oe_assets/examples/polars_asset.py``.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import polars as pl

from oe_assets.model.integrity import table_exists
from oe_assets.orchestration.resources import WarehouseResource
from oe_assets.process_mining.kpis import PROCESS_KPIS, PROCESS_KPIS_DDL
from oe_assets.warehouse import quote_ident
from oe_assets.warehouse.postgres.catalog import logical_columns
from oe_assets.warehouse.postgres.connect import PgConnection, one_snapshot
from oe_assets.warehouse.postgres.family import scratch_warehouse
from oe_assets.warehouse.postgres.pull import pull_table
from oe_assets.warehouse.postgres.types import column_transfer
from oe_assets.warehouse.reading import polars_frame

POLARS_INPUT_MANAGER_KEY = "warehouse_polars"
PARTITION_COLUMN = "_oe_partition"
TABLE_NAME_KEY = "dagster/table_name"
DUCKDB_SHAPES = {PROCESS_KPIS: PROCESS_KPIS_DDL}
"""The DuckDB DDL of the tables with nested columns (PostgreSQL holds those as their JSON text)."""


class WarehousePolarsInputManager(dg.ConfigurableIOManager):
    """Loads warehouse tables as polars DataFrames for your assets' inputs (it stores nothing:
    give your asset's own output another IO manager, or return a MaterializeResult)."""

    warehouse: WarehouseResource

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = table_for_input(context)
        if self.warehouse.on_postgres:
            with self.warehouse.postgres() as pg:
                return postgres_frame(pg, table, partition_range(context))
        with self.warehouse.get_connection() as conn:
            if not table_exists(conn, table):
                raise _no_table(table)
            columns = {str(r[0]) for r in conn.execute(f"DESCRIBE {quote_ident(table)}").fetchall()}
            sql, params = f"SELECT * FROM {quote_ident(table)}", {}
            days = partition_range(context) if PARTITION_COLUMN in columns else None
            if days is not None:
                sql += f" WHERE {PARTITION_COLUMN} >= $first AND {PARTITION_COLUMN} < $after"
                params = {"first": days[0], "after": days[1]}
            return polars_frame(conn, sql, params)

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        raise dg.Failure(
            "WarehousePolarsInputManager only reads tables: give this output another IO manager, "
            "or return a MaterializeResult."
        )


def postgres_frame(pg: PgConnection, table: str, days: tuple[date, date] | None) -> pl.DataFrame:
    """The rows of ``table`` (of ``days`` when it has ``_oe_partition``) from PostgreSQL, as the
    DuckDB warehouse gives them: under the model's column names (PostgreSQL may hold shortened ones)
    and typed as DuckDB types them. One snapshot: the catalog's names and the rows agree."""
    with one_snapshot(pg), scratch_warehouse() as scratch:
        columns = logical_columns(pg, table)
        if not columns:
            raise _no_table(table)
        condition, params = "", []
        if days is not None and PARTITION_COLUMN in columns:
            condition, params = f"WHERE {PARTITION_COLUMN} >= %s AND {PARTITION_COLUMN} < %s", [*days]
        pull_table(pg, scratch, table, condition=condition, params=params, into="frame")
        nested = nested_types(scratch, table)
        named = ", ".join(
            f"CAST(CAST({quote_ident(c)} AS JSON) AS {nested[c]}) AS {quote_ident(c)}"
            if c in nested
            else quote_ident(c)
            for c in columns
        )
        return polars_frame(scratch, f"SELECT {named} FROM frame")


def nested_types(scratch: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column -> DuckDB type of ``table``'s nested columns, from its DDL (:data:`DUCKDB_SHAPES`)."""
    ddl = DUCKDB_SHAPES.get(table)
    if ddl is None:
        return {}
    scratch.execute(ddl)
    rows = scratch.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]
    ).fetchall()
    return {
        str(column): str(dtype)
        for column, dtype in rows
        if column_transfer(table, str(column), str(column), str(dtype)).as_json
    }


def _no_table(table: str) -> dg.Failure:
    return dg.Failure(
        f"The warehouse has no table {table!r} yet: build it with `oe-assets materialize` "
        "(or `oe-assets demo`) first."
    )


def table_for_input(context: dg.InputContext) -> str:
    """The input's ``dagster/table_name``, else the upstream asset's, else the upstream asset's name."""
    for metadata in (context.definition_metadata, _upstream_metadata(context)):
        name = (metadata or {}).get(TABLE_NAME_KEY)
        if isinstance(name, str) and name:
            return name
    return context.asset_key.path[-1]


def _upstream_metadata(context: dg.InputContext) -> dict[str, object]:
    upstream = context.upstream_output
    return dict(upstream.definition_metadata or {}) if upstream is not None else {}


def partition_range(context: dg.InputContext) -> tuple[date, date] | None:
    """[first day, day after the last) of the upstream partitions this run reads, or None (all)."""
    if not context.has_asset_partitions:
        return None
    window = context.asset_partitions_time_window
    return window.start.date(), window.end.date()
