"""The Celonis extractor's event log in a PostgreSQL warehouse, one partition at a time: the same
table, rows and MERGE statement as :mod:`oe_assets.process_mining.event_log` (DuckDB).

The table is made with the extractor's DDL (``varchar(256)``, ``varchar(128) PRIMARY KEY``,
``timestamp``, ``varchar(64)``) plus ``_oe_deleted_at``; the partition's rows go into a temporary
``_oe_event_log_new`` and the extractor's MERGE (:data:`~oe_assets.process_mining.event_log.EVENT_LOG_MERGE`)
runs on them verbatim: PostgreSQL 15 is the first with MERGE. The source is read as DuckDB reads
it, whatever the columns' types: ``metadata$createdAt`` and ``metadata$updatedAt`` may be
``timestamp`` or ISO-8601 text with any offset (:func:`~oe_assets.warehouse.postgres.sql.utc_timestamp_pg`,
which takes the type from the catalog), ``_oe_partition`` a ``date`` or its ISO text (the day is
sent untyped, so PostgreSQL reads it as the column's type).

Who waits for whom. Two merges of the same day wait for each other on the day's advisory lock
(``oe_assets.partition.event_log.<YYYY-MM-DD>``, until the transaction ends). Merges of different
days take turns too, on the table: ``LOCK TABLE event_log IN SHARE ROW EXCLUSIVE MODE``, a mode
that conflicts with itself and with every writer of the table but not with its readers. Why not
let two days merge at once: a context whose creation day moved (the API corrected ``createdAt``)
is in both days' sources until the older day is reloaded, and PostgreSQL's MERGE does not turn a
concurrent insert of the same key into an update (only ``INSERT ... ON CONFLICT`` does, and the
extractor's statement is a MERGE): both merges would see no row, both insert, one fails on the
primary key. Taking turns costs little (a day is a few thousand rows), it keeps MERGE's plain
semantics and the counts exact (rows before and after are counted with no other merge between),
and it also keeps a delete (``prune``) from racing an update. The lock is taken before the source
is read and the transaction reads at READ COMMITTED, so each merge sees the rows the one before it
committed. The table's first CREATE runs under the DDL lock (two first merges would otherwise race
in the catalog).

Where PostgreSQL differs: the extractor's lengths are enforced (DuckDB ignores them), so an
``instance_id`` over 128 characters, a template name over 256 or a status over 64 stops the day's
merge with one sentence instead of being stored. And execution_context without ``_oe_deleted_at``
(before the landing first marks a context) is read as nothing deleted, not given the column as
DuckDB's merge does: the landing owns that table.
"""

from __future__ import annotations

from datetime import date

import psycopg

from oe_assets.landing.retention import CONTEXT_TABLE, MODEL_DELETED_AT
from oe_assets.process_mining.event_log import (
    CREATED_AT_COLUMN,
    DELETED_COLUMN_DDL,
    EVENT_LOG,
    EVENT_LOG_DDL,
    EVENT_LOG_MERGE,
    LAST_MODIFIED_COLUMN,
    context_column,
    partition_source,
)
from oe_assets.warehouse.postgres.connect import PgConnection, PostgresWarehouseError, reason_of
from oe_assets.warehouse.postgres.locks import (
    create_missing_tables,
    missing_tables,
    partition_lock_name,
    transaction_lock,
)
from oe_assets.warehouse.postgres.sql import column_types, utc_timestamp_pg

TEMPLATES_TABLE = "execution_templates"
NEW_ROWS = "_oe_event_log_new"


def merge_event_log_partition_pg(conn: PgConnection, partition: date) -> dict[str, int]:
    """Merge one creation-day partition of execution_context into event_log, in one transaction
    (a savepoint when the caller has one open); the same counts as DuckDB's
    :func:`~oe_assets.process_mining.event_log.merge_event_log_partition`."""
    outermost = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        _take_turn(conn, partition, outermost=outermost)
        before = _count(conn, EVENT_LOG)
        if missing_tables(conn, [CONTEXT_TABLE, TEMPLATES_TABLE]):  # nothing has landed yet: an empty log
            return {"source_rows": 0, "inserted": 0, "updated": 0, "total": before}
        conn.execute(f"CREATE TEMP TABLE {NEW_ROWS} AS {_partition_source_pg(conn)}", [partition.isoformat()])
        source = _count(conn, NEW_ROWS)
        try:
            conn.execute(EVENT_LOG_MERGE)
        except psycopg.errors.StringDataRightTruncation as error:
            raise PostgresWarehouseError(
                f"{EVENT_LOG}: partition {partition} has a value longer than the extractor's column allows "
                f"({reason_of(error)}); nothing of the day was merged"
            ) from None
        after = _count(conn, EVENT_LOG)
        conn.execute(f"DROP TABLE {NEW_ROWS}")
    inserted = after - before
    return {"source_rows": source, "inserted": inserted, "updated": source - inserted, "total": after}


def _take_turn(conn: PgConnection, partition: date, *, outermost: bool) -> None:
    """Waits for the day's lock, makes sure the table exists with ``_oe_deleted_at``, and holds
    the table against every other writer until the transaction ends (see the module's doc)."""
    if outermost:
        conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
    else:
        _require_read_committed(conn)
    transaction_lock(conn, partition_lock_name(EVENT_LOG, partition.isoformat()))
    create_missing_tables(conn, {EVENT_LOG: EVENT_LOG_DDL})
    conn.execute(f"LOCK TABLE {EVENT_LOG} IN SHARE ROW EXCLUSIVE MODE")
    if MODEL_DELETED_AT not in column_types(conn, EVENT_LOG):
        # Only when missing: ALTER TABLE locks out the table's readers until the transaction ends.
        conn.execute(DELETED_COLUMN_DDL)


def _require_read_committed(conn: PgConnection) -> None:
    """Inside the caller's transaction: its snapshot must not predate the locks (REPEATABLE READ
    would miss the rows of the merge it waited for, and fail on their keys)."""
    row = conn.execute("SELECT current_setting('transaction_isolation')").fetchone()
    level = str(row[0]) if row else "unknown"
    if level != "read committed":
        raise PostgresWarehouseError(
            f"{EVENT_LOG}: the merge runs at READ COMMITTED (PostgreSQL's default), and the caller's "
            f"transaction is {level.upper()}"
        )


def _partition_source_pg(conn: PgConnection) -> str:
    """The extractor's SELECT for one partition (``%s``: the day as ISO text), each time read
    according to its column's type; no ``_oe_deleted_at`` column yet reads as none deleted."""
    types = column_types(conn, CONTEXT_TABLE)

    def time_of(column: str) -> str:
        return utc_timestamp_pg(context_column(column), types.get(column, "text"))

    deleted = time_of(MODEL_DELETED_AT) if MODEL_DELETED_AT in types else "CAST(NULL AS timestamp)"
    return partition_source(time_of(CREATED_AT_COLUMN), time_of(LAST_MODIFIED_COLUMN), deleted, "%s")


def _count(conn: PgConnection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return row[0] if row and isinstance(row[0], int) else 0
