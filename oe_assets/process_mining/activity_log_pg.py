"""The activity log in a PostgreSQL warehouse, one partition at a time: the rows of
:mod:`oe_assets.process_mining.activity_log` (DuckDB), computed by its own code.

Why in DuckDB: the activity log's SQL reads every time with DuckDB's
:func:`~oe_assets.warehouse.sql.utc_timestamp` and picks the event-type keys from the flattener's
column map; running that code on the partition's inputs gives DuckDB's rows by construction, where
a PostgreSQL port would be a second definition to keep equal. So a partition is built in a local
DuckDB *scratch*: the day's contexts (only the columns the activities read), their digital
processes and status history, and the column map are pulled from PostgreSQL, all read in one
snapshot (REPEATABLE READ, read only), so a load that commits meanwhile is wholly seen or not at
all. :func:`~oe_assets.process_mining.activity_log.rebuild_activity_log_partition` runs on the
scratch unchanged, and its rows replace the day's rows in PostgreSQL in one transaction (delete,
then ``COPY``): a reader sees the day as it was or as it is now, never half of it.

Who waits for whom: the day is held by its partition lock (``oe_assets.partition.activity_log.<day>``,
on any machine) from the first read to the commit, so the same day twice waits and different days
run side by side. The table's first CREATE runs under the DDL lock.

Long names: a column whose name is over 63 bytes has another name in PostgreSQL
(``_oe_columns.physical_name``); :func:`~oe_assets.warehouse.postgres.pull.pull_table` pulls it
under that name and renames it back in the scratch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb

from oe_assets.landing.raw_contexts import STATUS_HISTORY
from oe_assets.landing.raw_contexts_pg import postgres_table_ddl
from oe_assets.landing.retention import CONTEXT_TABLE
from oe_assets.process_mining.activity_log import (
    ACTIVITY_LOG,
    ACTIVITY_LOG_DDL,
    rebuild_activity_log_partition,
    step_timestamp_columns,
)
from oe_assets.warehouse.postgres.connect import PgConnection, copy_in, one_snapshot
from oe_assets.warehouse.postgres.family import scratch_warehouse
from oe_assets.warehouse.postgres.locks import create_missing_tables, partition_locks
from oe_assets.warehouse.postgres.pull import pull_table
from oe_assets.warehouse.postgres.types import column_transfer
from oe_assets.warehouse.schema import COLUMNS_TABLE
from oe_assets.warehouse.sql import quote_ident

TEMPLATES_TABLE = "execution_templates"
CONTEXT_COLUMNS = (
    "context$processid",
    "context$executionTemplateID",
    "metadata$createdAt",
    "metadata$updatedAt",
    "status",
    "_oe_partition",
)
"""The columns of execution_context the activities read besides the event-type keys' times."""
_DAY_CONTEXTS = f'SELECT "context$processid" FROM {CONTEXT_TABLE} WHERE _oe_partition = %s'
_DAY_TEMPLATES = f'SELECT "context$executionTemplateID" FROM {CONTEXT_TABLE} WHERE _oe_partition = %s'


def rebuild_activity_log_partition_pg(conn: PgConnection, partition: date) -> dict[str, int]:
    """Replace the partition's activities in PostgreSQL (see the module's doc); returns counts per
    activity type, as DuckDB's :func:`~oe_assets.process_mining.activity_log.rebuild_activity_log_partition`."""
    with (
        partition_locks(conn, ACTIVITY_LOG, [partition.isoformat()]),
        scratch_warehouse() as scratch,
    ):
        with one_snapshot(conn):
            pull_activity_inputs(conn, scratch, partition)
        counts = rebuild_activity_log_partition(scratch, partition)
        replace_partitions_pg(conn, scratch, ACTIVITY_LOG, ACTIVITY_LOG_DDL, [partition])
    return counts


def pull_activity_inputs(conn: PgConnection, scratch: duckdb.DuckDBPyConnection, partition: date) -> None:
    """What the day's activities are made of, into ``scratch`` under the warehouse's names; a table
    PostgreSQL does not have yet stays missing in the scratch too (as it would be in DuckDB)."""
    day = [partition.isoformat()]
    steps: list[str] = []
    column_map = ["table_name", "column_name", "json_path"]
    if pull_table(conn, scratch, COLUMNS_TABLE, column_map, "WHERE table_name = %s", [CONTEXT_TABLE]):
        steps = [column for columns in step_timestamp_columns(scratch).values() for column in columns]
    if not pull_table(
        conn, scratch, CONTEXT_TABLE, [*CONTEXT_COLUMNS, *steps], "WHERE _oe_partition = %s", day
    ):
        return
    pull_table(conn, scratch, TEMPLATES_TABLE, ["id", "name"], f"WHERE id IN ({_DAY_TEMPLATES})", day)
    pull_table(
        conn, scratch, STATUS_HISTORY, ["process_id", "status", "updated_at", "observed_at"],
        f"WHERE process_id IN ({_DAY_CONTEXTS})", day,
    )  # fmt: skip


def replace_partitions_pg(
    conn: PgConnection,
    scratch: duckdb.DuckDBPyConnection,
    table: str,
    duckdb_ddl: str,
    days: Sequence[date],
) -> int:
    """The scratch's ``table`` (the days' new rows) replaces the days' rows of PostgreSQL's
    ``table`` in one transaction: created from DuckDB's ``duckdb_ddl`` if missing, the days'
    rows deleted, the new ones copied in; returns the rows copied."""
    described = scratch.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    transfers = [column_transfer(table, str(name), str(name), str(dtype)) for name, dtype in described]
    target = f"{quote_ident(table)} ({', '.join(quote_ident(t.physical_name) for t in transfers)})"
    with conn.transaction():
        create_missing_tables(conn, {table: postgres_table_ddl(duckdb_ddl)})
        conn.execute(
            f"DELETE FROM {quote_ident(table)} WHERE _oe_partition = ANY(%s)", [[d.isoformat() for d in days]]
        )
        select = f"SELECT {', '.join(t.select('t') for t in transfers)} FROM {quote_ident(table)} t"
        return copy_in(scratch, select, conn, target, table)
