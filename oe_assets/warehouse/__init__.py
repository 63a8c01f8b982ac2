"""The DuckDB warehouse: opening it, and transactional writes of flattened batches (pure: duckdb +
pyarrow only)."""

from oe_assets.warehouse.connection import open_warehouse
from oe_assets.warehouse.schema import (
    COLUMNS_TABLE,
    QUARANTINE_TABLE,
    TABLES_TABLE,
    SchemaChange,
    ensure_bookkeeping,
)
from oe_assets.warehouse.sql import quote_ident, quote_literal
from oe_assets.warehouse.writer import (
    WriteReport,
    load_registry,
    replace_all,
    replace_partition,
    transaction,
)

__all__ = [
    "COLUMNS_TABLE",
    "QUARANTINE_TABLE",
    "TABLES_TABLE",
    "SchemaChange",
    "WriteReport",
    "ensure_bookkeeping",
    "load_registry",
    "open_warehouse",
    "quote_ident",
    "quote_literal",
    "replace_all",
    "replace_partition",
    "transaction",
]
