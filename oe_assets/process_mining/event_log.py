"""The Celonis extractor's event log, maintained incrementally one partition at a time.

Same table and semantics as the extractor's event-log script (`oe_assets/sql/celonis_event_log.sql`): one row per process context,
`MERGE` so a known instance gets `last_modified` and `status` updated and a new one is inserted.
Merging partition by partition gives the same table as the script over everything, without
rebuilding history. Beside the script's columns, `_oe_deleted_at` copies execution_context's mark
of a context the API no longer returns: nothing leaves the log except by `oe-assets prune`.
Times are read with :func:`~oe_assets.warehouse.sql.utc_timestamp`, so a text column with
offsets gives the right UTC instant.
"""

from __future__ import annotations

from datetime import date

import duckdb

from oe_assets.landing.retention import MODEL_DELETED_AT, ensure_model_deleted_column
from oe_assets.model.integrity import table_exists
from oe_assets.warehouse import transaction
from oe_assets.warehouse.reading import scalar_count
from oe_assets.warehouse.sql import quote_ident, utc_timestamp

EVENT_LOG = "event_log"

# The extractor's own DDL, so tools written for the Celonis model find the same types.
EVENT_LOG_DDL = (
    "CREATE TABLE IF NOT EXISTS event_log(execution_template_name varchar(256), "
    "instance_id varchar(128) PRIMARY KEY, created_at TIMESTAMP, last_modified TIMESTAMP, status varchar(64))"
)
DELETED_COLUMN_DDL = f"ALTER TABLE event_log ADD COLUMN IF NOT EXISTS {MODEL_DELETED_AT} TIMESTAMP"

CREATED_AT_COLUMN = "metadata$createdAt"
LAST_MODIFIED_COLUMN = "metadata$updatedAt"
"""execution_context's columns the log's created_at and last_modified come from."""


def context_column(column: str) -> str:
    """``column`` of execution_context, qualified as the extractor's script writes it."""
    return f'"execution_context".{quote_ident(column)}'


def partition_source(created_at: str, last_modified: str, deleted_at: str, day: str) -> str:
    """The extractor's event-log SELECT over one partition of execution_context: ``created_at``,
    ``last_modified`` and ``deleted_at`` are the engine's SQL for the three times, ``day`` its
    placeholder for the partition (DuckDB and PostgreSQL read times and bind values differently)."""
    return f"""
SELECT "execution_templates"."name" AS execution_template_name,
       "execution_context"."context$processid" AS instance_id,
       {created_at} AS created_at,
       {last_modified} AS last_modified,
       "execution_context"."status" AS status,
       {deleted_at} AS {MODEL_DELETED_AT}
FROM "execution_templates", "execution_context"
WHERE "execution_context"."context$executionTemplateID" = "execution_templates"."id"
  AND "execution_context"."_oe_partition" = {day}
"""


_PARTITION_SOURCE = partition_source(
    utc_timestamp(context_column(CREATED_AT_COLUMN)),
    utc_timestamp(context_column(LAST_MODIFIED_COLUMN)),
    context_column(MODEL_DELETED_AT),
    "?",
)

EVENT_LOG_MERGE = f"""
MERGE INTO event_log USING _oe_event_log_new AS event_log_new
ON event_log_new.instance_id = event_log.instance_id
WHEN MATCHED THEN UPDATE SET last_modified = event_log_new.last_modified, status = event_log_new.status,
    {MODEL_DELETED_AT} = event_log_new.{MODEL_DELETED_AT}
WHEN NOT MATCHED THEN INSERT (execution_template_name, instance_id, created_at, last_modified, status, {MODEL_DELETED_AT})
VALUES (event_log_new.execution_template_name, event_log_new.instance_id, event_log_new.created_at,
        event_log_new.last_modified, event_log_new.status, event_log_new.{MODEL_DELETED_AT})
"""
"""The extractor's MERGE (plus ``_oe_deleted_at``) from the partition's rows in ``_oe_event_log_new``;
the same text runs on DuckDB and on PostgreSQL 15+ (:mod:`oe_assets.process_mining.event_log_pg`)."""


def merge_event_log_partition(conn: duckdb.DuckDBPyConnection, partition: date) -> dict[str, int]:
    """Merge one creation-day partition of execution_context into event_log, in one transaction."""
    with transaction(conn):
        conn.execute(EVENT_LOG_DDL)
        conn.execute(DELETED_COLUMN_DDL)
        if not model_tables_exist(conn):  # nothing has landed yet: an empty log, not an error
            total = scalar_count(conn, "SELECT count(*) FROM event_log")
            return {"source_rows": 0, "inserted": 0, "updated": 0, "total": total}
        ensure_model_deleted_column(conn)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE _oe_event_log_new AS {_PARTITION_SOURCE}", [partition])
        before = scalar_count(conn, "SELECT count(*) FROM event_log")
        source = scalar_count(conn, "SELECT count(*) FROM _oe_event_log_new")
        conn.execute(EVENT_LOG_MERGE)
        after = scalar_count(conn, "SELECT count(*) FROM event_log")
        conn.execute("DROP TABLE _oe_event_log_new")
    inserted = after - before
    return {"source_rows": source, "inserted": inserted, "updated": source - inserted, "total": after}


def model_tables_exist(conn: duckdb.DuckDBPyConnection) -> bool:
    """Both tables the extractor's event-log script reads exist (before the first context and digital process
    land, they do not)."""
    return table_exists(conn, "execution_context") and table_exists(conn, "execution_templates")
