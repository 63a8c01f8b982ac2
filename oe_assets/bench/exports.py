"""Time the process-mining exports (OCEL 2.0 in JSON, SQLite and XML; XES) on the comparison set.

``python -m oe_assets.bench.exports --db WAREHOUSE.duckdb --seed S --start D --days N`` prints one
JSON line. Our loader's warehouse holds the process contexts only, so this first completes a copy
of it the way the asset graph would: it lands the same seed's digital processes and accounts (the
simulator's catalog, through the catalog landing and flattening), and builds the activity log day
by day. Only then is each export timed, one after the other, each from a fresh read.
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson

from oe_assets.bench.measure import print_summary
from oe_assets.client.pages import parse_page
from oe_assets.exports.ocel import export_ocel
from oe_assets.exports.xes import export_xes
from oe_assets.flatten import FAMILIES
from oe_assets.landing.raw_catalog import land_catalog
from oe_assets.landing.raw_contexts import ensure_raw_tables
from oe_assets.load.catalog import rebuild_catalog_family
from oe_assets.process_mining.activity_log import rebuild_activity_log_partition
from oe_assets.simulator.generator import build_catalog
from oe_assets.simulator.timeutil import to_ms
from oe_assets.warehouse.connection import open_warehouse

FILES = ("ocel.jsonocel", "ocel.sqlite", "ocel.xmlocel", "activity_log.xes")


def complete_warehouse(db: Path, seed: int, start: datetime, days: int) -> float:
    """Catalog and activity log into the loader's warehouse; returns the seconds it took."""
    began = time.perf_counter()
    catalog = build_catalog(seed, to_ms(start), to_ms(start + timedelta(days=days)))
    now = datetime.now(UTC).replace(tzinfo=None)
    with open_warehouse(db) as conn:
        ensure_raw_tables(conn)  # the status history stays empty: the documents carry the status
        for raw, family, documents in (
            ("raw_execution_templates", "execution_templates", catalog.templates),
            ("raw_accounts", "accounts", catalog.tenants),
        ):
            land_catalog(conn, raw, parse_page(orjson.dumps(documents)), now)
            rebuild_catalog_family(conn, FAMILIES[family], raw)
        for offset in range(days + 1):
            rebuild_activity_log_partition(conn, start.date() + timedelta(days=offset))
    return time.perf_counter() - began


def time_exports(db: Path, folder: Path) -> dict[str, dict[str, Any]]:
    """Each export from the completed warehouse: seconds, bytes, events, objects."""
    results = {}
    for name in FILES:
        began = time.perf_counter()
        with duckdb.connect(str(db), read_only=True) as conn:
            export = export_xes if name.endswith(".xes") else export_ocel
            report = export(conn, folder / name)
        results[name] = {
            "seconds": round(time.perf_counter() - began, 3),
            "bytes": report.bytes,
            "events": report.events,
            "objects": sum(report.objects_per_type.values()),
            "dropped_values": sum(report.dropped.values()),
        }
    return results


def measure(db: Path, seed: int, start: datetime, days: int) -> dict[str, Any]:
    work = db.parent / "exports"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    copy = work / "warehouse.duckdb"
    shutil.copyfile(db, copy)
    prepare = complete_warehouse(copy, seed, start, days)
    with duckdb.connect(str(copy), read_only=True) as conn:
        row = conn.execute("SELECT count(*) FROM activity_log").fetchone()
    return {
        "seconds_prepare": round(prepare, 3),
        "activity_log_rows": int(row[0]) if row else 0,
        "exports": time_exports(copy, work),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oe_assets.bench.exports", description=__doc__)
    parser.add_argument("--db", required=True, type=Path, help="our loader's warehouse (copied, not changed)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--start", type=date.fromisoformat, required=True, help="the first day generated")
    parser.add_argument("--days", type=int, required=True)
    args = parser.parse_args(argv)
    start = datetime.combine(args.start, datetime.min.time(), tzinfo=UTC)
    return print_summary(lambda: measure(args.db, args.seed, start, args.days))


if __name__ == "__main__":
    raise SystemExit(main())
