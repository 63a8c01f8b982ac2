"""Landed process contexts of creation days -> the ``execution_context`` family in PostgreSQL.

The same work as :func:`~oe_assets.landing.retention.write_partitions_marking_deleted` on DuckDB,
and the same code for all of it but the ends: the documents are read from PostgreSQL, flattened
as on DuckDB (:func:`~oe_assets.load.contexts.write_context_partitions`) into a scratch that holds
one day, and each day is published into PostgreSQL in one transaction with its
``_oe_deleted_at`` marks (:mod:`oe_assets.warehouse.postgres.family`). The days' partition locks
are held for the whole write: a second run for one of the days waits, runs for other days write
at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime

from oe_assets.flatten import CONTEXTS
from oe_assets.flatten.naming import DELETED_AT as MODEL_DELETED_AT
from oe_assets.landing.raw_contexts import DELETED_AT, RAW_CONTEXTS
from oe_assets.landing.raw_contexts_pg import count_raw_documents_pg, iter_raw_document_texts_pg
from oe_assets.load.contexts import (
    BATCH_SIZE,
    PARTITION_COLUMN,
    DayDocuments,
    FlattenIn,
    WriteTimes,
    flatten_in_for,
    write_context_partitions,
)
from oe_assets.warehouse import WriteReport
from oe_assets.warehouse.postgres import catalog
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.family import (
    InTransaction,
    Partition,
    empty_scratch,
    publish,
    scratch_warehouse,
)
from oe_assets.warehouse.postgres.locks import (
    family_lock_name,
    missing_tables,
    partition_locks,
    transaction_lock,
)
from oe_assets.warehouse.sql import quote_ident

CONTEXT_TABLE = CONTEXTS.root_table
CONTEXT_KEY = CONTEXTS.root_key_natural_column


def write_landed_partitions_pg(
    pg: PgConnection,
    reader: PgConnection,
    days: Iterable[date],
    *,
    loaded_at: datetime | None = None,
    flatten_in: FlattenIn | None = None,
) -> Iterator[tuple[date, WriteReport]]:
    """Each day's landed documents (read through ``reader``, a connection of its own) -> that day
    of every table of the family in PostgreSQL (written through ``pg``); a day's report once it is
    committed. An error rolls back the day being published; committed days stay."""
    days = sorted(set(days))
    with partition_locks(pg, CONTEXT_TABLE, [d.isoformat() for d in days]):
        ensure_model_deleted_column_pg(pg)
        mode = flatten_in or flatten_in_for(count_raw_documents_pg(pg, days))
        documents = ((day, iter_raw_document_texts_pg(reader, day, chunk_size=BATCH_SIZE)) for day in days)
        yield from write_context_partitions_pg(
            pg, documents, loaded_at=loaded_at, flatten_in=mode, marking=True
        )


def write_context_partitions_pg(
    pg: PgConnection,
    days: Iterable[DayDocuments],
    *,
    loaded_at: datetime | None = None,
    flatten_in: FlattenIn = "thread",
    times: WriteTimes | None = None,
    marking: bool = False,
) -> Iterator[tuple[date, WriteReport]]:
    """:func:`~oe_assets.load.contexts.write_context_partitions` into PostgreSQL: each day built in
    a scratch, then published in a transaction of its own (with its ``_oe_deleted_at`` marks when
    ``marking``). The caller holds the days' partition locks. Also the benchmark's PostgreSQL load."""
    registry = catalog.load_registry(pg, CONTEXTS)
    with scratch_warehouse() as scratch:
        written = write_context_partitions(
            scratch, days, loaded_at=loaded_at, flatten_in=flatten_in, times=times, registry=registry
        )
        for day, report in written:
            partition = Partition(CONTEXTS, day.isoformat(), PARTITION_COLUMN)
            yield (
                day,
                publish(pg, scratch, partition, report, in_transaction=_marking(day) if marking else None),
            )
            empty_scratch(scratch)


def _marking(day: date) -> InTransaction:
    """The day's marks, in the transaction that publishes the day (none while no table exists)."""

    def mark(pg: PgConnection) -> None:
        ensure_model_deleted_column_pg(pg)
        if _has_deleted_column(pg, catalog.physical_table_name(pg, CONTEXT_TABLE)):
            mark_deleted_in_model_pg(pg, day)

    return mark


def ensure_model_deleted_column_pg(pg: PgConnection) -> None:
    """``_oe_deleted_at`` on execution_context (when the table exists without it), registered as a
    system column, as :func:`~oe_assets.landing.retention.ensure_model_deleted_column` does on
    DuckDB. Changing the table takes the family's lock exclusively: no publish is under way."""
    physical = catalog.physical_table_name(pg, CONTEXT_TABLE)
    if _has_deleted_column(pg, physical) is not False:
        return
    with pg.transaction():
        transaction_lock(pg, family_lock_name(CONTEXT_TABLE))
        if _has_deleted_column(pg, physical) is not False:
            return
        pg.execute(f"ALTER TABLE {quote_ident(physical)} ADD COLUMN {MODEL_DELETED_AT} timestamp")
        pg.execute(
            "INSERT INTO _oe_columns (table_name, column_name, json_path, data_type, first_seen, physical_name) "
            "VALUES (%s, %s, NULL, 'TIMESTAMP', now() AT TIME ZONE 'UTC', %s) ON CONFLICT DO NOTHING",
            [CONTEXT_TABLE, MODEL_DELETED_AT, MODEL_DELETED_AT],
        )


def _has_deleted_column(pg: PgConnection, physical: str) -> bool | None:
    """Whether the table has ``_oe_deleted_at``; None when there is no table yet."""
    columns = catalog.logical_columns(pg, CONTEXT_TABLE)
    if not columns and missing_tables(pg, [physical]):
        return None
    return MODEL_DELETED_AT in columns


def mark_deleted_in_model_pg(pg: PgConnection, day: date) -> int:
    """The raw layer's ``deleted_at`` onto the day's execution_context rows (written with none)."""
    physical = quote_ident(catalog.physical_table_name(pg, CONTEXT_TABLE))
    cursor = pg.execute(
        f"""UPDATE {physical} AS e SET {MODEL_DELETED_AT} = r.{DELETED_AT}
            FROM {RAW_CONTEXTS} r
            WHERE e.{PARTITION_COLUMN} = %s AND r.process_id = e.{quote_ident(CONTEXT_KEY)}
              AND r.partition_date = e.{PARTITION_COLUMN} AND r.{DELETED_AT} IS NOT NULL""",
        [day],
    )
    return cursor.rowcount
