"""Load a JSONL file of process contexts with OUR write path, in its own process.

``python -m oe_assets.bench.ours --input FILE --db WAREHOUSE.duckdb`` prints one JSON line.

The documents go through :func:`oe_assets.context_partition.write_context_partitions`, the
function the ``execution_context_tables`` asset calls for the daily partitions of a run (schema
registry, :class:`~oe_assets.flatten.Flattener` running ahead in a thread,
:func:`~oe_assets.warehouse.replace_partition`), one partition (and one transaction) per
creation day, in chunks of the asset's batch size: a 30-day file is loaded as a single-run
backfill of 30 partitions is. The only difference from the asset is where the documents come
from: the file, read line by line with orjson, instead of the ``raw_process_contexts`` table.

Timing: ``parse`` is reading and parsing the file and ``flatten`` the time spent inside
``Flattener.flatten`` (both in the flattening thread); ``write`` is the writer's busy time
(DuckDB DDL, inserts, commits: the wall time less the time it waited for flattened batches).
The three overlap, so they add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import resource
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from oe_assets import context_partition
from oe_assets.context_partition import BATCH_SIZE, write_context_partitions
from oe_assets.flatten import Flattener
from oe_assets.prefetch import Prefetched
from oe_assets.timestamps import parse_oe_timestamp, utc_now
from oe_assets.warehouse.connection import connect


class _Clock:
    """Seconds spent parsing and flattening, and seconds the writer waited for a batch."""

    def __init__(self) -> None:
        self.documents = 0
        self.parse = 0.0
        self.flatten = 0.0
        self.wait = 0.0


def _created_day(doc: Any, line_no: int) -> date:
    """The UTC creation day, as the raw landing computes ``partition_date``."""
    created = None
    if type(doc) is dict:
        meta = doc.get("metadata")
        if type(meta) is dict:
            value = meta.get("createdAt")
            if type(value) is str and len(value) == 24 and value[-1] == "Z" and value[10] == "T":
                with contextlib.suppress(ValueError):  # the API's own shape: already UTC
                    return date.fromisoformat(value[:10])
            created = parse_oe_timestamp(value)
    if created is None:
        raise ValueError(f"line {line_no}: metadata.createdAt is missing or not an ISO-8601 timestamp")
    return created.date()


def iter_day_chunks(
    path: Path, chunk_size: int = BATCH_SIZE, clock: _Clock | None = None
) -> Iterator[tuple[date, Iterator[list[Any]]]]:
    """``(day, chunks)`` per creation day, streaming; the file must be in createdAt order by day.

    Each day's chunks (lists of at most ``chunk_size`` documents) must be consumed before the
    next day is asked for (as :func:`itertools.groupby` does).
    """
    clock = clock or _Clock()

    def docs() -> Iterator[tuple[date, Any]]:
        with path.open("rb") as f:
            for line_no, line in enumerate(f, start=1):
                began = time.perf_counter()
                if not line.strip():
                    continue
                doc = orjson.loads(line)
                day = _created_day(doc, line_no)
                clock.parse += time.perf_counter() - began
                clock.documents += 1
                yield day, doc

    done: set[date] = set()
    for day, group in itertools.groupby(docs(), key=lambda item: item[0]):
        if day in done:
            raise ValueError(
                f"{path}: contexts of {day} appear again after other days; the file must be sorted by "
                "createdAt (oe_assets.bench.generate writes it so)"
            )
        done.add(day)
        documents = (doc for _, doc in group)

        def chunks(documents: Iterator[Any] = documents) -> Iterator[list[Any]]:
            while chunk := list(itertools.islice(documents, chunk_size)):
                yield chunk

        yield day, chunks()


def _timed(method: Callable[..., Any], clock: _Clock) -> Callable[..., Any]:
    def flatten(self: Flattener, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            clock.flatten += time.perf_counter() - began

    return flatten


def _waits_timed(clock: _Clock) -> type[Prefetched[Any]]:
    """A :class:`Prefetched` that adds the consumer's time blocked on the queue to ``clock.wait``."""

    class TimedPrefetched(Prefetched[Any]):
        def __iter__(self) -> Iterator[Any]:
            items = super().__iter__()
            while True:
                began = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    clock.wait += time.perf_counter() - began
                yield item

    return TimedPrefetched


def load_jsonl(path: Path, db: Path, *, chunk_size: int = BATCH_SIZE) -> dict[str, Any]:
    """Load ``path`` into the DuckDB file ``db`` the way the asset does; a summary dict."""
    clock = _Clock()
    original = Flattener.flatten
    Flattener.flatten = _timed(original, clock)  # type: ignore[method-assign]
    context_partition.Prefetched = _waits_timed(clock)  # type: ignore[misc]
    rows: dict[str, int] = {}
    partitions = quarantined = 0
    began = time.perf_counter()
    try:
        conn = connect(db)
        try:
            days = iter_day_chunks(path, chunk_size, clock)
            for _day, report in write_context_partitions(conn, days, loaded_at=utc_now()):
                partitions += 1
                quarantined += report.quarantined
                for table, n in report.rows_per_table.items():
                    rows[table] = rows.get(table, 0) + n
        finally:
            conn.close()
    finally:
        Flattener.flatten = original  # type: ignore[method-assign]
        context_partition.Prefetched = Prefetched  # type: ignore[misc]
    seconds = time.perf_counter() - began
    return {
        "loader": "ours",
        "contexts": clock.documents,
        "partitions": partitions,
        "quarantined": quarantined,
        "rows_per_table": rows,
        "seconds": round(seconds, 3),
        "seconds_parse": round(clock.parse, 3),
        "seconds_flatten": round(clock.flatten, 3),
        "seconds_write": round(seconds - clock.wait, 3),
        "seconds_writer_waiting": round(clock.wait, 3),
        "peak_rss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oe_assets.bench.ours", description=__doc__)
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--chunk-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile dump here")
    args = parser.parse_args(argv)
    if args.profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        summary = profiler.runcall(load_jsonl, args.input, args.db, chunk_size=args.chunk_size)
        profiler.dump_stats(str(args.profile))
    else:
        summary = load_jsonl(args.input, args.db, chunk_size=args.chunk_size)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
