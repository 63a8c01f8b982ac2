"""Load JSONL files of process contexts into a PostgreSQL warehouse with OUR write path.

``python -m oe_assets.bench.postgres_load --to URL --schema S --parallel P FILE...`` prints one
JSON line. Each file is one run, as the sensor launches one run per day: it takes its days'
partition locks, flattens into a scratch and publishes each day in a transaction of its own
(:func:`~oe_assets.load.contexts_pg.write_context_partitions_pg`, the asset's code, reading the
file instead of the raw table). ``P`` runs go at the same time, each in a process of its own with
its own connection, as runs on several machines would. The schema ``S`` is emptied first; the
password comes from ``PGPASSWORD``, never the command line.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

from oe_assets.bench.measure import print_summary
from oe_assets.bench.ours import count_documents, iter_day_chunks
from oe_assets.core.timestamps import utc_now
from oe_assets.flatten import CONTEXTS
from oe_assets.load.contexts import flatten_in_for
from oe_assets.load.contexts_pg import write_context_partitions_pg
from oe_assets.warehouse.postgres.connect import connected
from oe_assets.warehouse.postgres.locks import partition_locks
from oe_assets.warehouse.postgres.url import PostgresUrl, parse_postgres_url
from oe_assets.warehouse.sql import quote_ident

SETTING = "--to"


def load_file(url: str, schema: str, path: Path) -> dict[str, int]:
    """One run: the file's days into the warehouse at ``url`` (its password from ``PGPASSWORD``,
    which a worker inherits: a password never crosses to another process otherwise) in ``schema``;
    rows written per table."""
    target = parse_postgres_url(url, SETTING)
    rows: dict[str, int] = {}
    days = _days_of(path)
    with (
        connected(target, SETTING, work="write", schema=schema) as pg,
        partition_locks(pg, CONTEXTS.root_table, [d.isoformat() for d in days]),
    ):
        mode = flatten_in_for(count_documents(path))
        for _day, report in write_context_partitions_pg(
            pg, iter_day_chunks(path), loaded_at=utc_now(), flatten_in=mode
        ):
            for table, n in report.rows_per_table.items():
                rows[table] = rows.get(table, 0) + n
    return rows


def _days_of(path: Path) -> list[date]:
    """The file's creation days (its lines are read, not parsed), to lock them before the write."""
    days = []
    for day, chunks in iter_day_chunks(path):
        days.append(day)
        for _ in chunks:
            pass
    return days


def load_in_parallel(target: PostgresUrl, schema: str, files: list[Path], parallel: int) -> dict[str, Any]:
    """Every file a run, ``parallel`` at a time, into an emptied ``schema``; the figures."""
    with connected(target, SETTING, work="write") as pg:
        pg.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        pg.execute(f"CREATE SCHEMA {quote_ident(schema)}")
    began = time.perf_counter()
    rows: dict[str, int] = {}
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=spawn) as pool:
        for written in pool.map(load_file, [target.shown] * len(files), [schema] * len(files), files):
            for table, n in written.items():
                rows[table] = rows.get(table, 0) + n
    seconds = time.perf_counter() - began
    return {
        "runs": len(files),
        "parallel": parallel,
        "seconds": round(seconds, 3),
        "rows": sum(rows.values()),
        "rows_per_table": rows,
        "peak_rss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oe_assets.bench.postgres_load", description=__doc__)
    parser.add_argument(
        "--to", required=True, help="postgresql://user@host:port/database (password: PGPASSWORD)"
    )
    parser.add_argument("--schema", default="oe_bench_load")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    target = parse_postgres_url(args.to, SETTING)
    return print_summary(lambda: load_in_parallel(target, args.schema, args.files, args.parallel))


if __name__ == "__main__":
    raise SystemExit(main())
