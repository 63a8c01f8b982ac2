"""Process contexts of creation days -> the ``execution_context`` table family (pure).

The write the ``execution_context_tables`` asset does for the daily partitions of a run, kept
free of Dagster so that the benchmark (``oe-assets bench``) measures exactly this code: the
persisted schema registry, one :class:`~oe_assets.flatten.Flattener` for the run, and
:func:`~oe_assets.warehouse.replace_partition` (one transaction per day for the whole family).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

import duckdb

from oe_assets.core.timestamps import utc_now
from oe_assets.flatten import CONTEXTS, LOADED_AT, PARTITION, FlatBatch, Flattener, SchemaRegistry
from oe_assets.flatten.prefetch import Prefetched
from oe_assets.flatten.process import FlattenProcess, FlattenTimes, Job, flatten_timed
from oe_assets.landing.raw_contexts import count_raw_documents, iter_raw_document_texts
from oe_assets.warehouse import WriteReport, load_registry, replace_partition, transaction

PARTITION_COLUMN = PARTITION
BATCH_SIZE = 5000
"""Documents per flattened batch (one DuckDB insert per table per batch)."""
PREFETCH_DEPTH = 2
"""Flattened batches that may wait for the writer (what bounds the memory of running ahead)."""
PROCESS_MIN_DOCUMENTS = 20_000
"""From this many documents in a run on, flatten in a child process: faster for large runs, within
the noise for small ones at some more memory, so small runs, like a sensor's refresh, keep the
thread (figures in ``docs/bench/findings.md``, "Flattening in a child process")."""

FlattenIn = Literal["thread", "process"]
DayDocuments = tuple[date, Iterable[Sequence[object]]]
DayHook = Callable[[duckdb.DuckDBPyConnection, date], object]
"""Work that must commit with a day's rows (it runs inside the day's transaction)."""
"""A creation day and its documents in chunks (JSON texts, or documents already parsed)."""


def flatten_in_for(documents: int) -> FlattenIn:
    """Where a run of ``documents`` contexts flattens (the asset's and the benchmark's rule)."""
    return "process" if documents >= PROCESS_MIN_DOCUMENTS else "thread"


@dataclass(slots=True)
class WriteTimes:
    """Where a run's time went: parse + flatten (running ahead) and the writer's waits for them."""

    flattening: FlattenTimes = field(default_factory=FlattenTimes)
    writer_waiting: float = 0.0


def write_context_partitions(
    conn: duckdb.DuckDBPyConnection,
    days: Iterable[DayDocuments],
    *,
    loaded_at: datetime | None = None,
    flatten_in: FlattenIn = "thread",
    times: WriteTimes | None = None,
    in_day: DayHook | None = None,
    registry: SchemaRegistry | None = None,
) -> Generator[tuple[date, WriteReport], None, None]:
    """Flatten each day's chunks and replace that day, one transaction per day, in order.

    Parsing and flattening run ahead of the writer, up to :data:`PREFETCH_DEPTH` batches
    (across day boundaries), in a thread or (``flatten_in="process"``) a child process: DuckDB
    writes one batch while Python flattens the next. In a thread both share the GIL, and each
    of the writer's DuckDB calls waits to take it back; see :mod:`oe_assets.flatten.process`.
    ``days`` and its chunks are consumed in the flattening thread, or in the caller's thread
    between writes with a process, so they must not use ``conn`` (give them a cursor of their
    own). One registry serves the whole run: it starts as the warehouse's and learns each name
    as it is given, as reloading it per day would. A day's report is yielded once that day is
    committed; an error rolls back the day being written (committed days stay) and is re-raised.
    A document that does not parse, has no usable key or cannot be walked is no error: it is
    quarantined with its text (``_oe_quarantine``, counted in the day's report) and the day lands.
    ``in_day(conn, day)`` runs inside each day's transaction, after the family's rows are written.
    ``registry``: the names to flatten with when ``conn`` is not the warehouse that holds them (a
    scratch published into PostgreSQL); by default ``conn``'s.
    """
    registry = registry if registry is not None else load_registry(conn, CONTEXTS)
    stamp = loaded_at or utc_now()
    times = times if times is not None else WriteTimes()
    jobs = _jobs(days, stamp)
    # The flattening side needs a core of its own: a second DuckDB worker thread competing for
    # it made a whole load slower on two cores (docs/bench/findings.md, "Loader rules").
    with _duckdb_threads(conn, 1), _flattening(jobs, registry, flatten_in, times.flattening) as stream:
        yield from write_flattened_partitions(conn, _waits_timed(stream, times), in_day=in_day)


def _jobs(days: Iterable[DayDocuments], loaded_at: datetime) -> Iterator[Job[date]]:
    """Each day's chunks as flattening jobs, each day ended by a pass-through job."""
    for day, chunks in days:
        constants = {PARTITION_COLUMN: day, LOADED_AT: loaded_at}
        for chunk in chunks:
            yield day, chunk, constants
        yield day, None, None  # the day is complete


@contextmanager
def _duckdb_threads(conn: duckdb.DuckDBPyConnection, threads: int) -> Iterator[None]:
    """DuckDB's ``threads`` setting for the block, restored after it."""
    before = conn.execute("SELECT current_setting('threads')").fetchone()
    try:
        conn.execute(f"SET threads = {int(threads)}")
        yield
    finally:
        if before is not None:
            conn.execute(f"SET threads = {int(before[0])}")


@contextmanager
def _flattening(
    jobs: Iterator[Job[date]], registry: SchemaRegistry, flatten_in: FlattenIn, total: FlattenTimes
) -> Iterator[Iterator[tuple[date, FlatBatch | None]]]:
    """``(day, batch)`` of the jobs, flattened ahead of the caller in a child process or a
    thread; the child or thread ends with the block."""
    running: FlattenProcess[date] | Prefetched[tuple[date, FlatBatch | None]]
    if flatten_in == "process":
        process: FlattenProcess[date] = FlattenProcess(CONTEXTS, registry, depth=PREFETCH_DEPTH)
        running, stream = process, _counted(process.run(jobs), total)
    else:
        prefetched = Prefetched(_flattened(Flattener(CONTEXTS, registry), jobs, total), depth=PREFETCH_DEPTH)
        running, stream = prefetched, iter(prefetched)
    try:
        yield stream
    finally:
        running.close()


def _flattened(
    flattener: Flattener, jobs: Iterator[Job[date]], total: FlattenTimes
) -> Iterator[tuple[date, FlatBatch | None]]:
    """The jobs flattened here (in the prefetching thread), their time added to ``total``."""
    for day, chunk, constants in jobs:
        if chunk is None:
            yield day, None
            continue
        batch, spent = flatten_timed(flattener, chunk, constants)
        total.add(spent)
        yield day, batch


def write_flattened_partitions(
    conn: duckdb.DuckDBPyConnection,
    items: Iterator[tuple[date, FlatBatch | None]],
    *,
    in_day: DayHook | None = None,
) -> Iterator[tuple[date, WriteReport]]:
    """The writer's half of :func:`write_context_partitions`: ``(day, batch)`` items, each day's
    batches ended by ``(day, None)``, each day replaced in a transaction of its own, in order.

    Also the benchmark's measure of the writer alone (``oe_assets.bench.writer_alone``), with
    batches flattened beforehand.
    """
    for day, first in items:
        day_ended = False

        def day_batches(first: FlatBatch | None = first) -> Iterator[FlatBatch]:
            nonlocal day_ended
            batch = first
            while batch is not None:
                yield batch
                _, batch = next(items)
            day_ended = True

        with transaction(conn):  # the family's write joins it; so does in_day
            report = replace_partition(
                conn, CONTEXTS, day.isoformat(), day_batches(), partition_column=PARTITION_COLUMN
            )
            if in_day is not None:
                in_day(conn, day)
        if not day_ended:  # the next item would be mistaken for another day's first batch
            raise RuntimeError(f"the write of {day} stopped before the day's last batch")
        yield day, report


def _counted(
    results: Iterator[tuple[date, FlatBatch | None, FlattenTimes | None]], total: FlattenTimes
) -> Iterator[tuple[date, FlatBatch | None]]:
    for day, batch, spent in results:
        if spent is not None:
            total.add(spent)
        yield day, batch


def _waits_timed(
    stream: Iterator[tuple[date, FlatBatch | None]], times: WriteTimes
) -> Iterator[tuple[date, FlatBatch | None]]:
    """``stream``, adding the time the writer waits for each item to ``times.writer_waiting``."""
    while True:
        began = time.perf_counter()
        try:
            item = next(stream)
        except StopIteration:
            return
        finally:
            times.writer_waiting += time.perf_counter() - began
        yield item


def write_landed_partitions(
    conn: duckdb.DuckDBPyConnection,
    days: Iterable[date],
    *,
    loaded_at: datetime | None = None,
    flatten_in: FlattenIn | None = None,
    in_day: DayHook | None = None,
) -> Iterator[tuple[date, WriteReport]]:
    """The landed raw documents of ``days`` (``raw_process_contexts``) -> their partitions.

    The documents are read through a cursor of their own (a separate DuckDB connection, made
    here in the caller's thread) because they are read while ``conn`` writes. Where they are
    flattened follows :func:`flatten_in_for` of their number unless ``flatten_in`` says.
    """
    days = list(days)
    mode = flatten_in or flatten_in_for(count_raw_documents(conn, days))
    reader = conn.cursor()
    try:
        yield from write_context_partitions(
            conn,
            ((day, iter_raw_document_texts(reader, day, chunk_size=BATCH_SIZE)) for day in days),
            loaded_at=loaded_at,
            flatten_in=mode,
            in_day=in_day,
        )
    finally:
        reader.close()
