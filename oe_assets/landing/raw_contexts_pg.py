"""Land process contexts verbatim into a PostgreSQL warehouse: :mod:`oe_assets.landing.raw_contexts`
for PostgreSQL, with the same tables, the same rows and the same report.

The tables are DuckDB's, column for column (:func:`postgres_table_ddl` derives them from DuckDB's
DDL); ``document`` is ``text``, the exact characters the API sent. A stage is applied in one
transaction by the same steps as :func:`~oe_assets.landing.raw_contexts.commit_stage`; DuckDB
reads the stage's Parquet files, and its rows reach PostgreSQL with ``COPY``.

On DuckDB one file lock lets one writer in at a time. On PostgreSQL, runs on different machines
commit at once, so each commit holds, until its transaction ends, an advisory lock per day it
touches: two runs landing the same day wait for each other, runs landing different days do not.
Why that is safe although the upsert deletes a staged context "wherever it was", not only on the
run's days:

- Every row a commit changes lies on a day it holds. Marks are set on rows of the run's days
  only; marks are cleared and rows replaced for the staged process ids, and before it changes
  anything the commit also locks the days where those ids are landed now (a context whose
  ``createdAt`` moved to another day). The locks are taken in date order, all before the first
  change, so two commits never wait for each other in a circle; the days of staged ids are read
  again once the locks are held, and the rare day that appeared meanwhile (another run moved a
  context there) is locked too (if that closes a circle, PostgreSQL ends one of the two
  transactions and nothing of it is written).
- A row cannot leave or enter a held day behind the holder's back: moving it takes its old and
  its new day. So the rows of a held day are what the holder read, as if the commits ran one
  after the other.
- A context no run has landed yet is on no day; if two runs of different days both stage it
  (its ``createdAt`` changed between their reads), the unique index on ``process_id`` makes the
  second insert wait for the first commit and then fail, instead of landing the context twice.
- Status history rows are only added, for staged process ids: by the holders of their day.
- A commit waits for advisory locks only before it changes anything, and commits that hold
  different days change different rows (but for the unique index above), so no commit waits
  for another while holding a row that one waits for.

The very first commit into a database creates the tables and holds the DDL lock until it ends:
commits that start meanwhile wait for it, whatever their days.

Differences from DuckDB: PostgreSQL's ``text`` cannot hold the character NUL (U+0000). A stage
that holds one (a quarantined element's text with a NUL byte, or a process id, template id,
tenant or status written with ``\\u0000``) is refused whole, in one sentence naming the table;
nothing changes (DuckDB lands it). The tables also get indexes DuckDB's have not (speed, and the
unique ``process_id`` above).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import cast

import duckdb

from oe_assets.landing.raw_contexts import (
    DELETED_AT,
    FAMILY,
    QUARANTINE,
    RAW_CONTEXTS,
    RAW_CONTEXTS_DDL,
    STATUS_HISTORY,
    STATUS_HISTORY_DDL,
    DayRetention,
    RawLandingReport,
    latest_staged,
)
from oe_assets.landing.stage import QUARANTINE_SCHEMA, STAGE_SCHEMA, ContextStage
from oe_assets.warehouse.postgres.catalog import BOOKKEEPING_DDL
from oe_assets.warehouse.postgres.connect import PgConnection, copy_in
from oe_assets.warehouse.postgres.locks import create_missing_tables, partition_lock_name, transaction_lock
from oe_assets.warehouse.postgres.types import column_transfer
from oe_assets.warehouse.schema import QUARANTINE_TABLE
from oe_assets.warehouse.sql import quote_ident, quote_literal

_LATEST = "_oe_stage_latest"
_QUARANTINED = "_oe_stage_quarantine"
_STAGED = ", ".join(STAGE_SCHEMA.names)
_QUARANTINE_STAGED = ", ".join(QUARANTINE_SCHEMA.names)

RAW_INDEXES = {
    RAW_CONTEXTS: [
        f"CREATE UNIQUE INDEX IF NOT EXISTS {RAW_CONTEXTS}_process_id ON {RAW_CONTEXTS} (process_id)",
        # a day's rows, in DuckDB's order of process ids (bytes: the "C" collation)
        f'CREATE INDEX IF NOT EXISTS {RAW_CONTEXTS}_partition_date ON {RAW_CONTEXTS} (partition_date, process_id COLLATE "C")',
    ],
    STATUS_HISTORY: [
        f"CREATE INDEX IF NOT EXISTS {STATUS_HISTORY}_process_id ON {STATUS_HISTORY} (process_id)"
    ],
}
"""Indexes the PostgreSQL tables have beyond DuckDB's: the unique process id (see the module's
doc) and the lookups of a landing (a day's rows, a context's last status)."""


def postgres_table_ddl(duckdb_ddl: str) -> str:
    """PostgreSQL's ``CREATE TABLE IF NOT EXISTS`` for the table of DuckDB's ``duckdb_ddl``: its
    columns in order, ``NOT NULL`` where DuckDB has it, each of the type the warehouse copy gives
    it (:func:`~oe_assets.warehouse.postgres.types.column_transfer`; JSON becomes ``text``)."""
    with duckdb.connect() as scratch:
        scratch.execute(duckdb_ddl)
        rows = scratch.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
            "WHERE NOT internal ORDER BY column_index"
        ).fetchall()
    table = str(rows[0][0])
    columns = ", ".join(
        f"{quote_ident(name)} {column_transfer(table, name, name, dtype).postgres_type}"
        + ("" if nullable else " NOT NULL")
        for _, name, dtype, nullable in rows
    )
    return f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ({columns})"


@functools.cache
def raw_tables_ddl() -> dict[str, str]:
    """Table -> the statements that create it and its indexes (the quarantine: the warehouse's
    bookkeeping table, one definition for every family)."""
    sources = {RAW_CONTEXTS: RAW_CONTEXTS_DDL, STATUS_HISTORY: STATUS_HISTORY_DDL}
    created = {
        table: ";\n".join([postgres_table_ddl(ddl), *RAW_INDEXES.get(table, [])])
        for table, ddl in sources.items()
    }
    return {**created, QUARANTINE: BOOKKEEPING_DDL[QUARANTINE_TABLE]}


def ensure_raw_tables_pg(conn: PgConnection) -> None:
    """Creates the raw tables that are missing, under the DDL lock (two first runs at once do not
    both create a table); does nothing, and takes no lock, when they all exist. Inside the
    caller's transaction if one is open (the lock is held until it ends), else in its own."""
    with conn.transaction():
        create_missing_tables(conn, raw_tables_ddl())


def commit_stage_pg(conn: PgConnection, stage: ContextStage, loaded_at: datetime) -> RawLandingReport:
    """Apply a stage to the raw tables in one transaction: add and update, never delete
    (:func:`~oe_assets.landing.raw_contexts.commit_stage`, holding the locks the module's doc
    describes). ``loaded_at``: naive UTC, as :func:`~oe_assets.core.timestamps.utc_now` gives.
    Inside a transaction the caller holds open, it is a savepoint and the locks last until the
    caller's transaction ends."""
    report = RawLandingReport(stage)
    if not stage.days:
        return report
    with conn.transaction():
        ensure_raw_tables_pg(conn)
        report.duplicates_merged = _load_stage(conn, stage)
        lock_days(conn, stage.days)
        report.retention = _mark_missing(conn, stage, loaded_at)
        report.older_versions_ignored = _drop_older_versions(conn)
        report.status_changes = _record_status_changes(conn, loaded_at)
        # the upsert: each staged version replaces its context's row (wherever it was)
        conn.execute(f"DELETE FROM {RAW_CONTEXTS} WHERE process_id IN (SELECT process_id FROM {_LATEST})")
        conn.execute(
            f"INSERT INTO {RAW_CONTEXTS} ({_STAGED}, loaded_at) SELECT {_STAGED}, %s FROM {_LATEST}",
            [loaded_at],
        )
        _replace_quarantine(conn, stage, loaded_at)
        conn.execute(f"DROP TABLE {_LATEST}, {_QUARANTINED}")
    returned = {d.day: d.returned_now for d in report.retention}
    report.rows_per_partition = {d.isoformat(): returned.get(d, 0) for d in stage.days}
    return report


def day_lock_name(day: date) -> str:
    """The advisory lock of one day of the raw contexts (``oe_assets.partition.raw_process_contexts.<day>``)."""
    return partition_lock_name(RAW_CONTEXTS, day.isoformat())


def lock_days(conn: PgConnection, days: Sequence[date]) -> list[date]:
    """Holds, until the transaction ends, the locks of ``days`` and of the days where the staged
    process ids are landed now; in date order, then any day that appeared while waiting. Returns
    the days held."""
    held: set[date] = set()
    wanted = set(days) | _landed_days_of_stage(conn)
    while not wanted <= held:
        for day in sorted(wanted - held):
            transaction_lock(conn, day_lock_name(day))
        held |= wanted
        wanted = set(days) | _landed_days_of_stage(conn)
    return sorted(held)


def _landed_days_of_stage(conn: PgConnection) -> set[date]:
    rows = conn.execute(
        f"SELECT DISTINCT r.partition_date FROM {RAW_CONTEXTS} r JOIN {_LATEST} s USING (process_id)"
    ).fetchall()
    return {cast(date, day) for (day,) in rows}


def _load_stage(conn: PgConnection, stage: ContextStage) -> int:
    """The stage, one row per process id (DuckDB's :func:`latest_staged`), as ``_oe_stage_latest``,
    and its quarantined elements as ``_oe_stage_quarantine``; returns how many repeated rows were
    merged."""
    conn.execute(f"CREATE TEMP TABLE {_LATEST} AS SELECT {_STAGED} FROM {RAW_CONTEXTS} WITH NO DATA")
    conn.execute(
        f"CREATE TEMP TABLE {_QUARANTINED} AS SELECT {_QUARANTINE_STAGED} FROM {QUARANTINE} WITH NO DATA"
    )
    with duckdb.connect() as reader:
        latest = latest_staged(quote_literal(str(stage.contexts_file)))
        loaded = copy_in(
            reader, f"SELECT {_STAGED} FROM ({latest}) s", conn, f"{_LATEST} ({_STAGED})", RAW_CONTEXTS
        )
        copy_in(
            reader,
            f"SELECT {_QUARANTINE_STAGED} FROM read_parquet({quote_literal(str(stage.quarantine_file))})",
            conn,
            f"{_QUARANTINED} ({_QUARANTINE_STAGED})",
            QUARANTINE,
        )
    conn.execute(f"ANALYZE {_LATEST}")
    conn.execute(f"ANALYZE {_QUARANTINED}")
    return stage.staged_rows - loaded


def _mark_missing(conn: PgConnection, stage: ContextStage, loaded_at: datetime) -> list[DayRetention]:
    """Marks live landed contexts of the days and digital processes read that the API did not
    return (a record it returned unusable, with a readable id, counts as returned); clears the
    mark of those that came back. Returns each day's counts."""
    conn.execute(
        f"""CREATE TEMP TABLE _oe_live_before AS
            SELECT process_id, partition_date FROM {RAW_CONTEXTS}
            WHERE {DELETED_AT} IS NULL AND partition_date = ANY(%s::date[])
              AND execution_template_id = ANY(%s::text[])""",
        [stage.days, stage.templates_read],
    )
    conn.execute(
        f"""CREATE TEMP TABLE _oe_missing AS
            SELECT * FROM _oe_live_before l
            WHERE NOT EXISTS (SELECT 1 FROM {_LATEST} s WHERE s.process_id = l.process_id)
              AND NOT EXISTS (SELECT 1 FROM {_QUARANTINED} q WHERE q.record_key = l.process_id)"""
    )
    counts = conn.execute(
        f"""SELECT d.day,
                  (SELECT count(*) FROM _oe_live_before WHERE partition_date = d.day),
                  (SELECT count(*) FROM {_LATEST} WHERE partition_date = d.day),
                  (SELECT count(*) FROM _oe_missing WHERE partition_date = d.day)
           FROM unnest(%s::date[]) AS d(day) ORDER BY d.day""",
        [stage.days],
    ).fetchall()
    conn.execute(
        f"UPDATE {RAW_CONTEXTS} SET {DELETED_AT} = %s WHERE process_id IN (SELECT process_id FROM _oe_missing)",
        [loaded_at],
    )
    conn.execute(
        f"""UPDATE {RAW_CONTEXTS} SET {DELETED_AT} = NULL
            WHERE {DELETED_AT} IS NOT NULL AND process_id IN (SELECT process_id FROM {_LATEST})"""
    )
    conn.execute("DROP TABLE _oe_live_before, _oe_missing")
    # count(*) is a bigint, which psycopg gives as an int
    return [
        DayRetention(cast(date, day), cast(int, before), cast(int, now), cast(int, missing))
        for day, before, now, missing in counts
    ]


def _drop_older_versions(conn: PgConnection) -> int:
    """Takes out of the stage the versions older than the landed one (``updatedAt`` earlier): an
    API that answers with a stale copy does not undo a newer landing."""
    return conn.execute(
        f"""DELETE FROM {_LATEST} s USING {RAW_CONTEXTS} r
            WHERE r.process_id = s.process_id AND r.updated_at > s.updated_at"""
    ).rowcount


def _record_status_changes(conn: PgConnection, loaded_at: datetime) -> int:
    """A history row whenever the observed status differs from the last one observed."""
    return conn.execute(
        f"""INSERT INTO {STATUS_HISTORY} (process_id, status, updated_at, observed_at, partition_date)
            SELECT s.process_id, s.status, s.updated_at, %s, s.partition_date
            FROM {_LATEST} s
            LEFT JOIN (
                SELECT DISTINCT ON (process_id) process_id, status FROM {STATUS_HISTORY}
                WHERE process_id IN (SELECT process_id FROM {_LATEST})
                ORDER BY process_id, observed_at DESC, updated_at DESC NULLS LAST
            ) h USING (process_id)
            WHERE h.process_id IS NULL OR h.status IS DISTINCT FROM s.status""",
        [loaded_at],
    ).rowcount


def _replace_quarantine(conn: PgConnection, stage: ContextStage, loaded_at: datetime) -> None:
    """The days' quarantined raw records are those of this read (the API's latest answer)."""
    conn.execute(
        f"DELETE FROM {QUARANTINE} WHERE family = %s AND partition_key = ANY(%s::text[])",
        [FAMILY, [d.isoformat() for d in stage.days]],
    )
    conn.execute(
        f"""INSERT INTO {QUARANTINE} (family, {_QUARANTINE_STAGED}, quarantined_at)
            SELECT %s, {_QUARANTINE_STAGED}, %s FROM {_QUARANTINED}""",
        [FAMILY, loaded_at],
    )


def count_raw_documents_pg(conn: PgConnection, partition_dates: Sequence[date]) -> int:
    """Landed documents of the given days (what a write of those partitions will flatten)."""
    if not partition_dates:
        return 0
    row = conn.execute(
        f"SELECT count(*) FROM {RAW_CONTEXTS} WHERE partition_date = ANY(%s::date[])",
        [list(partition_dates)],
    ).fetchone()
    return cast(int, row[0]) if row else 0


def iter_raw_document_texts_pg(
    conn: PgConnection, partition_date: date, *, chunk_size: int = 5000
) -> Iterator[list[str]]:
    """The partition's raw documents as JSON texts in chunks, ordered by process id as DuckDB
    orders them (by bytes), through a server-side cursor: the client holds one chunk, however big
    the day. One snapshot, in a transaction of its own (a savepoint inside the caller's): use
    another connection for other work until the iteration ends."""
    with conn.transaction(), conn.cursor(name=f"oe_raw_documents_{uuid.uuid4().hex}") as cursor:
        cursor.execute(
            f'SELECT document FROM {RAW_CONTEXTS} WHERE partition_date = %s ORDER BY process_id COLLATE "C"',
            [partition_date],
        )
        while rows := cursor.fetchmany(chunk_size):
            yield [str(r[0]) for r in rows]
