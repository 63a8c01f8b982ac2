"""An activity-level log for process mining: one row per (case, activity, timestamp).

How each activity is derived (case = one process context, `case_id` = `context$processid`):

| activity                | activity_type | timestamp                                  | source                                   |
|-------------------------|---------------|--------------------------------------------|------------------------------------------|
| `Process started`       | start         | `metadata.createdAt`                       | execution_context                        |
| the event-type key, e.g. `check_stock` | step | the step output's `metadata.occurredAt` | execution_context column `context$<key>$metadata$occurredAt` |
| `Status: <status>`      | status        | `metadata.updatedAt` when that status was first observed by a load | raw_process_context_status_history |
| `Process <status>`      | end           | `metadata.updatedAt`, for finished/failed/stopped runs | execution_context              |

Status changes are history: a run seen `running` and later `finished` keeps both rows. Times
are read with :func:`~oe_assets.warehouse.sql.utc_timestamp` (TIMESTAMP or text with any offset,
as UTC). A context the API no longer returns keeps its activities (it stays in execution_context,
marked `_oe_deleted_at`); only `oe-assets prune --deleted` removes them.
"""

from __future__ import annotations

from datetime import date

import duckdb
import orjson

from oe_assets.landing.raw_contexts import STATUS_HISTORY
from oe_assets.process_mining.event_log import model_tables_exist
from oe_assets.warehouse import quote_ident, quote_literal, transaction
from oe_assets.warehouse.sql import utc_timestamp

ACTIVITY_LOG = "activity_log"
TERMINAL_STATUSES = ("finished", "failed", "stopped")

ACTIVITY_LOG_DDL = f"""
CREATE TABLE IF NOT EXISTS {ACTIVITY_LOG} (
    case_id VARCHAR NOT NULL,
    activity VARCHAR NOT NULL,
    event_time TIMESTAMP NOT NULL,
    activity_type VARCHAR NOT NULL,
    sort_order INTEGER NOT NULL,
    execution_template_id VARCHAR,
    execution_template_name VARCHAR,
    source VARCHAR NOT NULL,
    _oe_partition DATE NOT NULL
)
"""


def step_timestamp_columns(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(event-type key, column) for every `context.<key>.metadata.occurredAt` seen so far."""
    rows = conn.execute(
        "SELECT column_name, json_path FROM _oe_columns WHERE table_name = 'execution_context' ORDER BY column_name"
    ).fetchall()
    found = []
    for column, path_json in rows:
        path = orjson.loads(path_json) if isinstance(path_json, str) else path_json
        if (
            isinstance(path, list)
            and len(path) == 4
            and path[0] == "context"
            and path[2:] == ["metadata", "occurredAt"]
        ):
            found.append((str(path[1]), str(column)))
    return found


def _activity_select(conn: duckdb.DuckDBPyConnection) -> str:
    ctx = '"execution_context"'
    base = f"""FROM {ctx} LEFT JOIN "execution_templates" t ON {ctx}."context$executionTemplateID" = t.id
               WHERE {ctx}._oe_partition = $partition"""
    key = f'{ctx}."context$processid"'
    tpl = f'{ctx}."context$executionTemplateID", t.name'
    parts = [
        f"""SELECT {key}, 'Process started', {utc_timestamp(f'{ctx}."metadata$createdAt"')}, 'start', 0, {tpl},
                   'execution_context.metadata$createdAt' {base}""",
        f"""SELECT {key}, 'Process ' || {ctx}.status, {utc_timestamp(f'{ctx}."metadata$updatedAt"')}, 'end', 3,
                   {tpl}, 'execution_context.metadata$updatedAt' {base}
                   AND {ctx}.status IN ({", ".join(quote_literal(s) for s in TERMINAL_STATUSES)})""",
        f"""SELECT h.process_id, 'Status: ' || h.status, coalesce(h.updated_at, h.observed_at), 'status', 2, {tpl},
                   '{STATUS_HISTORY}'
            FROM {STATUS_HISTORY} h JOIN {ctx} ON h.process_id = {key}
            LEFT JOIN "execution_templates" t ON {ctx}."context$executionTemplateID" = t.id
            WHERE {ctx}._oe_partition = $partition AND h.status IS NOT NULL""",
    ]
    for event_key, column in step_timestamp_columns(conn):
        parts.append(
            f"""SELECT {key}, {quote_literal(event_key)}, {utc_timestamp(f"{ctx}.{quote_ident(column)}")}, 'step', 1,
                       {tpl}, {quote_literal("execution_context." + column)} {base}"""
        )
    union = "\nUNION ALL\n".join(parts)
    return f"""SELECT DISTINCT * FROM (
        SELECT u.* , $partition::DATE FROM ({union}) AS u(case_id, activity, event_time, activity_type, sort_order,
            execution_template_id, execution_template_name, source)
    ) WHERE event_time IS NOT NULL"""


def rebuild_activity_log_partition(conn: duckdb.DuckDBPyConnection, partition: date) -> dict[str, int]:
    """Replace the partition's activities in one transaction; returns counts per activity type."""
    with transaction(conn):
        conn.execute(ACTIVITY_LOG_DDL)
        conn.execute(f"DELETE FROM {ACTIVITY_LOG} WHERE _oe_partition = ?", [partition])
        if model_tables_exist(conn):  # before anything has landed, the day has no activities
            conn.execute(f"INSERT INTO {ACTIVITY_LOG} {_activity_select(conn)}", {"partition": partition})
        counts = conn.execute(
            f"SELECT activity_type, count(*) FROM {ACTIVITY_LOG} WHERE _oe_partition = ? GROUP BY ALL",
            [partition],
        ).fetchall()
    return {str(kind): int(n) for kind, n in counts}
