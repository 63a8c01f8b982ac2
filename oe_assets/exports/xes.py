"""XES export of the activity log: one trace per process context, one event per activity row.

For the flat (case-centric) tools, ProM, Apromore, pm4py. Each event has `concept:name` (the
activity), `time:timestamp` and `lifecycle:transition` `complete` (an activity is an instant); the
trace carries the context id as `concept:name` and its digital process, status and account.
Streamed: one batch of rows in memory at a time, written to a temporary file then renamed.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import quoteattr

import duckdb

from oe_assets.exports.ocel import ExportReport, replacing
from oe_assets.exports.rows import iso_utc, iter_rows
from oe_assets.exports.sanitize import sanitize_tables
from oe_assets.exports.source import require_tables, table_columns

XES_TABLES = ("activity_log", "execution_context", "execution_templates")
TRACE_ATTRIBUTES = ("digital process", "digital process id", "status", "account", "account id")

_HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0" xes.features="nested-attributes" xmlns="http://www.xes-standard.org/">
<extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
<extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
<extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
<global scope="trace"><string key="concept:name" value="__INVALID__"/></global>
<global scope="event"><string key="concept:name" value="__INVALID__"/>
<date key="time:timestamp" value="1970-01-01T00:00:00.000Z"/><string key="lifecycle:transition" value="complete"/></global>
<classifier name="Activity" keys="concept:name"/>
<string key="concept:name" value="OE process contexts (oe_assets activity_log)"/>
"""

_ROWS = """
SELECT l.case_id, l.activity, l.event_time, l.activity_type,
       coalesce(t.name, l.execution_template_name) AS "digital process", l.execution_template_id AS "digital process id",
       c.status AS status, a.name AS account, a.id AS "account id"
FROM activity_log l
LEFT JOIN (SELECT "context$processid", any_value(status) AS status FROM execution_context GROUP BY ALL) c
       ON c."context$processid" = l.case_id
LEFT JOIN execution_templates t ON t.id = l.execution_template_id
LEFT JOIN {accounts} a ON a.template_id = l.execution_template_id
WHERE l.case_id IS NOT NULL AND l.activity IS NOT NULL AND l.event_time IS NOT NULL
ORDER BY l.case_id, l.event_time, l.sort_order, l.activity
"""


def _accounts(conn: duckdb.DuckDBPyConnection) -> str:
    """(template_id, id, name) of each digital process's account; none without an accounts table."""
    if {"id", "name"} <= table_columns(conn, "accounts"):
        return "(SELECT t.id AS template_id, a.id, a.name FROM execution_templates t JOIN accounts a ON a.id = t.tenant)"
    return "(SELECT NULL::VARCHAR AS template_id, NULL::VARCHAR AS id, NULL::VARCHAR AS name WHERE false)"


def _string(key: str, value: Any) -> str:
    return f"<string key={quoteattr(key)} value={quoteattr(str(value))}/>"


def export_xes(conn: duckdb.DuckDBPyConnection, path: Path) -> ExportReport:
    """Write the activity log as XES to ``path``; the report counts traces as `process context` objects."""
    require_tables(conn, XES_TABLES)
    table = conn.execute(_ROWS.format(accounts=_accounts(conn))).to_arrow_table()
    tables, escaped = sanitize_tables({"rows": table})
    with replacing(path) as tmp, tmp.open("wb") as out:
        traces = _write_xes(tables["rows"], out)
    dropped = {"control characters escaped": escaped} if escaped else {}
    return ExportReport(path, table.num_rows, {"process context": traces}, path.stat().st_size, dropped)


def _write_xes(rows: Any, out: IO[bytes]) -> int:
    """Stream the rows (sorted by case) as traces; returns the number of traces."""
    out.write(_HEADER.encode())
    current, traces = None, 0
    for row in iter_rows(rows):
        if row["case_id"] != current:
            if current is not None:
                out.write(b"</trace>\n")
            current, traces = row["case_id"], traces + 1
            attrs = "".join(_string(k, row[k]) for k in TRACE_ATTRIBUTES if row[k] is not None)
            out.write(f"<trace>{_string('concept:name', current)}{attrs}\n".encode())
        out.write(
            (
                f"<event>{_string('concept:name', row['activity'])}"
                f'<date key="time:timestamp" value={quoteattr(iso_utc(row["event_time"]))}/>'
                f"{_string('lifecycle:transition', 'complete')}{_string('activity_type', row['activity_type'])}</event>\n"
            ).encode()
        )
    if current is not None:
        out.write(b"</trace>\n")
    out.write(b"</log>\n")
    return traces
