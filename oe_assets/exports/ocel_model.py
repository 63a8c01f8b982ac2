"""The object-centric view of the warehouse, as the tables OCEL 2.0 is made of, built in DuckDB.

Why a model apart from the writers: the three OCEL 2.0 formats (JSON, SQLite, XML) carry the same
content, so it is computed once, set-wise in SQL, and each writer only streams it out.

Events are the activity log's rows. Objects:

| type | id | attributes | events it takes part in (qualifier) |
|---|---|---|---|
| `process context` | `context$processid` | `status`, at each time it was observed | every event of the case (`case`) |
| `digital process` | `execution_templates.id` | name, state, version | every event of its contexts (`digital process`) |
| `account` | `accounts.id` (the template's tenant) | name, state | every event of its contexts (`account`) |
| business objects | see :mod:`~oe_assets.exports.business_objects` (quote, order, shipment, …) | the values beside the id | the case's events named by the step key that held the id (qualifier = that key); when that step has no event, the case's last event |

Object-to-object: context → digital process (`digital process`), digital process → account
(`account`), business object → each context whose payload named it (`process context`). Only
objects some event refers to are exported (pm4py's importers drop the others): a digital process
with no run in the log is not there. An id that two types share (an order numbered like a
shipment) keeps its own id in the first three types and becomes `<type>:<id>` in the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from oe_assets.exports.business_objects import ROOT_KEY_COLUMN, ObjectSource, find_object_sources
from oe_assets.exports.sanitize import sanitize_tables
from oe_assets.exports.source import require_tables, table_columns
from oe_assets.warehouse.reading import scalar_count
from oe_assets.warehouse.sql import quote_ident, quote_literal, utc_timestamp

CONTEXT_TYPE = "process context"
DIGITAL_PROCESS_TYPE = "digital process"
ACCOUNT_TYPE = "account"
CORE_TYPES = (CONTEXT_TYPE, DIGITAL_PROCESS_TYPE, ACCOUNT_TYPE)
OCEL_TABLES = ("activity_log", "execution_context", "execution_templates", "_oe_columns", "_oe_tables")
EVENT_ATTRIBUTES = {"activity_type": "string", "source": "string"}
_TEMPLATE_ATTRS = (
    ("name", "name", "string"),
    ("state", "state", "string"),
    ("version", "version$number", "string"),
)
_ACCOUNT_ATTRS = (("name", "name", "string"), ("state", "state", "string"))


@dataclass
class OcelData:
    """OCEL 2.0's content as Arrow tables (times are UTC, naive), plus what could not be carried."""

    events: pa.Table  # ocel_id, ocel_type, ocel_time, activity_type, source
    objects: pa.Table  # ocel_id, ocel_type
    attributes: pa.Table  # ocel_id, ocel_type, name, time (null: no change time known), value (text)
    e2o: pa.Table  # event_id, object_id, qualifier
    o2o: pa.Table  # source_id, target_id, qualifier
    attribute_types: dict[str, dict[str, str]]  # object type -> attribute -> OCEL type
    dropped: dict[str, int] = field(default_factory=dict)  # what was escaped or dropped, by reason

    def objects_per_type(self) -> dict[str, int]:
        counts = self.objects.group_by("ocel_type").aggregate([("ocel_id", "count")]).to_pylist()
        return {str(r["ocel_type"]): int(r["ocel_id_count"]) for r in counts}

    def o2o_by_source(self) -> dict[str, list[tuple[str, str]]]:
        """Each source object's (target, qualifier) pairs: small, one or two per object."""
        grouped: dict[str, list[tuple[str, str]]] = {}
        for r in self.o2o.to_pylist():
            grouped.setdefault(r["source_id"], []).append((r["target_id"], r["qualifier"]))
        return grouped

    def event_types(self) -> list[str]:
        return sorted(str(t) for t in self.events.column("ocel_type").unique().to_pylist())


def build_ocel(conn: duckdb.DuckDBPyConnection) -> OcelData:
    """Everything an OCEL 2.0 file holds, from the warehouse (read-only: temporary tables only)."""
    require_tables(conn, OCEL_TABLES)
    sources = find_object_sources(conn)
    conn.execute(_EVENTS_SQL)
    _create_refs(conn, sources)
    conn.execute(_OBJECTS_SQL.format(accounts=_accounts_join(conn)))
    dropped = _create_attributes(conn, sources)
    conn.execute(_RELATIONS_SQL.format(accounts=_accounts_join(conn)))
    tables = {name: conn.execute(sql).to_arrow_table() for name, sql in _FINAL_SQL.items()}
    tables, escaped = sanitize_tables(tables)
    if escaped:
        dropped["control characters escaped"] = escaped
    return OcelData(
        events=tables["events"],
        objects=tables["objects"],
        attributes=tables["attributes"],
        e2o=tables["e2o"],
        o2o=tables["o2o"],
        attribute_types=_attribute_types(conn, sources),
        dropped=dropped,
    )


_EVENTS_SQL = """
CREATE OR REPLACE TEMP TABLE x_events AS
SELECT case_id || '#' || row_number() OVER (PARTITION BY case_id ORDER BY event_time, sort_order, activity) AS ocel_id,
       activity AS ocel_type, event_time AS ocel_time, case_id, activity_type, source, execution_template_id,
       row_number() OVER (PARTITION BY case_id ORDER BY event_time DESC, sort_order DESC, activity DESC) AS from_last
FROM activity_log WHERE case_id IS NOT NULL AND activity IS NOT NULL AND event_time IS NOT NULL
"""


def _accounts_join(conn: duckdb.DuckDBPyConnection) -> str:
    """The accounts of the log's digital processes (none when the catalog has no accounts table)."""
    if "id" not in table_columns(conn, "accounts"):
        return "(SELECT NULL::VARCHAR AS template_id, NULL::VARCHAR AS account_id WHERE false)"
    return """(SELECT t.id AS template_id, a.id AS account_id FROM execution_templates t
               JOIN accounts a ON a.id = t.tenant)"""


def _create_refs(conn: duckdb.DuckDBPyConnection, sources: list[ObjectSource]) -> None:
    """x_refs(case_id, step_key, object_type, raw_id): each business object a context names."""
    parts = [
        f"""SELECT {quote_ident(ROOT_KEY_COLUMN)}::VARCHAR, {quote_literal(s.step_key)}, {quote_literal(s.object_type)},
                   {quote_ident(s.id_column)}::VARCHAR
            FROM {quote_ident(s.table)} WHERE nullif(trim({quote_ident(s.id_column)}::VARCHAR), '') IS NOT NULL"""
        for s in sources
    ]
    union = "\nUNION\n".join(parts) or "SELECT NULL, NULL, NULL, NULL WHERE false"
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE x_refs AS SELECT DISTINCT * FROM ({union})
                AS r(case_id, step_key, object_type, raw_id)
            WHERE case_id IN (SELECT case_id FROM x_events)"""
    )


_OBJECTS_SQL = """
CREATE OR REPLACE TEMP TABLE x_objects AS
WITH raw AS (
    SELECT DISTINCT 'process context' AS object_type, case_id AS raw_id FROM x_events
    UNION SELECT DISTINCT 'digital process', execution_template_id FROM x_events WHERE execution_template_id IS NOT NULL
    UNION SELECT DISTINCT 'account', a.account_id FROM {accounts} a
          WHERE a.template_id IN (SELECT execution_template_id FROM x_events)
    UNION SELECT DISTINCT object_type, raw_id FROM x_refs
)
SELECT object_type, raw_id,
       CASE WHEN count(*) OVER (PARTITION BY raw_id) > 1
                 AND object_type NOT IN ('process context', 'digital process', 'account')
            THEN object_type || ':' || raw_id ELSE raw_id END AS oid
FROM raw
"""


def _create_attributes(conn: duckdb.DuckDBPyConnection, sources: list[ObjectSource]) -> dict[str, int]:
    """x_attrs(object_type, raw_id, name, time, value): one value per static attribute, and the
    contexts' statuses at the times they were observed. Non-finite numbers are left out, counted."""
    parts, nan_checks = [_status_sql(conn)], []
    for object_type, table, id_column, attrs in _attribute_sources(conn, sources):
        for name, column, kind in attrs:
            col, oid = quote_ident(column), quote_ident(id_column)
            finite = f" AND isfinite({col})" if kind == "float" else ""
            parts.append(
                f"""SELECT {quote_literal(object_type)}, {oid}::VARCHAR, {quote_literal(name)}, NULL::TIMESTAMP,
                           min({col}::VARCHAR) FROM {quote_ident(table)}
                    WHERE {col} IS NOT NULL{finite} GROUP BY ALL"""
            )
            if kind == "float":
                nan_checks.append(f"SELECT count(*) FROM {quote_ident(table)} WHERE NOT isfinite({col})")
    union = "\nUNION ALL\n".join(parts)
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE x_attrs AS SELECT u.* FROM ({union}) AS u(object_type, raw_id, name, time, value)
            SEMI JOIN x_objects o ON o.object_type = u.object_type AND o.raw_id = u.raw_id"""
    )
    nan = sum(scalar_count(conn, q) for q in nan_checks)
    return {"NaN or infinite numbers dropped": nan} if nan else {}


def _attribute_sources(
    conn: duckdb.DuckDBPyConnection, sources: list[ObjectSource]
) -> list[tuple[str, str, str, list[tuple[str, str, str]]]]:
    """(object type, table, id column, [(attribute, column, OCEL type)]) for every attribute source."""
    found = []
    for object_type, table, attrs in (
        (DIGITAL_PROCESS_TYPE, "execution_templates", _TEMPLATE_ATTRS),
        (ACCOUNT_TYPE, "accounts", _ACCOUNT_ATTRS),
    ):
        present = table_columns(conn, table)
        kept = [a for a in attrs if a[1] in present]
        if "id" in present and kept:
            found.append((object_type, table, "id", kept))
    for s in sources:
        if s.attributes:
            found.append(
                (s.object_type, s.table, s.id_column, [(a.name, a.column, a.ocel_type) for a in s.attributes])
            )
    return found


def _status_sql(conn: duckdb.DuckDBPyConnection) -> str:
    """The contexts' statuses with their times: every status the loads observed, and the current one."""
    current = f"""SELECT 'process context', "context$processid"::VARCHAR, 'status',
                         {utc_timestamp('"metadata$updatedAt"')}, status::VARCHAR
                  FROM execution_context WHERE status IS NOT NULL"""
    if {"process_id", "status", "updated_at", "observed_at"} <= table_columns(
        conn, "raw_process_context_status_history"
    ):
        current += """ UNION SELECT 'process context', process_id, 'status', coalesce(updated_at, observed_at), status
                       FROM raw_process_context_status_history WHERE status IS NOT NULL"""
    return current


_RELATIONS_SQL = """
CREATE OR REPLACE TEMP TABLE x_e2o AS
SELECT ocel_id AS event_id, 'process context' AS object_type, case_id AS raw_id, 'case' AS qualifier FROM x_events
UNION ALL SELECT ocel_id, 'digital process', execution_template_id, 'digital process' FROM x_events
          WHERE execution_template_id IS NOT NULL
UNION ALL SELECT e.ocel_id, 'account', a.account_id, 'account' FROM x_events e
          JOIN {accounts} a ON a.template_id = e.execution_template_id
UNION ALL (
    WITH matched AS (
        SELECT e.ocel_id, r.object_type, r.raw_id, r.step_key, r.case_id FROM x_refs r
        JOIN x_events e ON e.case_id = r.case_id AND e.ocel_type = r.step_key
    )
    SELECT ocel_id, object_type, raw_id, step_key FROM matched
    UNION ALL
    SELECT e.ocel_id, r.object_type, r.raw_id, r.step_key FROM x_refs r
    JOIN x_events e ON e.case_id = r.case_id AND e.from_last = 1
    ANTI JOIN matched m
         ON m.case_id = r.case_id AND m.object_type = r.object_type AND m.raw_id = r.raw_id AND m.step_key = r.step_key
);
CREATE OR REPLACE TEMP TABLE x_o2o AS
SELECT DISTINCT 'process context' AS source_type, case_id AS source_raw, 'digital process' AS target_type,
       execution_template_id AS target_raw, 'digital process' AS qualifier
FROM x_events WHERE execution_template_id IS NOT NULL
UNION SELECT DISTINCT 'digital process', a.template_id, 'account', a.account_id, 'account' FROM {accounts} a
      WHERE a.template_id IN (SELECT execution_template_id FROM x_events)
UNION SELECT DISTINCT object_type, raw_id, 'process context', case_id, 'process context' FROM x_refs;
"""

_FINAL_SQL = {
    "events": "SELECT ocel_id, ocel_type, ocel_time, activity_type, source FROM x_events ORDER BY ocel_time, ocel_id",
    "objects": "SELECT oid AS ocel_id, object_type AS ocel_type FROM x_objects ORDER BY object_type, oid",
    "attributes": """SELECT o.oid AS ocel_id, o.object_type AS ocel_type, a.name, a.time, a.value FROM x_attrs a
                     JOIN x_objects o USING (object_type, raw_id) ORDER BY o.oid, a.time NULLS FIRST, a.name""",
    "e2o": """SELECT DISTINCT r.event_id, o.oid AS object_id, r.qualifier FROM x_e2o r
              JOIN x_objects o USING (object_type, raw_id) ORDER BY 1, 2, 3""",
    "o2o": """SELECT DISTINCT s.oid AS source_id, t.oid AS target_id, r.qualifier FROM x_o2o r
              JOIN x_objects s ON s.object_type = r.source_type AND s.raw_id = r.source_raw
              JOIN x_objects t ON t.object_type = r.target_type AND t.raw_id = r.target_raw ORDER BY 1, 2, 3""",
}


def _attribute_types(
    conn: duckdb.DuckDBPyConnection, sources: list[ObjectSource]
) -> dict[str, dict[str, str]]:
    """Each object type's attributes and OCEL types; a name with two types is text."""
    types: dict[str, dict[str, str]] = {CONTEXT_TYPE: {"status": "string"}}
    for object_type, _table, _id, attrs in _attribute_sources(conn, sources):
        declared = types.setdefault(object_type, {})
        for name, _column, kind in attrs:
            declared[name] = kind if declared.get(name, kind) == kind else "string"
    return types
