"""Opening the warehouse: the one place that opens its DuckDB file, with the writers' settings
and their lock."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import duckdb

from oe_assets.warehouse.locking import exclusive_file_lock, lock_path_for

WAREHOUSE_SETTINGS: dict[str, str] = {
    # DuckDB caches written blocks up to 80% of RAM by default; a loader streams, so it needs far less.
    "memory_limit": "256MB",
    # One checkpoint per write instead of one every 16 MB of WAL: commits of a partition stay cheap.
    "checkpoint_threshold": "256MB",
}
IN_MEMORY = ":memory:"
LOCK_TIMEOUT_SECONDS = 600.0
"""How long a writer waits for another one by default."""


@contextmanager
def open_warehouse(
    database: str | Path,
    *,
    read_only: bool = False,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    settings: Mapping[str, Any] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse file ``database``, closed when the block ends.

    Writing (the default), the block holds the writers' lock (:mod:`oe_assets.warehouse.locking`,
    waiting up to ``lock_timeout`` seconds for another writer) and the connection has the
    writers' ``settings`` (:data:`WAREHOUSE_SETTINGS` unless given). Reading, it takes no lock
    and DuckDB's own settings unless ``settings`` are given: a reader that must wait for the
    writers takes their lock around this block (:mod:`oe_assets.warehouse.reading`). An
    in-memory database (``":memory:"``) has no file to lock.
    """
    if settings is None:
        settings = {} if read_only else WAREHOUSE_SETTINGS
    with ExitStack() as stack:
        if not read_only and str(database) != IN_MEMORY:
            stack.enter_context(exclusive_file_lock(lock_path_for(database), timeout_seconds=lock_timeout))
        conn = duckdb.connect(str(database), read_only=read_only, config=dict(settings))
        stack.callback(conn.close)
        yield conn
