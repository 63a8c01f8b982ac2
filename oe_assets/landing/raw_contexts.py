"""Land process contexts verbatim, one creation day (or a range of days) at a time.

The raw table is the project's own copy of the data (OE deletes contexts when their digital
process is deleted: see the API contract, Retention), so a refresh only adds and updates:
each context is upserted by process id, an older ``updatedAt`` never overwrites a newer landed
version, and a landed context of the days and digital processes read that the API no longer
returns is kept and marked (``deleted_at``: when it was first missed; cleared when it comes
back). Removing marked rows is a user's explicit act (``oe-assets prune --deleted``, see
:mod:`oe_assets.landing.retention`). A day whose answer shrinks sharply is reported.

The API is read into a stage outside the warehouse first (:mod:`oe_assets.landing.stage`);
:func:`commit_stage` then applies it in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb

from oe_assets.client import OeClient
from oe_assets.core.timestamps import utc_now
from oe_assets.landing.stage import ContextStage, stage_process_contexts
from oe_assets.warehouse import transaction

RAW_CONTEXTS = "raw_process_contexts"
STATUS_HISTORY = "raw_process_context_status_history"
QUARANTINE = "_oe_quarantine"
FAMILY = "raw_process_contexts"
DELETED_AT = "deleted_at"

SHRINK_MIN_LANDED = 5
"""A day is reported as shrinking sharply only when it had at least this many live contexts..."""
SHRINK_RATIO = 0.5
"""...and fewer than this share of them came back."""

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
    loaded_at TIMESTAMP NOT NULL,
    {DELETED_AT} TIMESTAMP
)
"""
"""``document`` is JSON, which DuckDB stores as the text given, byte for byte (duplicate keys,
2**70, escapes and spacing stay as the API sent them; tested)."""

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


@dataclass(frozen=True)
class DayRetention:
    """One day of a refresh: live contexts landed before, contexts the API returned now, and
    landed ones it no longer returned (marked, kept)."""

    day: date
    landed_before: int
    returned_now: int
    newly_missing: int

    @property
    def shrank_sharply(self) -> bool:
        """Fewer than half of the live contexts landed before came back (new ones do not make up
        for them)."""
        still_returned = self.landed_before - self.newly_missing
        return self.landed_before >= SHRINK_MIN_LANDED and still_returned < SHRINK_RATIO * self.landed_before


@dataclass
class RawLandingReport:
    """What one landing did; becomes Dagster metadata."""

    stage: ContextStage
    rows_per_partition: dict[str, int] = field(default_factory=dict)
    retention: list[DayRetention] = field(default_factory=list)
    duplicates_merged: int = 0
    older_versions_ignored: int = 0
    status_changes: int = 0

    @property
    def rows(self) -> int:
        return sum(self.rows_per_partition.values())

    @property
    def newly_missing(self) -> int:
        return sum(d.newly_missing for d in self.retention)


def ensure_raw_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Creates the raw tables, and adds ``deleted_at`` to a raw table of an older version.

    Inside a transaction, call it before any delete: DuckDB cannot commit a transaction that
    alters a table after deleting from it."""
    conn.execute(RAW_CONTEXTS_DDL)
    conn.execute(f"ALTER TABLE {RAW_CONTEXTS} ADD COLUMN IF NOT EXISTS {DELETED_AT} TIMESTAMP")
    conn.execute(STATUS_HISTORY_DDL)
    conn.execute(QUARANTINE_DDL)


def commit_stage(
    conn: duckdb.DuckDBPyConnection, stage: ContextStage, loaded_at: datetime
) -> RawLandingReport:
    """Apply a stage to the raw tables in one transaction: add and update, never delete."""
    report = RawLandingReport(stage)
    if not stage.days:
        return report
    with transaction(conn):
        ensure_raw_tables(conn)
        report.duplicates_merged = _load_latest(conn, stage)
        report.retention = _mark_missing(conn, stage, loaded_at)
        report.older_versions_ignored = _drop_older_versions(conn)
        report.status_changes = _record_status_changes(conn, loaded_at)
        # the upsert: each staged version replaces its context's row (wherever it was)
        conn.execute(
            f"DELETE FROM {RAW_CONTEXTS} WHERE process_id IN (SELECT process_id FROM _oe_stage_latest)"
        )
        conn.execute(
            f"INSERT INTO {RAW_CONTEXTS} BY NAME SELECT *, ?::TIMESTAMP AS loaded_at FROM _oe_stage_latest",
            [loaded_at],
        )
        _replace_quarantine(conn, stage, loaded_at)
        conn.execute("DROP TABLE _oe_stage_latest")
    returned = {d.day: d.returned_now for d in report.retention}
    report.rows_per_partition = {d.isoformat(): returned.get(d, 0) for d in stage.days}
    return report


def latest_staged(contexts_file: str) -> str:
    """DuckDB's query of the staged rows in ``contexts_file`` (SQL: a parameter or a literal), one
    per process id: the newest ``updatedAt`` wins, then the smallest hash (whatever the order the
    pages came in). The PostgreSQL landing runs the same query to fill its stage."""
    return f"""SELECT * FROM read_parquet({contexts_file})
           QUALIFY row_number() OVER (
               PARTITION BY process_id ORDER BY updated_at DESC NULLS LAST, document_sha256) = 1"""


def _load_latest(conn: duckdb.DuckDBPyConnection, stage: ContextStage) -> int:
    """The stage, one row per process id (newest ``updatedAt`` wins), as ``_oe_stage_latest``;
    returns how many repeated rows were merged."""
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE _oe_stage_latest AS {latest_staged('?')}",
        [str(stage.contexts_file)],
    )
    row = conn.execute("SELECT count(*) FROM _oe_stage_latest").fetchone()
    return stage.staged_rows - (int(row[0]) if row else 0)


def _mark_missing(
    conn: duckdb.DuckDBPyConnection, stage: ContextStage, loaded_at: datetime
) -> list[DayRetention]:
    """Marks live landed contexts of the days and digital processes read that the API did not
    return (a record it returned unusable, with a readable id, counts as returned); clears the
    mark of those that came back. Returns each day's counts."""
    days, templates = stage.days, stage.templates_read
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _oe_live_before AS
            SELECT process_id, partition_date FROM {RAW_CONTEXTS}
            WHERE {DELETED_AT} IS NULL AND list_contains(?::DATE[], partition_date)
              AND list_contains(?::VARCHAR[], execution_template_id)""",
        [days, templates],
    )
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE _oe_missing AS
            SELECT * FROM _oe_live_before l
            WHERE NOT EXISTS (SELECT 1 FROM _oe_stage_latest s WHERE s.process_id = l.process_id)
              AND NOT EXISTS (SELECT 1 FROM read_parquet(?) q WHERE q.record_key = l.process_id)""",
        [str(stage.quarantine_file)],
    )
    counts = conn.execute(
        """SELECT d.day,
                  (SELECT count(*) FROM _oe_live_before WHERE partition_date = d.day),
                  (SELECT count(*) FROM _oe_stage_latest WHERE partition_date = d.day),
                  (SELECT count(*) FROM _oe_missing WHERE partition_date = d.day)
           FROM (SELECT unnest(?::DATE[]) AS day) d ORDER BY d.day""",
        [days],
    ).fetchall()
    conn.execute(
        f"UPDATE {RAW_CONTEXTS} SET {DELETED_AT} = ? WHERE process_id IN (SELECT process_id FROM _oe_missing)",
        [loaded_at],
    )
    conn.execute(
        f"""UPDATE {RAW_CONTEXTS} SET {DELETED_AT} = NULL
            WHERE {DELETED_AT} IS NOT NULL AND process_id IN (SELECT process_id FROM _oe_stage_latest)"""
    )
    conn.execute("DROP TABLE _oe_live_before")
    conn.execute("DROP TABLE _oe_missing")
    return [DayRetention(day, int(before), int(now), int(missing)) for day, before, now, missing in counts]


def _drop_older_versions(conn: duckdb.DuckDBPyConnection) -> int:
    """Takes out of the stage the versions older than the landed one (``updatedAt`` earlier): an
    API that answers with a stale copy does not undo a newer landing."""
    row = conn.execute(
        f"""DELETE FROM _oe_stage_latest s USING {RAW_CONTEXTS} r
            WHERE r.process_id = s.process_id AND r.updated_at > s.updated_at"""
    ).fetchone()
    return int(row[0]) if row else 0


def _record_status_changes(conn: duckdb.DuckDBPyConnection, loaded_at: datetime) -> int:
    """A history row whenever the observed status differs from the last one observed."""
    row = conn.execute(
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
    return int(row[0]) if row else 0


def _replace_quarantine(conn: duckdb.DuckDBPyConnection, stage: ContextStage, loaded_at: datetime) -> None:
    """The days' quarantined raw records are those of this read (the API's latest answer)."""
    conn.execute(
        f"DELETE FROM {QUARANTINE} WHERE family = ? AND list_contains(?::VARCHAR[], partition_key)",
        [FAMILY, [d.isoformat() for d in stage.days]],
    )
    conn.execute(
        f"""INSERT INTO {QUARANTINE}
            SELECT ?, partition_key, record_key, reason, document, ?::TIMESTAMP FROM read_parquet(?)""",
        [FAMILY, loaded_at, str(stage.quarantine_file)],
    )


def land_process_contexts(
    conn: duckdb.DuckDBPyConnection,
    client: OeClient,
    template_ids: Sequence[str],
    days: Iterable[date],
    *,
    stage_dir: Path | None = None,
) -> RawLandingReport:
    """Stage the days' contexts of each digital process, then commit them (for callers that
    hold the warehouse anyway; the asset stages before it opens the warehouse)."""
    with stage_process_contexts(client, template_ids, list(days), directory=stage_dir) as stage:
        return commit_stage(conn, stage, utc_now())


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
