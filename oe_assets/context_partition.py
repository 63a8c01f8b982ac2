"""Process contexts of one creation day -> the ``execution_context`` table family (pure).

The write the ``execution_context_tables`` asset does for each daily partition, kept free of
Dagster so that the benchmark (``oe-assets bench``) measures exactly this code: the persisted
schema registry, one :class:`~oe_assets.flatten.Flattener` for the partition, and
:func:`~oe_assets.warehouse.replace_partition` (one transaction for the whole family).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

import duckdb

from oe_assets.flatten import CONTEXTS, Flattener
from oe_assets.timestamps import utc_now
from oe_assets.warehouse import WriteReport, load_registry, replace_partition

PARTITION_COLUMN = "_oe_partition"
BATCH_SIZE = 5000
"""Documents per flattened batch (one DuckDB insert per table per batch)."""


def write_context_partition(
    conn: duckdb.DuckDBPyConnection,
    day: date,
    chunks: Iterable[Sequence[object]],
    *,
    loaded_at: datetime | None = None,
) -> WriteReport:
    """Flatten ``chunks`` (lists of raw documents, all created on ``day``) and replace that day.

    Chunks are consumed lazily, one flattened batch at a time, inside the write's transaction.
    """
    registry = load_registry(conn, CONTEXTS)
    flattener = Flattener(CONTEXTS, registry)
    constants = {PARTITION_COLUMN: day, "_oe_loaded_at": loaded_at or utc_now()}
    batches = (flattener.flatten(chunk, constant_columns=constants) for chunk in chunks)
    return replace_partition(conn, CONTEXTS, day.isoformat(), batches, partition_column=PARTITION_COLUMN)
