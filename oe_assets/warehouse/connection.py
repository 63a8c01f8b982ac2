"""Opening the warehouse: one place for the DuckDB settings every writer uses."""

from __future__ import annotations

from pathlib import Path

import duckdb

WAREHOUSE_SETTINGS: dict[str, str] = {
    # DuckDB caches written blocks up to 80% of RAM by default; a loader streams, so it needs far less.
    "memory_limit": "256MB",
    # One checkpoint per write instead of one every 16 MB of WAL: commits of a partition stay cheap.
    "checkpoint_threshold": "256MB",
}


def connect(database: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(database), read_only=read_only, config=dict(WAREHOUSE_SETTINGS))
