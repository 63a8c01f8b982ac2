"""Land the digital processes and the accounts verbatim into a PostgreSQL warehouse:
:mod:`oe_assets.landing.raw_catalog` for PostgreSQL, with the same tables, rows and report.

The tables are DuckDB's, column for column (``document`` is ``text``: the exact characters the
API sent), created under the DDL lock when missing. A landing is one transaction running DuckDB's
own upsert statements (:func:`~oe_assets.landing.raw_catalog.catalog_merge_sql`); the listed rows
and the quarantined elements reach PostgreSQL with ``COPY``. Runs on different machines may land
the same catalog at once: each landing holds the catalog's partition lock (``WHOLE``) from before
its transaction until after its commit, so the second waits and then sees the first's rows, as
one DuckDB writer after another would.

Differences from DuckDB: PostgreSQL's ``text`` cannot hold the character NUL (U+0000). A listing
with one (a quarantined element's text with a NUL byte, or an id, tenant, name or state written
with ``\\u0000``) is refused whole in one sentence naming the table, and nothing changes (DuckDB
lands it). DuckDB's table has ``id`` as its primary key; PostgreSQL's has a unique index on it
(the same refusal of a second row per id, and one that ``CREATE INDEX IF NOT EXISTS`` can repeat).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import duckdb
import pyarrow as pa

from oe_assets.client import Page
from oe_assets.landing.raw_catalog import (
    CATALOG_DDL,
    CATALOG_STAGE,
    CATALOG_STAGE_SCHEMA,
    CatalogLandingReport,
    catalog_counts_sql,
    catalog_merge_sql,
    catalog_rows,
    catalog_unlisted_sql,
)
from oe_assets.landing.raw_contexts import QUARANTINE
from oe_assets.landing.raw_contexts_pg import postgres_table_ddl, raw_tables_ddl
from oe_assets.landing.stage import QUARANTINE_SCHEMA
from oe_assets.warehouse.postgres.connect import PgConnection, copy_in
from oe_assets.warehouse.postgres.locks import WHOLE, create_missing_tables, missing_tables, partition_locks

_STAGED = ", ".join(CATALOG_STAGE_SCHEMA.names)
_QUARANTINED = "_oe_stage_catalog_quarantine"
_QUARANTINE_STAGED = ", ".join(QUARANTINE_SCHEMA.names)


def catalog_table_ddl(table: str) -> str:
    """PostgreSQL's statements that create the catalog ``table`` and its unique index on ``id``."""
    return (
        f"{postgres_table_ddl(CATALOG_DDL.format(table=table))};\n"
        f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_id ON {table} (id)"
    )


def land_catalog_pg(conn: PgConnection, table: str, page: Page, loaded_at: datetime) -> CatalogLandingReport:
    """:func:`~oe_assets.landing.raw_catalog.land_catalog` on PostgreSQL: upsert the listed
    documents by ``id`` and mark the unlisted ones, replace the catalog's quarantined elements,
    all in one transaction under the catalog's partition lock. ``loaded_at``: naive UTC.

    Call it outside a transaction: inside one the caller holds open, it is a savepoint, and the
    lock ends before the caller's transaction commits."""
    report = CatalogLandingReport(table=table)
    rows = catalog_rows(page, report)
    with partition_locks(conn, table, [WHOLE]), conn.transaction():
        create_missing_tables(
            conn, {table: catalog_table_ddl(table), QUARANTINE: raw_tables_ddl()[QUARANTINE]}
        )
        _stage(conn, table, pa.Table.from_pylist(rows, schema=CATALOG_STAGE_SCHEMA))
        conn.execute(catalog_merge_sql(table, "%(loaded_at)s"), {"loaded_at": loaded_at})
        conn.execute(catalog_unlisted_sql(table))
        conn.execute(f"DROP TABLE {CATALOG_STAGE}")
        _replace_quarantine(conn, table, report, loaded_at)
        total, gone = conn.execute(catalog_counts_sql(table)).fetchone() or (0, 0)
    report.rows_in_api = len(rows)
    report.rows_total = cast(int, total)
    report.no_longer_in_api = cast(int, gone)
    return report


def _stage(conn: PgConnection, table: str, staged: pa.Table) -> None:
    """The listed rows as the temporary table the upsert reads, of the catalog table's types."""
    conn.execute(f"CREATE TEMP TABLE {CATALOG_STAGE} AS SELECT {_STAGED} FROM {table} WITH NO DATA")
    _copy_arrow(conn, staged, f"{CATALOG_STAGE} ({_STAGED})", table)


def _replace_quarantine(
    conn: PgConnection, table: str, report: CatalogLandingReport, loaded_at: datetime
) -> None:
    """The catalog's quarantined elements are those of this listing (the API's latest answer)."""
    conn.execute(f"DELETE FROM {QUARANTINE} WHERE family = %s", [table])
    if not report.quarantined:
        return
    quarantined = pa.Table.from_pylist(
        [
            {"partition_key": WHOLE, "record_key": key, "reason": reason, "document": document}
            for key, reason, document in report.quarantined
        ],
        schema=QUARANTINE_SCHEMA,
    )
    conn.execute(
        f"CREATE TEMP TABLE {_QUARANTINED} AS SELECT {_QUARANTINE_STAGED} FROM {QUARANTINE} WITH NO DATA"
    )
    _copy_arrow(conn, quarantined, f"{_QUARANTINED} ({_QUARANTINE_STAGED})", QUARANTINE)
    conn.execute(
        f"""INSERT INTO {QUARANTINE} (family, {_QUARANTINE_STAGED}, quarantined_at)
            SELECT %s, {_QUARANTINE_STAGED}, %s FROM {_QUARANTINED}""",
        [table, loaded_at],
    )
    conn.execute(f"DROP TABLE {_QUARANTINED}")


def _copy_arrow(conn: PgConnection, rows: pa.Table, target: str, what: str) -> None:
    """``rows`` into ``target`` with one ``COPY`` (DuckDB writes them as the CSV it reads)."""
    with duckdb.connect() as encoder:
        encoder.register("_oe_rows", rows)
        copy_in(encoder, f"SELECT {', '.join(rows.schema.names)} FROM _oe_rows", conn, target, what)


def catalog_document_texts_pg(conn: PgConnection, table: str) -> list[str]:
    """The API's text of every landed document of the table (including ones the API no longer
    lists), in DuckDB's order: by id, compared as bytes (the "C" collation), whatever the
    database's own collation."""
    if missing_tables(conn, [table]):
        return []
    rows = conn.execute(f'SELECT document FROM {table} ORDER BY id COLLATE "C"').fetchall()
    return [str(document) for (document,) in rows]
