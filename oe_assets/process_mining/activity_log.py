"""An activity-level log for process mining: one row per (case, activity, timestamp).

How each activity is derived (case = one process context, `case_id` = `context$processid`):

| activity                | activity_type | timestamp                                  | source                                   |
|-------------------------|---------------|--------------------------------------------|------------------------------------------|
| `Process started`       | start         | `metadata.createdAt`                       | execution_context                        |
| the event-type key, e.g. `check_stock` | step | the key's own time (below)          | execution_context column of that time    |
| `Status: <status>`      | status        | `metadata.updatedAt` when that status was first observed by a load | raw_process_context_status_history |
| `Process <status>`      | end           | `metadata.updatedAt`, for finished/failed/stopped runs | execution_context              |

**Which event-type keys become activities.** An event-type key is a top-level key of `context`
(`order.created`, `check_stock`, `_timer-event`, ...; not `context.metadata`, which holds the run's
ids). It becomes a `step` activity when its payload carries a time of its own, read from the first
of these fields that holds a readable timestamp (:data:`STEP_TIME_FIELDS`, in this order):
`metadata.occurredAt` (cloud functions), `occurredAt`, `metadata.timestamp`, `timestamp`,
`metadata.createdAt`, `createdAt`, `firedAt` (timer events). Only these direct fields count: a date
deeper in the payload (`forms[].payload.expectedDeliveryDate`, a tracking history) describes a
business object, not when the event happened. A key without such a field (`order.created`,
`order.found`: OE stores the payload only) has no instant of its own and gives no activity; the
document says only that it happened between `createdAt` and `updatedAt`, and guessing would put
false times into every throughput figure.

**No two activities say the same thing at the same instant.** `Status: finished` (a load saw the
run finished) and `Process finished` (the run ended) at the same instant are one fact: the
`Status:` row is dropped and the `end` row kept. They stay both when their instants differ (a
load saw the status at an earlier `updatedAt` than the final one). Identical rows are kept once.

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


STEP_TIME_FIELDS: tuple[tuple[str, ...], ...] = (
    ("metadata", "occurredAt"),
    ("occurredAt",),
    ("metadata", "timestamp"),
    ("timestamp",),
    ("metadata", "createdAt"),
    ("createdAt",),
    ("firedAt",),
)
"""Where an event-type key's payload says when it happened, first readable one wins."""

NOT_EVENT_KEYS = frozenset({"metadata"})
"""Top-level keys of `context` that are the run's own data, not events."""


def step_timestamp_columns(conn: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Event-type key -> its time columns in execution_context, in :data:`STEP_TIME_FIELDS` order.

    Read from the flattener's column map (`_oe_columns`), so a key seen for the first time today
    is picked up without a code change."""
    rows = conn.execute(
        "SELECT column_name, json_path FROM _oe_columns WHERE table_name = 'execution_context' ORDER BY column_name"
    ).fetchall()
    ranked: dict[str, list[tuple[int, str]]] = {}
    for column, path_json in rows:
        path = orjson.loads(path_json) if isinstance(path_json, str) else path_json
        if not isinstance(path, list) or len(path) < 3 or path[0] != "context" or path[1] in NOT_EVENT_KEYS:
            continue
        suffix = tuple(str(p) for p in path[2:])
        if suffix in STEP_TIME_FIELDS:
            ranked.setdefault(str(path[1]), []).append((STEP_TIME_FIELDS.index(suffix), str(column)))
    return {key: [column for _, column in sorted(found)] for key, found in sorted(ranked.items())}


def _step_select(event_key: str, columns: list[str], ctx: str, key: str, tpl: str, base: str) -> str:
    """One event-type key's activities: the first of its time columns that reads as a timestamp."""
    times = [utc_timestamp(f"{ctx}.{quote_ident(c)}") for c in columns]
    time = times[0] if len(times) == 1 else f"coalesce({', '.join(times)})"
    sources = [
        f"WHEN {t} IS NOT NULL THEN {quote_literal('execution_context.' + c)}"
        for t, c in zip(times, columns, strict=True)
    ]
    source = f"CASE {' '.join(sources)} END"
    return f"""SELECT {key}, {quote_literal(event_key)}, {time}, 'step', 1, {tpl}, {source} {base}"""


_SAME_FACT = """NOT (u.activity_type = 'status' AND EXISTS (
        SELECT 1 FROM u AS e WHERE e.activity_type = 'end' AND e.case_id = u.case_id
        AND e.event_time = u.event_time AND e.activity = 'Process ' || substr(u.activity, 9)))"""
"""A `Status: x` row that repeats `Process x` at the same instant (see the module's docstring)."""


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
    for event_key, columns in step_timestamp_columns(conn).items():
        parts.append(_step_select(event_key, columns, ctx, key, tpl, base))
    union = "\nUNION ALL\n".join(parts)
    return f"""WITH u AS (
        SELECT DISTINCT * FROM ({union}) AS u(case_id, activity, event_time, activity_type, sort_order,
            execution_template_id, execution_template_name, source) WHERE event_time IS NOT NULL
    )
    SELECT u.*, $partition::DATE FROM u WHERE {_SAME_FACT}"""


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
