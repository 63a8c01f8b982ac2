"""Process contexts of creation days -> the ``execution_context`` table family (pure).

The write the ``execution_context_tables`` asset does for the daily partitions of a run, kept
free of Dagster so that the benchmark (``oe-assets bench``) measures exactly this code: the
persisted schema registry, one :class:`~oe_assets.flatten.Flattener` for the run, and
:func:`~oe_assets.warehouse.replace_partition` (one transaction per day for the whole family).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime

import duckdb

from oe_assets.flatten import CONTEXTS, FlatBatch, Flattener
from oe_assets.landing.raw_contexts import iter_raw_documents
from oe_assets.prefetch import Prefetched
from oe_assets.timestamps import utc_now
from oe_assets.warehouse import WriteReport, load_registry, replace_partition

PARTITION_COLUMN = "_oe_partition"
BATCH_SIZE = 5000
"""Documents per flattened batch (one DuckDB insert per table per batch)."""
PREFETCH_DEPTH = 2
"""Flattened batches that may wait for the writer (what bounds the memory of running ahead)."""

DayDocuments = tuple[date, Iterable[Sequence[object]]]
"""A creation day and its raw documents in chunks."""


def write_context_partitions(
    conn: duckdb.DuckDBPyConnection,
    days: Iterable[DayDocuments],
    *,
    loaded_at: datetime | None = None,
) -> Iterator[tuple[date, WriteReport]]:
    """Flatten each day's chunks and replace that day, one transaction per day, in order.

    Parsing and flattening run in a background thread, up to :data:`PREFETCH_DEPTH` batches
    (across day boundaries) ahead of the writer, so Python flattens the next batch while DuckDB
    (which releases the GIL) writes this one: 100k contexts over 30 days took ~10.4 s instead
    of 12.3-13.0 s one after the other (less than full overlap: on two cores each slows the
    other). ``days`` and its chunks are consumed in that thread, so they must not use
    ``conn`` (give them a cursor of their own). One registry serves the whole run: it starts
    as the warehouse's and learns each name as it is given, as reloading it per day would.
    A day's report is yielded once that day is committed; an error rolls back the day being
    written (committed days stay) and is re-raised.
    """
    flattener = Flattener(CONTEXTS, load_registry(conn, CONTEXTS))
    stamp = loaded_at or utc_now()
    # The flattening thread needs a core of its own: a second DuckDB worker thread competing
    # for it made a 30-day load ~8% slower on two cores (measured with oe_assets.bench.ours).
    threads = conn.execute("SELECT current_setting('threads')").fetchone()

    def flattened() -> Iterator[tuple[date, FlatBatch | None]]:
        for day, chunks in days:
            constants = {PARTITION_COLUMN: day, "_oe_loaded_at": stamp}
            for chunk in chunks:
                yield day, flattener.flatten(chunk, constant_columns=constants)
            yield day, None  # the day is complete

    stream: Prefetched[tuple[date, FlatBatch | None]] | None = None
    try:
        conn.execute("SET threads = 1")
        stream = Prefetched(flattened(), depth=PREFETCH_DEPTH)
        items = iter(stream)
        for day, first in items:
            day_ended = False

            def day_batches(first: FlatBatch | None = first) -> Iterator[FlatBatch]:
                nonlocal day_ended
                batch = first
                while batch is not None:
                    yield batch
                    _, batch = next(items)
                day_ended = True

            report = replace_partition(
                conn, CONTEXTS, day.isoformat(), day_batches(), partition_column=PARTITION_COLUMN
            )
            if not day_ended:  # the next item would be mistaken for another day's first batch
                raise RuntimeError(f"the write of {day} stopped before the day's last batch")
            yield day, report
    finally:
        if stream is not None:
            stream.close()
        if threads is not None:
            conn.execute(f"SET threads = {int(threads[0])}")


def write_landed_partitions(
    conn: duckdb.DuckDBPyConnection, days: Iterable[date], *, loaded_at: datetime | None = None
) -> Iterator[tuple[date, WriteReport]]:
    """The landed raw documents of ``days`` (``raw_process_contexts``) -> their partitions.

    The documents are read through a cursor of their own (a separate DuckDB connection, made
    here in the caller's thread) because the flattening thread reads them while ``conn`` writes.
    """
    reader = conn.cursor()
    try:
        yield from write_context_partitions(
            conn,
            ((day, iter_raw_documents(reader, day, chunk_size=BATCH_SIZE)) for day in days),
            loaded_at=loaded_at,
        )
    finally:
        reader.close()
