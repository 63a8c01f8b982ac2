"""Incremental cost: refresh one day's partition when the API and the warehouse hold H days.

``python -m oe_assets.bench.incremental --day D --history-days H --db F`` prints one JSON line; the
API comes from ``OE_API_URL``, ``OE_CLIENT_ID`` and ``OE_CLIENT_SECRET``. The parent (``oe-assets bench``) serves a simulator holding 1 day, then one
holding 30 days (the same day ``D`` in both: the simulator generates each day on its own), and
runs this module against each.

First the whole history is loaded (untimed) the way the assets do it: every day landed into
``raw_process_contexts`` and flattened into the ``execution_context`` family. Then day ``D`` is
refreshed ``--repeat`` times and timed: :func:`~oe_assets.landing.raw_contexts.land_process_contexts`
(the API read of that day and the raw table's replace) followed by
:func:`~oe_assets.load.contexts.write_landed_partitions` of the day's raw documents, which is
what materializing one partition of ``raw_process_contexts`` and ``execution_context_tables`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from oe_assets.bench.measure import print_summary
from oe_assets.client import OeClient, OeClientConfig
from oe_assets.config import settings
from oe_assets.config.secret import Secret
from oe_assets.landing.raw_contexts import land_process_contexts
from oe_assets.load.contexts import write_landed_partitions
from oe_assets.warehouse import open_warehouse


def refresh_day(conn: duckdb.DuckDBPyConnection, client: OeClient, templates: list[str], day: date) -> int:
    """Land and flatten one day, as one partition of the raw and the flattened assets; root rows."""
    land_process_contexts(conn, client, templates, [day])
    [(_, report)] = write_landed_partitions(conn, [day])
    return report.rows_per_table.get("execution_context", 0)


def client_config_from_env() -> OeClientConfig:
    """The simulator's URL and demo credentials, handed over by the parent in OE_* variables."""
    url = os.environ[settings.API_URL]
    return OeClientConfig(
        api_url=url,
        auth_url=os.environ.get(settings.AUTH_URL) or url,
        client_id=os.environ[settings.CLIENT_ID],
        client_secret=Secret(os.environ[settings.CLIENT_SECRET]),
    )


def measure(day: date, history_days: int, db: Path, repeat: int) -> dict[str, Any]:
    config = client_config_from_env()
    days = [day - timedelta(days=i) for i in range(history_days)]
    with OeClient(config) as client, open_warehouse(db) as conn:
        templates = [str(t["id"]) for t in client.list_execution_templates() if "id" in t]
        began = time.perf_counter()
        landed = land_process_contexts(conn, client, templates, days)
        for _ in write_landed_partitions(conn, sorted(days)):
            pass
        history_seconds = time.perf_counter() - began
        timings: list[float] = []
        rows = 0
        for _ in range(repeat):
            began = time.perf_counter()
            rows = refresh_day(conn, client, templates, day)
            timings.append(time.perf_counter() - began)
    return {
        "history_days": history_days,
        "history_contexts": landed.rows,
        "history_load_seconds": round(history_seconds, 3),
        "day": day.isoformat(),
        "day_contexts": rows,
        "repeat": repeat,
        "refresh_seconds": [round(t, 4) for t in timings],
        "refresh_seconds_median": round(statistics.median(timings), 4),
        "refresh_seconds_best": round(min(timings), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oe_assets.bench.incremental", description=__doc__)
    parser.add_argument("--day", required=True, type=date.fromisoformat)
    parser.add_argument("--history-days", required=True, type=int)
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    return print_summary(lambda: measure(args.day, args.history_days, args.db, args.repeat))


if __name__ == "__main__":
    raise SystemExit(main())
