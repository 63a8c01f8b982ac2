"""The seed's event log, maintained incrementally one partition at a time.

Same table and semantics as the seed's script (section 10): one row per process context,
`MERGE` so a known instance gets `last_modified` and `status` updated and a new one is inserted.
Merging partition by partition gives the same table as the script over everything, without
rebuilding history.
"""

from __future__ import annotations

from datetime import date

import duckdb

from oe_assets import faultpoints
from oe_assets.model.integrity import table_exists
from oe_assets.warehouse import transaction

EVENT_LOG = "event_log"

# The seed's own DDL, so tools written for the Celonis model find the same types.
EVENT_LOG_DDL = (
    "CREATE TABLE IF NOT EXISTS event_log(execution_template_name varchar(256), "
    "instance_id varchar(128) PRIMARY KEY, created_at TIMESTAMP, last_modified TIMESTAMP, status varchar(64))"
)

_PARTITION_SOURCE = """
SELECT "execution_templates"."name" AS execution_template_name,
       "execution_context"."context$processid" AS instance_id,
       TRY_CAST("execution_context"."metadata$createdAt" AS TIMESTAMP) AS created_at,
       TRY_CAST("execution_context"."metadata$updatedAt" AS TIMESTAMP) AS last_modified,
       "execution_context"."status" AS status
FROM "execution_templates", "execution_context"
WHERE "execution_context"."context$executionTemplateID" = "execution_templates"."id"
  AND "execution_context"."_oe_partition" = ?
"""

_MERGE = """
MERGE INTO event_log USING _oe_event_log_new AS event_log_new
ON event_log_new.instance_id = event_log.instance_id
WHEN MATCHED THEN UPDATE SET last_modified = event_log_new.last_modified, status = event_log_new.status
WHEN NOT MATCHED THEN INSERT (execution_template_name, instance_id, created_at, last_modified, status)
VALUES (event_log_new.execution_template_name, event_log_new.instance_id, event_log_new.created_at,
        event_log_new.last_modified, event_log_new.status)
"""


def merge_event_log_partition(conn: duckdb.DuckDBPyConnection, partition: date) -> dict[str, int]:
    """Merge one creation-day partition of execution_context into event_log, in one transaction."""
    with transaction(conn):
        conn.execute(EVENT_LOG_DDL)
        if not model_tables_exist(conn):  # nothing has landed yet: an empty log, not an error
            total = _count(conn, "SELECT count(*) FROM event_log")
            return {"source_rows": 0, "inserted": 0, "updated": 0, "deleted": 0, "total": total}
        conn.execute(f"CREATE OR REPLACE TEMP TABLE _oe_event_log_new AS {_PARTITION_SOURCE}", [partition])
        before = _count(conn, "SELECT count(*) FROM event_log")
        source = _count(conn, "SELECT count(*) FROM _oe_event_log_new")
        conn.execute(_MERGE)
        # A context OE deleted individually (its day was refreshed without it) leaves the model
        # everywhere, so the event log stays 1:1 with execution_context. Contexts of a deleted
        # digital process are never deleted: raw landing keeps them, and so the source keeps them.
        deleted = conn.execute(
            """DELETE FROM event_log WHERE CAST(created_at AS DATE) = $p
               AND instance_id NOT IN (SELECT instance_id FROM _oe_event_log_new)
               AND instance_id NOT IN (SELECT "context$processid" FROM execution_context)""",
            {"p": partition},
        ).fetchone()
        removed = int(deleted[0]) if deleted else 0
        after = _count(conn, "SELECT count(*) FROM event_log")
        conn.execute("DROP TABLE _oe_event_log_new")
        faultpoints.checkpoint(faultpoints.EVENT_LOG_BEFORE_COMMIT)
    inserted = after - before + removed
    return {
        "source_rows": source,
        "inserted": inserted,
        "updated": source - inserted,
        "deleted": removed,
        "total": after,
    }


def model_tables_exist(conn: duckdb.DuckDBPyConnection) -> bool:
    """Both tables the seed's script reads exist (before the first context and digital process
    land, they do not)."""
    return table_exists(conn, "execution_context") and table_exists(conn, "execution_templates")


def _count(conn: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0
