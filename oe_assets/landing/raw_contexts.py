"""Land process contexts verbatim, one creation day (or a range of days) at a time.

The raw table is the project's own copy of the data: OE deletes contexts when their digital
process is deleted, so a refresh only replaces the rows of the digital processes it actually
read; rows of vanished digital processes stay landed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import orjson
import pyarrow as pa

from oe_assets import faultpoints
from oe_assets.client import OeClient
from oe_assets.timestamps import day_window, parse_oe_timestamp, utc_now
from oe_assets.warehouse import transaction

RAW_CONTEXTS = "raw_process_contexts"
STATUS_HISTORY = "raw_process_context_status_history"
QUARANTINE = "_oe_quarantine"
FAMILY = "raw_process_contexts"

RAW_CONTEXTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {RAW_CONTEXTS} (
    process_id VARCHAR NOT NULL,
    execution_template_id VARCHAR,
    execution_template_version_id VARCHAR,
    tenant VARCHAR,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP,
    status VARCHAR,
    partition_date DATE NOT NULL,
    document JSON NOT NULL,
    document_sha256 VARCHAR NOT NULL,
    loaded_at TIMESTAMP NOT NULL
)
"""

STATUS_HISTORY_DDL = f"""
CREATE TABLE IF NOT EXISTS {STATUS_HISTORY} (
    process_id VARCHAR NOT NULL,
    status VARCHAR,
    updated_at TIMESTAMP,
    observed_at TIMESTAMP NOT NULL,
    partition_date DATE NOT NULL
)
"""

QUARANTINE_DDL = f"""
CREATE TABLE IF NOT EXISTS {QUARANTINE} (
    family VARCHAR, partition_key VARCHAR, record_key VARCHAR, reason VARCHAR,
    document VARCHAR, quarantined_at TIMESTAMP
)
"""

_STAGE_SCHEMA = pa.schema(
    [
        ("process_id", pa.string()),
        ("execution_template_id", pa.string()),
        ("execution_template_version_id", pa.string()),
        ("tenant", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us")),
        ("status", pa.string()),
        ("partition_date", pa.date32()),
        ("document", pa.string()),
        ("document_sha256", pa.string()),
        ("queried_template_id", pa.string()),
    ]
)


@dataclass
class QuarantinedRaw:
    partition_key: str
    record_key: str | None
    reason: str
    document: str


@dataclass
class RawLandingReport:
    """What one landing did; becomes Dagster metadata."""

    rows_per_partition: dict[str, int] = field(default_factory=dict)
    templates_read: list[str] = field(default_factory=list)
    quarantined: list[QuarantinedRaw] = field(default_factory=list)
    duplicates_merged: int = 0
    outside_window: int = 0
    status_changes: int = 0
    api_pages: int = 0
    api_requests: int = 0
    api_retries: int = 0

    @property
    def rows(self) -> int:
        return sum(self.rows_per_partition.values())


def ensure_raw_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(RAW_CONTEXTS_DDL)
    conn.execute(STATUS_HISTORY_DDL)
    conn.execute(QUARANTINE_DDL)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _stage_row(
    doc: object, queried_template_id: str, first_day: date, end_day: date
) -> tuple[dict[str, object] | None, str | None]:
    """A staging row, or the reason the record cannot be landed."""
    if not isinstance(doc, dict):
        return None, f"record is a JSON {type(doc).__name__}, not an object"
    context = doc.get("context")
    metadata = doc.get("metadata")
    if not isinstance(context, dict):
        return None, "context is missing or not an object"
    process_id = context.get("processid")
    if not isinstance(process_id, str) or not process_id:
        return None, "context.processid is missing or not a non-empty string"
    if not isinstance(metadata, dict):
        return None, "metadata is missing or not an object"
    created_at = parse_oe_timestamp(metadata.get("createdAt"))
    if created_at is None:
        return None, f"metadata.createdAt {metadata.get('createdAt')!r} is not an ISO-8601 timestamp"
    if not first_day <= created_at.date() < end_day:
        return {"outside": True}, None
    raw_updated = metadata.get("updatedAt")
    updated_at = parse_oe_timestamp(raw_updated)
    text = orjson.dumps(doc).decode()
    return {
        "process_id": process_id,
        "execution_template_id": _text(context.get("executionTemplateID")),
        "execution_template_version_id": _text(context.get("executionTemplateVersionID")),
        "tenant": _text(metadata.get("tenant")),
        "created_at": created_at,
        "updated_at": updated_at,
        "status": _text(doc.get("status")),
        "partition_date": created_at.date(),
        "document": text,
        "document_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "queried_template_id": queried_template_id,
    }, None


def _record_key(doc: object) -> str | None:
    if isinstance(doc, dict) and isinstance(doc.get("context"), dict):
        key = doc["context"].get("processid")
        return key if isinstance(key, str) else None
    return None


def fetch_into_stage(
    conn: duckdb.DuckDBPyConnection,
    client: OeClient,
    template_ids: Sequence[str],
    days: Sequence[date],
    report: RawLandingReport,
) -> None:
    """Stream the days' contexts into a temporary staging table; nothing permanent is touched."""
    first_day, last_day = min(days), max(days)
    end_day = last_day + timedelta(days=1)
    since, _ = day_window(first_day)
    until, _ = day_window(end_day)
    wanted = set(days)
    conn.execute("DROP TABLE IF EXISTS _oe_stage_raw")
    conn.execute(_stage_ddl("_oe_stage_raw"))
    for template_id in template_ids:
        for page in client.iter_process_context_pages(template_id, created_since=since, created_before=until):
            rows: list[dict[str, object]] = []
            for doc in page:
                row, reason = _stage_row(doc, template_id, first_day, end_day)
                if reason is not None:
                    report.quarantined.append(
                        QuarantinedRaw(first_day.isoformat(), _record_key(doc), reason, _dump(doc))
                    )
                elif row is not None and row.get("outside"):
                    report.outside_window += 1
                elif row is not None and row["partition_date"] in wanted:
                    rows.append(row)
                elif row is not None:
                    report.outside_window += 1
            if rows:
                conn.register("_oe_stage_page", pa.Table.from_pylist(rows, schema=_STAGE_SCHEMA))
                conn.execute("INSERT INTO _oe_stage_raw SELECT * FROM _oe_stage_page")
                conn.unregister("_oe_stage_page")
        report.templates_read.append(template_id)


def _dump(doc: object) -> str:
    try:
        return orjson.dumps(doc).decode()
    except TypeError:
        return repr(doc)


def _stage_ddl(name: str) -> str:
    return f"""CREATE TEMP TABLE {name} (
        process_id VARCHAR, execution_template_id VARCHAR, execution_template_version_id VARCHAR,
        tenant VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP, status VARCHAR,
        partition_date DATE, document VARCHAR, document_sha256 VARCHAR, queried_template_id VARCHAR)"""


def commit_stage(
    conn: duckdb.DuckDBPyConnection, days: Sequence[date], report: RawLandingReport, loaded_at: datetime
) -> None:
    """Replace the days' rows of the digital processes read, in one transaction."""
    day_list = sorted(set(days))
    templates = report.templates_read
    staged = conn.execute("SELECT count(*), count(DISTINCT process_id) FROM _oe_stage_raw").fetchone()
    assert staged is not None
    report.duplicates_merged = int(staged[0]) - int(staged[1])
    with transaction(conn):
        ensure_raw_tables(conn)
        conn.execute(
            """CREATE TEMP TABLE _oe_stage_latest AS
               SELECT * EXCLUDE (queried_template_id) FROM _oe_stage_raw
               QUALIFY row_number() OVER (
                   PARTITION BY process_id ORDER BY updated_at DESC NULLS LAST, document_sha256) = 1"""
        )
        # Status history: a row whenever the observed status differs from the last one observed.
        changes = conn.execute(
            f"""INSERT INTO {STATUS_HISTORY}
                SELECT s.process_id, s.status, s.updated_at, ?, s.partition_date
                FROM _oe_stage_latest s
                LEFT JOIN (
                    SELECT process_id, status FROM {STATUS_HISTORY}
                    QUALIFY row_number() OVER (
                        PARTITION BY process_id ORDER BY observed_at DESC, updated_at DESC NULLS LAST) = 1
                ) h USING (process_id)
                WHERE h.process_id IS NULL OR h.status IS DISTINCT FROM s.status""",
            [loaded_at],
        ).fetchone()
        report.status_changes = int(changes[0]) if changes else 0
        conn.execute(
            f"""DELETE FROM {RAW_CONTEXTS}
                WHERE partition_date IN (SELECT unnest(?::DATE[]))
                  AND (execution_template_id IN (SELECT unnest(?::VARCHAR[]))
                       OR process_id IN (SELECT process_id FROM _oe_stage_latest))""",
            [day_list, templates],
        )
        conn.execute(
            f"INSERT INTO {RAW_CONTEXTS} BY NAME SELECT *, ?::TIMESTAMP AS loaded_at FROM _oe_stage_latest",
            [loaded_at],
        )
        keys = [d.isoformat() for d in day_list]
        conn.execute(
            f"DELETE FROM {QUARANTINE} WHERE family = ? AND partition_key IN (SELECT unnest(?::VARCHAR[]))",
            [FAMILY, keys],
        )
        if report.quarantined:
            conn.executemany(
                f"INSERT INTO {QUARANTINE} VALUES (?, ?, ?, ?, ?, ?)",
                [
                    [FAMILY, q.partition_key, q.record_key, q.reason, q.document, loaded_at]
                    for q in report.quarantined
                ],
            )
        counts = conn.execute("SELECT partition_date, count(*) FROM _oe_stage_latest GROUP BY ALL").fetchall()
        conn.execute("DROP TABLE _oe_stage_latest")
        faultpoints.checkpoint(faultpoints.RAW_BEFORE_COMMIT)
    by_day = {d: int(n) for d, n in counts}
    report.rows_per_partition = {d.isoformat(): by_day.get(d, 0) for d in day_list}
    conn.execute("DROP TABLE IF EXISTS _oe_stage_raw")


def land_process_contexts(
    conn: duckdb.DuckDBPyConnection, client: OeClient, template_ids: Sequence[str], days: Iterable[date]
) -> RawLandingReport:
    """Fetch the days' contexts of each digital process and replace those days' raw rows."""
    day_list = sorted(set(days))
    report = RawLandingReport()
    if not day_list:
        return report
    ensure_raw_tables(conn)
    before = client.stats.pages, client.stats.requests, client.stats.retries
    fetch_into_stage(conn, client, template_ids, day_list, report)
    commit_stage(conn, day_list, report, utc_now())
    report.api_pages = client.stats.pages - before[0]
    report.api_requests = client.stats.requests - before[1]
    report.api_retries = client.stats.retries - before[2]
    return report


def count_raw_documents(conn: duckdb.DuckDBPyConnection, partition_dates: Sequence[date]) -> int:
    """Landed documents of the given days (what a write of those partitions will flatten)."""
    if not partition_dates:
        return 0
    row = conn.execute(
        f"SELECT count(*) FROM {RAW_CONTEXTS} WHERE list_contains(?, partition_date)",
        [list(partition_dates)],
    ).fetchone()
    return int(row[0]) if row else 0


def iter_raw_document_texts(
    conn: duckdb.DuckDBPyConnection, partition_date: date, *, chunk_size: int = 5000
) -> Iterable[list[str]]:
    """The partition's raw documents as JSON texts in chunks, through a separate cursor (MVCC
    snapshot); the flattening side parses them, so that work leaves the reading thread."""
    cursor = conn.cursor()
    try:
        cursor.execute(
            f"SELECT document FROM {RAW_CONTEXTS} WHERE partition_date = ? ORDER BY process_id",
            [partition_date],
        )
        while True:
            rows = cursor.fetchmany(chunk_size)
            if not rows:
                break
            yield [r[0] for r in rows]
    finally:
        cursor.close()
