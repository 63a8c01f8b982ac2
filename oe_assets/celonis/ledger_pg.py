"""Planning a push from a PostgreSQL warehouse: the table and its ledger entries pulled into a
DuckDB scratch, and planned there by DuckDB's own code (:func:`~oe_assets.celonis.ledger.plan_table`).

Why DuckDB plans: the push's Parquet files, its keys and its row hashes are DuckDB's
(:mod:`oe_assets.celonis.schema`, :mod:`oe_assets.celonis.ledger`). Computed by the same code from
the same values of the same types, they are the files and hashes a DuckDB warehouse holding the
same rows gives, so Celonis receives the same columns and values from either warehouse, and a
ledger copied from one warehouse into the other stays valid (nothing is pushed again).

The scratch holds one table at a time, under the model's table and column names (PostgreSQL's
differ where they are longer than 63 bytes; :func:`~oe_assets.warehouse.postgres.pull.pull_table`)
and without the columns never delivered, beside the ledger's entries of that table at this
destination. Recording what Celonis confirmed happens in
PostgreSQL itself (:func:`~oe_assets.celonis.ledger.confirm`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from oe_assets.celonis import ledger
from oe_assets.celonis.schema import NOT_DELIVERED
from oe_assets.warehouse.postgres.catalog import logical_columns
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.family import scratch_warehouse
from oe_assets.warehouse.postgres.pull import pull, pull_table

_PULLED = "_oe_push_pulled"
_LEDGER_COLUMNS = {
    # a row hash is numeric(20) in PostgreSQL (UBIGINT has no PostgreSQL type): read as its digits
    ledger.ROWS: "destination, target, row_key, CAST(row_hash AS text)",
    ledger.TABLES: "destination, target, columns, row_count, job_id, confirmed_at",
}


def plan_table_pg(
    pg: PgConnection, destination: str, target: str, keys: tuple[str, ...], folder: Path
) -> ledger.TablePlan | None:
    """:func:`~oe_assets.celonis.ledger.plan_table` of PostgreSQL's ``target`` (the model's name);
    None when the warehouse has no such table yet."""
    columns = logical_columns(pg, target)
    if not columns:
        return None
    ledger.ensure_ledger(pg)
    with scratch_warehouse() as scratch:
        pull_table(pg, scratch, target, [column for column in columns if column not in NOT_DELIVERED])
        _pull_ledger(pg, scratch, destination, target)
        return ledger.plan_table(scratch, destination, target, keys, folder)


def _pull_ledger(pg: PgConnection, scratch: duckdb.DuckDBPyConnection, destination: str, target: str) -> None:
    """The ledger's entries of ``target`` at ``destination`` into the scratch's own ledger."""
    ledger.ensure_ledger(scratch)
    for table, columns in _LEDGER_COLUMNS.items():
        query = f"SELECT {columns} FROM {table} WHERE destination = %s AND target = %s"
        pull(pg, query, [destination, target], scratch, _PULLED)
        scratch.execute(f"INSERT INTO {table} SELECT * FROM {_PULLED}")
    scratch.execute(f"DROP TABLE {_PULLED}")
