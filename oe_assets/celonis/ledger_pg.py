"""Planning a push from a PostgreSQL warehouse: the table and its ledger entries pulled into a
DuckDB scratch, and planned there by DuckDB's own code (:func:`~oe_assets.celonis.ledger.plan_table`).

Why DuckDB plans: the push's Parquet files, its keys and its row hashes are DuckDB's
(:mod:`oe_assets.celonis.schema`, :mod:`oe_assets.celonis.ledger`). Computed by the same code from
the same values of the same types, they are the files and hashes a DuckDB warehouse holding the
same rows gives, so Celonis receives the same columns and values from either warehouse, and a
ledger copied from one warehouse into the other stays valid (nothing is pushed again).

The scratch holds one table at a time, under the model's table and column names (PostgreSQL's
differ where they are longer than 63 bytes) and without the columns never delivered, beside the
ledger's entries of that table at this destination. Recording what Celonis confirmed happens in
PostgreSQL itself (:func:`~oe_assets.celonis.ledger.confirm`).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb

from oe_assets.celonis import ledger
from oe_assets.celonis.schema import NOT_DELIVERED
from oe_assets.warehouse.postgres.catalog import logical_columns, physical_table_name
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.family import scratch_warehouse
from oe_assets.warehouse.postgres.locks import missing_tables
from oe_assets.warehouse.postgres.pull import pull
from oe_assets.warehouse.sql import quote_ident

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
    physical = physical_table_name(pg, target)
    if missing_tables(pg, [physical]):
        return None
    ledger.ensure_ledger(pg)
    with scratch_warehouse() as scratch:
        _pull_table(pg, scratch, target, physical)
        _pull_ledger(pg, scratch, destination, target)
        return ledger.plan_table(scratch, destination, target, keys, folder)


def _pull_table(pg: PgConnection, scratch: duckdb.DuckDBPyConnection, target: str, physical: str) -> None:
    """The delivered columns of ``target`` into the scratch's table ``target``, under the model's
    names. The rows are read through a temporary view whose columns are numbered, so the query
    that :func:`~oe_assets.warehouse.postgres.pull.pull` runs holds no name of the warehouse (a
    ``%`` in a name would read as a placeholder there). The view's name is new every time: psycopg
    prepares a query it has run five times, and a prepared query's columns cannot change."""
    delivered = [(name, p) for name, p in _column_names(pg, target, physical) if name not in NOT_DELIVERED]
    numbered = ", ".join(f"{quote_ident(p)} AS c{i}" for i, (_, p) in enumerate(delivered))
    view = f"_oe_push_source_{uuid.uuid4().hex}"
    pg.execute(f"CREATE TEMP VIEW {view} AS SELECT {numbered} FROM {quote_ident(physical)}")
    try:
        pull(pg, f"SELECT * FROM {view}", [], scratch, _PULLED)
    finally:
        pg.execute(f"DROP VIEW IF EXISTS {view}")
    named = ", ".join(f"c{i} AS {quote_ident(name)}" for i, (name, _) in enumerate(delivered))
    scratch.execute(f"CREATE TABLE {quote_ident(target)} AS SELECT {named} FROM {_PULLED}")
    scratch.execute(f"DROP TABLE {_PULLED}")


def _column_names(pg: PgConnection, target: str, physical: str) -> list[tuple[str, str]]:
    """(model's name, PostgreSQL's name) of the table's columns, in table order."""
    cursor = pg.execute(f"SELECT * FROM {quote_ident(physical)} LIMIT 0")
    assert cursor.description is not None
    return list(zip(logical_columns(pg, target), (d.name for d in cursor.description), strict=True))


def _pull_ledger(pg: PgConnection, scratch: duckdb.DuckDBPyConnection, destination: str, target: str) -> None:
    """The ledger's entries of ``target`` at ``destination`` into the scratch's own ledger."""
    ledger.ensure_ledger(scratch)
    for table, columns in _LEDGER_COLUMNS.items():
        query = f"SELECT {columns} FROM {table} WHERE destination = %s AND target = %s"
        pull(pg, query, [destination, target], scratch, _PULLED)
        scratch.execute(f"INSERT INTO {table} SELECT * FROM {_PULLED}")
    scratch.execute(f"DROP TABLE {_PULLED}")
