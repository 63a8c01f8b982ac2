"""Land the digital processes (execution templates) and the accounts (tenants) verbatim.

A full refresh upserts what the API lists and marks what it no longer lists as
`present_in_api = false` instead of deleting it: retained process contexts still need
their digital process and account.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pyarrow as pa

from oe_assets.client import Page
from oe_assets.landing.raw_contexts import QUARANTINE, QUARANTINE_DDL
from oe_assets.warehouse import transaction

RAW_TEMPLATES = "raw_execution_templates"
RAW_ACCOUNTS = "raw_accounts"
CATALOG_STAGE = "_oe_stage_catalog"

CATALOG_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR NOT NULL PRIMARY KEY,
    tenant VARCHAR,
    name VARCHAR,
    state VARCHAR,
    document JSON NOT NULL,
    document_sha256 VARCHAR NOT NULL,
    first_seen_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    present_in_api BOOLEAN NOT NULL
)
"""

CATALOG_STAGE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("tenant", pa.string()),
        ("name", pa.string()),
        ("state", pa.string()),
        ("document", pa.string()),
        ("document_sha256", pa.string()),
    ]
)


@dataclass
class CatalogLandingReport:
    table: str
    rows_in_api: int = 0
    rows_total: int = 0
    no_longer_in_api: int = 0
    quarantined: list[tuple[str | None, str, str]] = field(default_factory=list)  # key, reason, document


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def land_catalog(
    conn: duckdb.DuckDBPyConnection, table: str, page: Page, loaded_at: datetime
) -> CatalogLandingReport:
    """Upsert the listed documents by `id`, each as the API's text, in one transaction; what has
    no id, and the list's elements that are no records, go to the quarantine with their text."""
    report = CatalogLandingReport(table=table)
    rows = catalog_rows(page, report)
    staged = pa.Table.from_pylist(rows, schema=CATALOG_STAGE_SCHEMA)
    with transaction(conn):
        conn.execute(CATALOG_DDL.format(table=table))
        conn.execute(QUARANTINE_DDL)
        conn.register(CATALOG_STAGE, staged)
        conn.execute(catalog_merge_sql(table, "$loaded_at"), {"loaded_at": loaded_at})
        conn.execute(catalog_unlisted_sql(table))
        conn.unregister(CATALOG_STAGE)
        conn.execute(f"DELETE FROM {QUARANTINE} WHERE family = ?", [table])
        if report.quarantined:
            conn.executemany(
                f"INSERT INTO {QUARANTINE} VALUES (?, 'all', ?, ?, ?, ?)",
                [[table, key, reason, document, loaded_at] for key, reason, document in report.quarantined],
            )
        total, gone = conn.execute(catalog_counts_sql(table)).fetchone() or (0, 0)
    report.rows_in_api = len(rows)
    report.rows_total = int(total)
    report.no_longer_in_api = int(gone)
    return report


def catalog_merge_sql(table: str, loaded_at: str) -> str:
    """The upsert of the stage ``_oe_stage_catalog`` into ``table``, the same SQL for DuckDB and
    PostgreSQL (``loaded_at``: the placeholder of the landing's time in the engine's style)."""
    return f"""MERGE INTO {table} AS t USING {CATALOG_STAGE} AS s ON t.id = s.id
                WHEN MATCHED THEN UPDATE SET tenant = s.tenant, name = s.name, state = s.state,
                    document = s.document, document_sha256 = s.document_sha256,
                    last_seen_at = {loaded_at}, present_in_api = true
                WHEN NOT MATCHED THEN INSERT (id, tenant, name, state, document, document_sha256,
                    first_seen_at, last_seen_at, present_in_api)
                VALUES (s.id, s.tenant, s.name, s.state, s.document, s.document_sha256,
                    {loaded_at}, {loaded_at}, true)"""


def catalog_unlisted_sql(table: str) -> str:
    """Marks the rows the stage does not list (kept: retained process contexts still need them)."""
    return f"UPDATE {table} SET present_in_api = false WHERE id NOT IN (SELECT id FROM {CATALOG_STAGE})"


def catalog_counts_sql(table: str) -> str:
    """The table's rows, and those the API no longer lists."""
    return f"SELECT count(*), count(*) FILTER (WHERE NOT present_in_api) FROM {table}"


def catalog_rows(page: Page, report: CatalogLandingReport) -> list[dict[str, object]]:
    """Staging rows by id (the last version of an id wins); quarantines what cannot be one."""
    rows: dict[str, dict[str, object]] = {}
    for doc, text in zip(page, page.texts, strict=True):
        key = doc.get("id")
        if not isinstance(key, str) or not key:
            report.quarantined.append((None, "id is missing or not a string", text))
            continue
        rows[key] = {
            "id": key,
            "tenant": _text(doc.get("tenant")),
            "name": _text(doc.get("name")),
            "state": _text(doc.get("state")),
            "document": text,
            "document_sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    report.quarantined += [(None, rejected.reason, rejected.text) for rejected in page.rejected]
    return list(rows.values())


def catalog_document_texts(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The API's text of every landed document of the table (including ones the API no longer lists)."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    if not exists or not exists[0]:
        return []
    return [str(r[0]) for r in conn.execute(f"SELECT document FROM {table} ORDER BY id").fetchall()]
