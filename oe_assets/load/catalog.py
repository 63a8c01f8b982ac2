"""Landed digital processes or accounts -> their Celonis-shaped table family, rebuilt whole.

They are small (a catalog, not a log): a full rebuild from the raw layer is cheaper and simpler than
tracking their changes.
"""

from __future__ import annotations

import duckdb

from oe_assets.core.timestamps import utc_now
from oe_assets.flatten import LOADED_AT, Flattener, TableFamily
from oe_assets.flatten.process import flatten_timed
from oe_assets.landing.raw_catalog import catalog_document_texts
from oe_assets.load.contexts import BATCH_SIZE
from oe_assets.warehouse import WriteReport, load_registry, replace_all


def rebuild_catalog_family(
    conn: duckdb.DuckDBPyConnection, family: TableFamily, raw_table: str
) -> WriteReport:
    """All landed documents of a catalog (templates, accounts) -> its family, replacing everything."""
    flattener = Flattener(family, load_registry(conn, family))
    texts = catalog_document_texts(conn, raw_table)
    constants = {LOADED_AT: utc_now()}
    batches = [
        flatten_timed(flattener, texts[i : i + BATCH_SIZE], constants)[0]
        for i in range(0, max(len(texts), 1), BATCH_SIZE)
    ]
    return replace_all(conn, family, iter(batches))
