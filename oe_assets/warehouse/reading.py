"""Reading the warehouse from another process while runs may write it (`oe-assets sql`, the demo's
summary, `oe-assets schema infer`).

DuckDB lets no other process open a file that one process has open for writing, and lets no
process open it for writing while another reads it. So a reader takes the writers' lock
(:mod:`oe_assets.warehouse.locking`) for as long as its connection is open: it waits while a step
of a run has the warehouse open, and a step that starts meanwhile waits for the reader. Runs hold
the lock only while a step writes, never while they read the API, so the wait is the rest of one
step's write, not of a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import duckdb
import polars as pl

from oe_assets.warehouse.connection import open_warehouse
from oe_assets.warehouse.locking import WarehouseBusyError, exclusive_file_lock, lock_path_for

QUICK_SECONDS = 1.0  # a wait longer than this is announced (on_wait)


class WarehouseNotFoundError(FileNotFoundError):
    """The warehouse file does not exist (yet): nothing has been loaded into it."""


@contextmanager
def reading(
    warehouse: Path, *, wait_seconds: float = 600.0, on_wait: Callable[[], None] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to ``warehouse``, taken when no run writes it (waiting at most
    ``wait_seconds``; ``on_wait`` is called once when the wait is longer than a second)."""
    if not warehouse.is_file():
        raise WarehouseNotFoundError(f"the warehouse {warehouse} does not exist; load it first (make demo)")
    lock = lock_path_for(warehouse)
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive_file_lock(lock, timeout_seconds=min(QUICK_SECONDS, wait_seconds)))
        except WarehouseBusyError:
            if wait_seconds <= QUICK_SECONDS:
                raise _busy(warehouse, wait_seconds) from None
            if on_wait is not None:
                on_wait()
            try:
                stack.enter_context(exclusive_file_lock(lock, timeout_seconds=wait_seconds - QUICK_SECONDS))
            except WarehouseBusyError:
                raise _busy(warehouse, wait_seconds) from None
        yield stack.enter_context(open_warehouse(warehouse, read_only=True))


def _busy(warehouse: Path, wait_seconds: float) -> WarehouseBusyError:
    return WarehouseBusyError(
        f"a run kept the warehouse {warehouse} open for writing for more than {wait_seconds:g} s"
    )


def polars_frame(
    conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] | Mapping[str, object] | None = None
) -> pl.DataFrame:
    """A query's rows as a polars DataFrame, through Arrow (no row-by-row Python); an empty result
    keeps its columns and types (an Arrow stream with no batch would lose them)."""
    return pl.DataFrame(pl.from_arrow(conn.execute(sql, params or []).arrow().read_all()))


def scalar_count(
    conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] | Mapping[str, object] | None = None
) -> int:
    """The integer a counting query returns (0 when it returns no row)."""
    row = conn.execute(sql, params or []).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
