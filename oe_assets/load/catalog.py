"""Landed digital processes or accounts -> their Celonis-shaped table family, rebuilt whole.

They are small (a catalog, not a log): a full rebuild from the raw layer is cheaper and simpler than
tracking their changes.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb

from oe_assets.core.timestamps import utc_now
from oe_assets.flatten import LOADED_AT, FlatBatch, Flattener, SchemaRegistry, TableFamily
from oe_assets.flatten.process import flatten_timed
from oe_assets.landing.raw_catalog import catalog_document_texts
from oe_assets.landing.raw_catalog_pg import catalog_document_texts_pg
from oe_assets.load.contexts import BATCH_SIZE
from oe_assets.warehouse import WriteReport, load_registry, replace_all
from oe_assets.warehouse.postgres import catalog as postgres_catalog
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.family import replace_partition_pg
from oe_assets.warehouse.postgres.locks import WHOLE, partition_locks


def rebuild_catalog_family(
    conn: duckdb.DuckDBPyConnection, family: TableFamily, raw_table: str
) -> WriteReport:
    """All landed documents of a catalog (templates, accounts) -> its family, replacing everything."""
    texts = catalog_document_texts(conn, raw_table)
    return replace_all(conn, family, _batches(family, load_registry(conn, family), texts))


def rebuild_catalog_family_pg(pg: PgConnection, family: TableFamily, raw_table: str) -> WriteReport:
    """:func:`rebuild_catalog_family` in PostgreSQL; a second rebuild of the family waits for the first."""
    with partition_locks(pg, family.root_table, [WHOLE]):
        texts = catalog_document_texts_pg(pg, raw_table)
        batches = _batches(family, postgres_catalog.load_registry(pg, family), texts)
        return replace_partition_pg(pg, family, None, batches, partition_column=None)


def _batches(family: TableFamily, registry: SchemaRegistry, texts: list[str]) -> Iterator[FlatBatch]:
    """The documents flattened in batches (one batch, without rows, when there is no document)."""
    flattener = Flattener(family, registry)
    constants = {LOADED_AT: utc_now()}
    for i in range(0, max(len(texts), 1), BATCH_SIZE):
        yield flatten_timed(flattener, texts[i : i + BATCH_SIZE], constants)[0]
