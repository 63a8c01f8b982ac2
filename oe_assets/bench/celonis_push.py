"""Push our warehouse into the Celonis stand-in, in its own process, and time it.

``python -m oe_assets.bench.celonis_push --db WAREHOUSE.duckdb`` prints one JSON line.

The stand-in (:class:`~oe_assets.celonis_simulator.CelonisSimulatorServer`, no job delay, its
pool in ``--pool``) is served by this process, so the measured process holds both sides: our
planning (the diff against the ledger, the Parquet chunks), the uploads over loopback HTTP, the
stand-in applying the jobs, and the polling. Every table of the data model the warehouse holds is
pushed with :func:`oe_assets.celonis.push_and_reload`, as the push assets do; tables of the model
the warehouse lacks are "absent", tables of the warehouse the model does not declare are not
pushed.

Timing: ``seconds_push`` is :func:`~oe_assets.celonis.deliver` as a whole (plan, submit, wait,
confirm) on a pool that has nothing yet, ``phase_seconds`` its parts as the delivery reports them
(``plan``: our diff and Parquet; ``submit``: creating the jobs and uploading the chunks; ``wait``:
the stand-in applying them; ``confirm``: our ledger); ``seconds_model_reload``
bringing the data model up to date and reloading it afterwards. ``seconds_unchanged_push`` is
``deliver`` once more right after, with nothing changed: the cost of checking an unchanged
warehouse. Then the stand-in's pool counts are compared with the warehouse's, table by table.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from oe_assets.bench.counts import count_ours
from oe_assets.bench.measure import print_summary
from oe_assets.celonis import (
    CelonisApi,
    CelonisConfig,
    OAuthClient,
    PushOutcome,
    PushTable,
    push_and_reload,
)
from oe_assets.celonis_simulator import CelonisSimulatorServer
from oe_assets.config.secret import Secret
from oe_assets.model.data_model import build_data_model
from oe_assets.model.declaration import MODEL
from oe_assets.warehouse.connection import open_warehouse

MODEL_NAME = "OE Process Contexts"
JOBS_PER_HOUR = 250


def _fresh_pool(pool: Path) -> None:
    """No pool file (nor chunk folder) left from an earlier run: the first push starts empty."""
    for path in (pool, pool.with_name(pool.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(pool.with_name(pool.name + ".chunks"), ignore_errors=True)


def _push_twice(db: Path, server: CelonisSimulatorServer) -> tuple[PushOutcome, float, PushOutcome]:
    """The first push (with the data model and reload), the seconds of the whole call, and the
    second push of the unchanged warehouse."""
    api = CelonisApi(
        CelonisConfig(server.url, server.pool_id, OAuthClient(server.client_id, Secret(server.client_secret)))
    )
    model = build_data_model(MODEL)
    tables = [PushTable(t.name, t.primary_key) for t in model.tables if t.role != "raw"]

    def push() -> PushOutcome:
        return push_and_reload(
            api,
            lambda: open_warehouse(db),
            tables,
            model=model,
            model_name=MODEL_NAME,
            jobs_per_hour=JOBS_PER_HOUR,
        )

    began = time.perf_counter()
    first = push()
    return first, time.perf_counter() - began, push()


def measure(db: Path, pool: Path) -> dict[str, Any]:
    warehouse = {c.table: c.rows for c in count_ours(db)}
    _fresh_pool(pool)
    server = CelonisSimulatorServer(pool_db=pool, job_delay=0.0).start()
    try:
        first, seconds_whole, second = _push_twice(db, server)
        in_pool = server.pool_counts()
    finally:
        server.stop()
    delivered = first.delivery.tables
    pushed = first.delivery.pushed
    rows_pushed = sum(delivered[t].upserts for t in pushed)
    seconds = first.delivery.seconds
    equal = [t for t in pushed if in_pool.get(t) == warehouse.get(t, delivered[t].warehouse_rows)]
    return {
        "tables_declared": len(delivered),
        "tables_pushed": len(pushed),
        "tables_absent": sorted(t for t, d in delivered.items() if d.outcome == "absent"),
        "warehouse_tables": len(warehouse),
        "warehouse_tables_not_declared": sorted(set(warehouse) - set(delivered)),
        "warehouse_rows": sum(warehouse.values()),
        "rows_pushed": rows_pushed,
        "parquet_bytes": first.delivery.parquet_bytes,
        "seconds_push": round(seconds, 3),
        "seconds_plan": first.delivery.phase_seconds["plan"],
        "phase_seconds": first.delivery.phase_seconds,
        "seconds_model_reload": round(seconds_whole - seconds, 3),
        "rows_per_second": round(rows_pushed / seconds) if seconds else None,
        "seconds_unchanged_push": round(second.delivery.seconds, 3),
        "tables_unchanged_on_second_push": sum(
            1 for d in second.delivery.tables.values() if d.outcome == "unchanged"
        ),
        "tables_rows_equal": len(equal),
        "tables_rows_different": sorted(set(pushed) - set(equal)),
        "model_rows_equal": all(first.pool_rows.get(t) == in_pool.get(t) for t in pushed),
        "peak_rss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oe_assets.bench.celonis_push", description=__doc__)
    parser.add_argument("--db", required=True, type=Path, help="the warehouse to push (gets the ledger)")
    parser.add_argument(
        "--pool",
        type=Path,
        default=None,
        help="the stand-in's pool file (default: celonis_pool.duckdb beside --db)",
    )
    args = parser.parse_args(argv)
    pool = args.pool or args.db.with_name("celonis_pool.duckdb")
    return print_summary(lambda: measure(args.db, pool))


if __name__ == "__main__":
    raise SystemExit(main())
