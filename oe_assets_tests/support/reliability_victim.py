"""A pipeline process for the crash and concurrency tests.

Runs the project's partitioned assets (raw landing, flattening, event log) the way a launched run
does, in its own process, against the API and warehouse named by the OE_* variables and with
the runs stored in DAGSTER_HOME; without the asset checks, to keep the suite fast (see
reliability_support). ``--partition D`` is one partition (what a sensor request launches),
``--start D --end E`` one run over a range (a single-run backfill); ``--catalog`` runs the catalog
first. Exit code 0 and ``victim ok`` on success, 1 and one line on stderr on failure.

    python -m oe_assets_tests.support.reliability_victim --partition 2025-03-01
    python -m oe_assets_tests.support.reliability_victim --start 2025-03-01 --end 2025-03-03 --catalog
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta

import dagster as dg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reliability_victim")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--start", default=None)
    parser.add_argument("--end", default=None)
    parser.add_argument("--catalog", action="store_true")
    parser.add_argument("--tag", action="append", default=[], help="key=value run tag")
    args = parser.parse_args(argv)

    from oe_assets.orchestration.runner import ensure_dagster_home
    from oe_assets_tests.support.crash_points import install_from_env

    install_from_env()
    ensure_dagster_home()
    from oe_assets.definitions import build_definitions
    from oe_assets_tests.support.reliability_support import (
        LIGHT_CATALOG_JOB,
        LIGHT_CONTEXTS_JOB,
        failure_text,
        run_job,
        with_light_jobs,
    )

    defs = with_light_jobs(build_definitions())
    tags = dict(t.split("=", 1) for t in args.tag)
    with dg.DagsterInstance.get() as instance:
        if args.catalog:
            catalog = run_job(defs, instance, LIGHT_CATALOG_JOB)
            if not catalog.success:
                print(f"victim failed: {failure_text(catalog)}", file=sys.stderr)
                return 1
        if args.partition:
            result = run_job(defs, instance, LIGHT_CONTEXTS_JOB, partition_key=args.partition, tags=tags)
        else:
            start = date.fromisoformat(args.start)
            end = date.fromisoformat(args.end) if args.end else start
            days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
            result = run_job(defs, instance, LIGHT_CONTEXTS_JOB, days=days, tags=tags)
    if not result.success:
        print(f"victim failed: {failure_text(result)}", file=sys.stderr)
        return 1
    print("victim ok", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
