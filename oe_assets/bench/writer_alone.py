"""How long does our writer take with nothing to wait for? The floor of our loader, not a loader.

``python -m oe_assets.bench.writer_alone --input FILE --db OUT.duckdb`` prints one JSON line.

Every day of the file is parsed and flattened first, in this process, with the loader's
registry and batch size (untimed, reported as ``seconds_flatten_beforehand``). Then the batches
go through :func:`oe_assets.load.contexts.write_flattened_partitions`, the writer's half of
the loader (one ``replace_partition`` transaction per day), and the writes and the closing
checkpoint are timed. However fast flattening became, our loader could not beat this time, so
dlt's time divided by it is the most our design could reach against dlt on the same file.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from oe_assets.bench.measure import loader_arguments, print_summary
from oe_assets.bench.ours import iter_day_chunks
from oe_assets.core.timestamps import utc_now
from oe_assets.flatten import CONTEXTS, LOADED_AT, FlatBatch, Flattener
from oe_assets.flatten.process import parse_documents
from oe_assets.load.contexts import BATCH_SIZE, PARTITION_COLUMN, write_flattened_partitions
from oe_assets.warehouse import load_registry, open_warehouse


def flatten_beforehand(
    path: Path, flattener: Flattener, chunk_size: int
) -> list[tuple[date, FlatBatch | None]]:
    """Every day's batches of ``path``, each day ended by ``(day, None)``, as the loader's stream."""
    stamp = utc_now()
    items: list[tuple[date, FlatBatch | None]] = []
    for day, chunks in iter_day_chunks(path, chunk_size):
        constants = {PARTITION_COLUMN: day, LOADED_AT: stamp}
        for chunk in chunks:
            items.append((day, flattener.flatten(parse_documents(chunk), constant_columns=constants)))
        items.append((day, None))
    return items


def measure(path: Path, db: Path, *, chunk_size: int = BATCH_SIZE) -> dict[str, Any]:
    # Closing the connection checkpoints what the WAL still holds: part of the writer's cost.
    with open_warehouse(db) as conn:
        began = time.perf_counter()
        flattener = Flattener(CONTEXTS, load_registry(conn, CONTEXTS))
        items = flatten_beforehand(path, flattener, chunk_size)
        flattened = time.perf_counter()
        rows: dict[str, int] = {}
        partitions = 0
        stream: Iterator[tuple[date, FlatBatch | None]] = iter(items)
        for _day, report in write_flattened_partitions(conn, stream):
            partitions += 1
            for table, n in report.rows_per_table.items():
                rows[table] = rows.get(table, 0) + n
        written = time.perf_counter()
    closed = time.perf_counter()
    return {
        "loader": "ours, writer alone",
        "contexts": sum(batch.stats.documents for _, batch in items if batch is not None),
        "partitions": partitions,
        "rows_per_table": rows,
        "seconds_flatten_beforehand": round(flattened - began, 3),
        "seconds_write": round(closed - flattened, 3),
        "seconds_close": round(closed - written, 3),
        "peak_rss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = loader_arguments("writer_alone", __doc__)
    parser.add_argument("--chunk-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args(argv)
    return print_summary(lambda: measure(args.input, args.db, chunk_size=args.chunk_size))


if __name__ == "__main__":
    raise SystemExit(main())
