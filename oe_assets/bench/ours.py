"""Load a JSONL file of process contexts with OUR write path, in its own process.

``python -m oe_assets.bench.ours --input FILE --db WAREHOUSE.duckdb`` prints one JSON line.

The documents go through :func:`oe_assets.load.contexts.write_context_partitions`, the
function the ``execution_context_tables`` asset calls for the daily partitions of a run (schema
registry, :class:`~oe_assets.flatten.Flattener` running ahead in a thread or, from
:data:`~oe_assets.load.contexts.PROCESS_MIN_DOCUMENTS` contexts on, a child process,
:func:`~oe_assets.warehouse.replace_partition`), one partition (and one transaction) per
creation day, in chunks of the asset's batch size: a 30-day file is loaded as a single-run
backfill of 30 partitions is. The only difference from the asset is where the documents come
from: the file (JSON texts and their ``createdAt`` read by DuckDB) instead of the
``raw_process_contexts`` table.

Timing: ``parse`` is parsing the JSON texts and ``flatten`` the time spent inside
``Flattener.flatten`` (both on the flattening side); ``write`` is the writer's busy time
(reading the file's lines, DuckDB DDL, inserts, commits: the wall time less the time it waited for
flattened batches). The three overlap, so they add up to more than the wall time.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import resource
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from oe_assets.bench.measure import loader_arguments, print_summary
from oe_assets.core.timestamps import parse_oe_timestamp, utc_now
from oe_assets.load.contexts import (
    BATCH_SIZE,
    FlattenIn,
    WriteTimes,
    flatten_in_for,
    write_context_partitions,
)
from oe_assets.warehouse import open_warehouse

_CREATED_AT = re.compile(rb'^\{"metadata":\{[^{}]*?"createdAt":"([^"\\]{1,64})"')
"""``metadata.createdAt`` of a line that starts with the metadata object (as the API's and the
generator's documents do), read before any nested object; any other line is parsed in full."""


def _created_day(line: bytes, line_no: int) -> date:
    """The UTC creation day, as the raw landing computes ``partition_date``."""
    found = _CREATED_AT.match(line)
    if found is not None:
        created: object = found.group(1).decode()
    else:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"line {line_no} is not valid JSON: {exc}") from None
        meta = doc.get("metadata") if type(doc) is dict else None
        created = meta.get("createdAt") if type(meta) is dict else None
    if type(created) is str and len(created) == 24 and created[-1] == "Z" and created[10] == "T":
        with contextlib.suppress(ValueError):  # the API's own shape: already UTC
            return date.fromisoformat(created[:10])
    parsed = parse_oe_timestamp(created)
    if parsed is None:
        raise ValueError(
            f"line {line_no}: metadata.createdAt {created!r} is missing or not an ISO-8601 timestamp"
        )
    return parsed.date()


def count_documents(path: Path) -> int:
    """Lines of the file, counted blockwise (what the asset learns from a count over the raw table;
    only the choice of thread or process depends on it, so blank lines need not be told apart)."""
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def iter_day_chunks(path: Path, chunk_size: int = BATCH_SIZE) -> Iterator[tuple[date, Iterator[list[bytes]]]]:
    """``(day, chunks of JSON texts)`` per creation day, streaming; the file must be by day.

    Lines stay unparsed, as the raw table's documents are texts beside a ``partition_date``
    column: the creation day is read off the line's start (see :data:`_CREATED_AT`), and parsing
    is left to the flattening side, as for the asset. Each day's chunks must be consumed before
    the next day is asked for.
    """

    def docs() -> Iterator[tuple[date, bytes]]:
        with path.open("rb") as f:
            for line_no, line in enumerate(f, start=1):
                if line.strip():
                    yield _created_day(line, line_no), line

    done: set[date] = set()
    for day, group in itertools.groupby(docs(), key=lambda item: item[0]):
        if day in done:
            raise ValueError(
                f"{path}: contexts of {day} appear again after other days; the file must be sorted by "
                "createdAt (oe_assets.bench.generate writes it so)"
            )
        done.add(day)
        texts = (text for _, text in group)

        def chunks(texts: Iterator[bytes] = texts) -> Iterator[list[bytes]]:
            while chunk := list(itertools.islice(texts, chunk_size)):
                yield chunk

        yield day, chunks()


def load_jsonl(
    path: Path, db: Path, *, chunk_size: int = BATCH_SIZE, flatten_in: FlattenIn | None = None
) -> dict[str, Any]:
    """Load ``path`` into the DuckDB file ``db`` the way the asset does; a summary dict."""
    rows: dict[str, int] = {}
    partitions = quarantined = 0
    times = WriteTimes()
    began = time.perf_counter()
    mode = flatten_in or flatten_in_for(count_documents(path))
    with open_warehouse(db) as conn:
        days = iter_day_chunks(path, chunk_size)
        for _day, report in write_context_partitions(
            conn, days, loaded_at=utc_now(), flatten_in=mode, times=times
        ):
            partitions += 1
            quarantined += report.quarantined
            for table, n in report.rows_per_table.items():
                rows[table] = rows.get(table, 0) + n
    seconds = time.perf_counter() - began
    return {
        "loader": "ours",
        "contexts": times.flattening.documents,
        "flatten_in": mode,
        "partitions": partitions,
        "quarantined": quarantined,
        "rows_per_table": rows,
        "seconds": round(seconds, 3),
        "seconds_parse": round(times.flattening.parse, 3),
        "seconds_flatten": round(times.flattening.flatten, 3),
        "seconds_write": round(seconds - times.writer_waiting, 3),
        "seconds_writer_waiting": round(times.writer_waiting, 3),
        "peak_rss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = loader_arguments("ours", __doc__, profile=True)
    parser.add_argument("--chunk-size", type=int, default=BATCH_SIZE)
    parser.add_argument(
        "--flatten-in",
        choices=["thread", "process"],
        default=None,
        help="where to flatten (default: the asset's rule for the file's number of contexts)",
    )
    args = parser.parse_args(argv)
    return print_summary(
        lambda: load_jsonl(args.input, args.db, chunk_size=args.chunk_size, flatten_in=args.flatten_in),
        args.profile,
    )


if __name__ == "__main__":
    raise SystemExit(main())
