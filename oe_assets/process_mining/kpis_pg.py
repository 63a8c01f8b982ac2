"""Process KPIs in a PostgreSQL warehouse: DuckDB's figures (:mod:`oe_assets.process_mining.kpis`),
computed by its own polars code on the days' rows pulled into a local DuckDB.

The days' activity-log rows and their cases' current statuses are pulled in one snapshot
(REPEATABLE READ, read only: :func:`~oe_assets.warehouse.postgres.connect.one_snapshot`),
:func:`~oe_assets.process_mining.kpis.rebuild_kpis` runs on that scratch unchanged, and its rows
replace the days' rows in PostgreSQL in one transaction. The days are held by their partition
locks (``oe_assets.partition.process_kpis.<day>``) from the first read to the commit.

Where PostgreSQL differs: ``top_variants`` (DuckDB ``VARCHAR[]``) is ``text`` holding the list's
JSON, as the warehouse copy writes every nested column; the frame returned holds the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from oe_assets.landing.retention import CONTEXT_TABLE
from oe_assets.process_mining.activity_log import ACTIVITY_LOG
from oe_assets.process_mining.activity_log_pg import replace_partitions_pg
from oe_assets.process_mining.kpis import PROCESS_KPIS, PROCESS_KPIS_DDL, rebuild_kpis
from oe_assets.warehouse.postgres.connect import PgConnection, one_snapshot
from oe_assets.warehouse.postgres.family import scratch_warehouse
from oe_assets.warehouse.postgres.locks import partition_locks
from oe_assets.warehouse.postgres.pull import pull_table

KPI_ACTIVITY_COLUMNS = (
    "case_id",
    "activity",
    "event_time",
    "activity_type",
    "sort_order",
    "execution_template_id",
    "execution_template_name",
    "_oe_partition",
)
"""The activity log's columns :func:`~oe_assets.process_mining.kpis.read_activities` reads."""
_DAYS = "WHERE _oe_partition = ANY(%s)"
_DAYS_CASES = f'WHERE "context$processid" IN (SELECT case_id FROM {ACTIVITY_LOG} {_DAYS})'


def rebuild_kpis_pg(conn: PgConnection, days: Sequence[date]) -> pl.DataFrame:
    """Replace the days' KPI rows in PostgreSQL (see the module's doc); returns the rows written,
    as DuckDB's :func:`~oe_assets.process_mining.kpis.rebuild_kpis`."""
    keys = [day.isoformat() for day in days]
    with partition_locks(conn, PROCESS_KPIS, keys), scratch_warehouse() as scratch:
        with one_snapshot(conn):
            if pull_table(conn, scratch, ACTIVITY_LOG, KPI_ACTIVITY_COLUMNS, _DAYS, [keys]):
                pull_table(conn, scratch, CONTEXT_TABLE, ["context$processid", "status"], _DAYS_CASES, [keys])
        kpis = rebuild_kpis(scratch, days)
        replace_partitions_pg(conn, scratch, PROCESS_KPIS, PROCESS_KPIS_DDL, days)
    return kpis
