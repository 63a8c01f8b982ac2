"""The exports of a PostgreSQL warehouse: what they read, pulled into a DuckDB scratch, where the
DuckDB exports run unchanged.

Why pull rather than port the SQL: the exports are DuckDB SQL (``GROUP BY ALL``, ``SEMI`` and
``ANTI JOIN``, ``isfinite``, :func:`~oe_assets.warehouse.sql.utc_timestamp`'s regular
expressions, a value's text from ``::VARCHAR``) read as Arrow tables, and a file must hold the
bytes a DuckDB warehouse with the same rows gives. So the columns an export reads are pulled in
bulk with their types (:func:`~oe_assets.warehouse.postgres.pull.pull_table`) into a scratch,
under the model's table and column names (a name over PostgreSQL's 63 bytes is resolved through
the catalog), and :func:`~oe_assets.exports.ocel_model.build_ocel` or
:func:`~oe_assets.exports.xes.export_xes` runs there.

Only what an export reads is pulled: the columns of :data:`READ_COLUMNS` and, for OCEL, the
business objects' columns the catalog names (:func:`~oe_assets.exports.business_objects.find_object_sources`:
the context's id, the object's id, its attributes); not the raw documents nor the contexts'
other payload columns. A table PostgreSQL does not have is not created in the scratch, so the
export says what is missing in the same sentence as on DuckDB. Everything is read in one
snapshot (:func:`~oe_assets.warehouse.postgres.connect.one_snapshot`: a read-only, repeatable-read
transaction, since ``pg`` comes outside any), as a DuckDB export reads one connection's view,
while other runs keep writing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb

from oe_assets.exports.business_objects import CONTEXT_FAMILY, ROOT_KEY_COLUMN, find_object_sources
from oe_assets.exports.ocel import ExportReport
from oe_assets.exports.ocel_model import OCEL_TABLES, OcelData, build_ocel
from oe_assets.exports.source import table_columns
from oe_assets.exports.xes import XES_TABLES, export_xes
from oe_assets.landing.raw_contexts import STATUS_HISTORY
from oe_assets.process_mining.activity_log import ACTIVITY_LOG
from oe_assets.warehouse.postgres.connect import PgConnection, one_snapshot
from oe_assets.warehouse.postgres.family import scratch_warehouse
from oe_assets.warehouse.postgres.pull import pull_table
from oe_assets.warehouse.schema import COLUMNS_TABLE, TABLES_TABLE
from oe_assets.warehouse.sql import quote_ident

ACCOUNTS = "accounts"
TEMPLATES = "execution_templates"
READ_COLUMNS: dict[str, tuple[str, ...]] = {
    ACTIVITY_LOG: (
        "case_id", "activity", "event_time", "sort_order", "activity_type", "source",
        "execution_template_id", "execution_template_name",
    ),
    CONTEXT_FAMILY: (ROOT_KEY_COLUMN, "status", "metadata$updatedAt"),
    TEMPLATES: ("id", "name", "state", "version$number", "tenant"),
    ACCOUNTS: ("id", "name", "state"),
    STATUS_HISTORY: ("process_id", "status", "updated_at", "observed_at"),
    TABLES_TABLE: ("table_name", "family", "json_path"),
    COLUMNS_TABLE: ("table_name", "column_name", "json_path", "data_type"),
}  # fmt: skip
"""Table -> the columns the exports' SQL names (:mod:`~oe_assets.exports.ocel_model`,
:mod:`~oe_assets.exports.xes`); a column a table lacks is left out, as the SQL expects."""
XES_READS = (*XES_TABLES, ACCOUNTS)
OCEL_READS = (*OCEL_TABLES, ACCOUNTS, STATUS_HISTORY)
_CATALOG = (TABLES_TABLE, COLUMNS_TABLE)


def build_ocel_pg(pg: PgConnection) -> OcelData:
    """:func:`~oe_assets.exports.ocel_model.build_ocel` of the PostgreSQL warehouse (``pg`` outside
    any transaction): the content a DuckDB warehouse with the same rows gives."""
    with scratch_warehouse() as scratch:
        with one_snapshot(pg):
            pull_columns(pg, scratch, {table: READ_COLUMNS[table] for table in _CATALOG})
            others = {table: READ_COLUMNS[table] for table in OCEL_READS if table not in _CATALOG}
            pull_columns(pg, scratch, merged(others, object_columns(scratch)))
        return build_ocel(scratch)


def export_xes_pg(pg: PgConnection, path: Path) -> ExportReport:
    """:func:`~oe_assets.exports.xes.export_xes` of the PostgreSQL warehouse (``pg`` outside any
    transaction): the file a DuckDB warehouse with the same rows gives."""
    with scratch_warehouse() as scratch:
        with one_snapshot(pg):
            pull_columns(pg, scratch, {table: READ_COLUMNS[table] for table in XES_READS})
        return export_xes(scratch, path)


def object_columns(scratch: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, ...]]:
    """The tables of the business objects the scratch's catalog names, each with the columns the
    OCEL export reads of it: the context's id, the object's id, its attributes."""
    if not all(table_columns(scratch, table) for table in _CATALOG):
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for source in find_object_sources(scratch):
        read = (ROOT_KEY_COLUMN, source.id_column, *(a.column for a in source.attributes))
        found = merged(found, {source.table: read})
    return found


def merged(*reads: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Table -> the union of its columns in ``reads``, each once, first mention first."""
    together: dict[str, dict[str, None]] = {}
    for read in reads:
        for table, columns in read.items():
            together.setdefault(table, {}).update(dict.fromkeys(columns))
    return {table: tuple(columns) for table, columns in together.items()}


def pull_columns(
    pg: PgConnection, scratch: duckdb.DuckDBPyConnection, reads: Mapping[str, Sequence[str]]
) -> dict[str, int]:
    """Each table's columns of ``reads`` that PostgreSQL holds, into ``scratch`` under the model's
    table and column names, in the table's order (:func:`~oe_assets.warehouse.postgres.pull.pull_table`);
    rows pulled per table. A table with none of them (or none at all) is not created."""
    pulled = {}
    for table, wanted in reads.items():
        if pull_table(pg, scratch, table, wanted):
            counted = scratch.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()
            pulled[table] = int(counted[0]) if counted else 0
    return pulled
