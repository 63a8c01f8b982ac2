"""Contexts the API no longer returns: kept and marked everywhere; removed only when a user asks.

The raw layer marks them (``raw_process_contexts.deleted_at``, see
:mod:`oe_assets.landing.raw_contexts`). This module carries the mark into the model
(``execution_context._oe_deleted_at``, in the same transaction as the day's flattened rows; the
event log copies it from there) and removes marked contexts from every table on request
(``oe-assets prune --deleted``), in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import duckdb

from oe_assets.core.timestamps import utc_now
from oe_assets.flatten.naming import CONTEXTS
from oe_assets.flatten.naming import DELETED_AT as DELETED_AT_COLUMN
from oe_assets.landing.raw_contexts import DELETED_AT, FAMILY, QUARANTINE, RAW_CONTEXTS, STATUS_HISTORY
from oe_assets.load.contexts import write_landed_partitions
from oe_assets.model.integrity import table_exists
from oe_assets.warehouse import COLUMNS_TABLE, TABLES_TABLE, WriteReport, quote_ident, transaction
from oe_assets.warehouse.reading import scalar_count

MODEL_DELETED_AT = DELETED_AT_COLUMN
CONTEXT_TABLE = CONTEXTS.root_table
CONTEXT_KEY = CONTEXTS.root_key_natural_column


def ensure_model_deleted_column(conn: duckdb.DuckDBPyConnection) -> None:
    """Adds ``_oe_deleted_at`` to execution_context (when the table exists without it), registered
    as a system column (no JSON path) so that the flattener never gives a key that name.

    Inside a transaction, call it before the table's rows are deleted (DuckDB cannot commit a
    transaction that alters a table after deleting from it)."""
    if not table_exists(conn, CONTEXT_TABLE):
        return
    present = conn.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ? AND column_name = ?",
        [CONTEXT_TABLE, MODEL_DELETED_AT],
    ).fetchone()
    if present and present[0]:
        return
    conn.execute(f"ALTER TABLE {quote_ident(CONTEXT_TABLE)} ADD COLUMN {MODEL_DELETED_AT} TIMESTAMP")
    if table_exists(conn, COLUMNS_TABLE):
        conn.execute(
            f"INSERT INTO {COLUMNS_TABLE} VALUES (?, ?, NULL, 'TIMESTAMP', ?) ON CONFLICT DO NOTHING",
            [CONTEXT_TABLE, MODEL_DELETED_AT, utc_now()],
        )


def mark_deleted_in_model(conn: duckdb.DuckDBPyConnection, day: date) -> int:
    """Copies the raw layer's ``deleted_at`` onto the day's execution_context rows (written with
    none); returns how many rows are marked."""
    if not table_exists(conn, CONTEXT_TABLE):
        return 0
    ensure_model_deleted_column(conn)
    row = conn.execute(
        f"""UPDATE {quote_ident(CONTEXT_TABLE)} AS e SET {MODEL_DELETED_AT} = r.{DELETED_AT}
            FROM {RAW_CONTEXTS} r
            WHERE e._oe_partition = ? AND r.process_id = e.{quote_ident(CONTEXT_KEY)}
              AND r.partition_date = e._oe_partition AND r.{DELETED_AT} IS NOT NULL""",
        [day],
    ).fetchone()
    return int(row[0]) if row else 0


def write_partitions_marking_deleted(
    conn: duckdb.DuckDBPyConnection, days: Iterable[date]
) -> Iterator[tuple[date, WriteReport]]:
    """:func:`~oe_assets.load.contexts.write_landed_partitions`, each day's rows and their
    ``_oe_deleted_at`` marks in one transaction."""
    ensure_model_deleted_column(conn)
    yield from write_landed_partitions(conn, days, in_day=mark_deleted_in_model)


@dataclass
class PruneReport:
    """What a prune removed (or, in a dry run, would remove)."""

    contexts: int = 0
    rows_per_table: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False


def prune_deleted(conn: duckdb.DuckDBPyConnection, *, before: date | None, dry_run: bool) -> PruneReport:
    """Removes the contexts marked deleted (before ``before``, when given) from every table that
    holds them, in one transaction; a dry run only counts."""
    report = PruneReport(dry_run=dry_run)
    if not table_exists(conn, RAW_CONTEXTS):
        return report
    with transaction(conn):
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE _oe_prune AS SELECT process_id FROM {RAW_CONTEXTS}
                WHERE {DELETED_AT} IS NOT NULL AND (?::DATE IS NULL OR {DELETED_AT} < ?::DATE)""",
            [before, before],
        )
        report.contexts = scalar_count(conn, "SELECT count(*) FROM _oe_prune")
        for table, key, condition in _tables_holding_contexts(conn):
            where = f"{quote_ident(key)} IN (SELECT process_id FROM _oe_prune){condition}"
            if dry_run:
                rows = scalar_count(conn, f"SELECT count(*) FROM {quote_ident(table)} WHERE {where}")
            else:
                rows = scalar_count(conn, f"DELETE FROM {quote_ident(table)} WHERE {where}")
            report.rows_per_table[table] = rows
        conn.execute("DROP TABLE _oe_prune")
    return report


def _tables_holding_contexts(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(table, column holding the process id, extra condition) for every existing table."""
    families = f" AND family IN ('{FAMILY}', '{CONTEXT_TABLE}')"
    candidates = [
        (RAW_CONTEXTS, "process_id", ""),
        (STATUS_HISTORY, "process_id", ""),
        ("event_log", "instance_id", ""),
        ("activity_log", "case_id", ""),
        (QUARANTINE, "record_key", families),
    ]
    if table_exists(conn, TABLES_TABLE):
        family_tables = conn.execute(
            f"SELECT table_name FROM {TABLES_TABLE} WHERE family = ? ORDER BY table_name", [CONTEXT_TABLE]
        ).fetchall()
        candidates += [(str(name), CONTEXTS.root_key_column, "") for (name,) in family_tables]
    return [c for c in candidates if table_exists(conn, c[0])]
