"""Process KPIs per digital process and creation day, computed with polars from the activity log.

The activity log and the contexts' statuses are read from DuckDB as Arrow tables and handed to
polars without copying row by row; the figures go back to DuckDB the same way.

Definitions (case = one process context, day = its creation day, `_oe_partition`):

- ``case_count``: cases of the digital process created that day that have activities.
- ``throughput_median_seconds`` / ``throughput_p90_seconds``: per case, from `Process started`
  (`createdAt`) to its last activity. For a finished, failed or stopped run the last activity is
  `Process <status>` at `updatedAt`, so this is its whole duration; for a run still going it is
  the time so far (up to its latest step or status change). Median and 90th percentile with
  linear interpolation (DuckDB's ``median``/``quantile_cont``). A case without a readable
  `createdAt` has no throughput and is left out of both.
- ``status_mix``: the cases' current statuses with their counts, most frequent first, e.g.
  ``finished: 20, failed: 3``.
- ``variant_count`` and ``top_variants``: a variant is a case's activity sequence (every row of
  the activity log, ordered by time, then the log's ``sort_order``, then name), written
  ``a → b → c``; the :data:`TOP_VARIANTS` most frequent, as ``<cases>× <sequence>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb
import polars as pl

from oe_assets.process_mining.activity_log import ACTIVITY_LOG
from oe_assets.warehouse import transaction
from oe_assets.warehouse.reading import polars_frame

PROCESS_KPIS = "process_kpis"
TOP_VARIANTS = 3
VARIANT_SEPARATOR = " → "
GROUP_KEYS = ("_oe_partition", "execution_template_id", "execution_template_name")

PROCESS_KPIS_DDL = f"""
CREATE TABLE IF NOT EXISTS {PROCESS_KPIS} (
    _oe_partition DATE NOT NULL,
    execution_template_id VARCHAR,
    execution_template_name VARCHAR,
    case_count BIGINT NOT NULL,
    throughput_median_seconds DOUBLE,
    throughput_p90_seconds DOUBLE,
    status_mix VARCHAR NOT NULL,
    variant_count BIGINT NOT NULL,
    top_variants VARCHAR[] NOT NULL
)
"""


def read_activities(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> pl.DataFrame:
    """The days' activity-log rows with each case's current status, through Arrow."""
    return polars_frame(
        conn,
        f"""SELECT a.case_id, a.activity, a.event_time, a.activity_type, a.sort_order,
                   a.execution_template_id, a.execution_template_name, a._oe_partition, c.status
            FROM {ACTIVITY_LOG} a LEFT JOIN execution_context c ON c."context$processid" = a.case_id
            WHERE a._oe_partition IN (SELECT unnest($days::DATE[]))""",
        {"days": list(days)},
    )


def case_table(activities: pl.DataFrame) -> pl.DataFrame:
    """One row per case: its group, status, throughput in seconds and variant."""
    ordered = activities.sort(["case_id", "event_time", "sort_order", "activity"])
    return ordered.group_by("case_id", maintain_order=True).agg(
        *(pl.col(k).first() for k in GROUP_KEYS),
        pl.col("status").first(),
        (
            (
                pl.col("event_time").max()
                - pl.col("event_time").filter(pl.col("activity_type") == "start").min()
            ).dt.total_microseconds()
            / 1e6
        ).alias("throughput_seconds"),
        pl.col("activity").str.join(VARIANT_SEPARATOR).alias("variant"),
    )


def _counted(cases: pl.DataFrame, column: str, label: str) -> pl.DataFrame:
    """Per group, the values of ``column`` with their case counts, most frequent first."""
    counted = cases.group_by([*GROUP_KEYS, column]).len("n")
    return counted.sort(["n", column], descending=[True, False], nulls_last=True).with_columns(
        pl.col(column).fill_null("(none)").alias(label)
    )


def compute_kpis(activities: pl.DataFrame) -> pl.DataFrame:
    """The KPIs of the module's docstring, one row per (day, digital process)."""
    cases = case_table(activities)
    figures = cases.group_by(GROUP_KEYS).agg(
        pl.len().alias("case_count"),
        pl.col("throughput_seconds").median().alias("throughput_median_seconds"),
        pl.col("throughput_seconds").quantile(0.9, interpolation="linear").alias("throughput_p90_seconds"),
        pl.col("variant").n_unique().alias("variant_count"),
    )
    statuses = (
        _counted(cases, "status", "status_label")
        .group_by(GROUP_KEYS, maintain_order=True)
        .agg(pl.format("{}: {}", "status_label", "n").str.join(", ").alias("status_mix"))
    )
    variants = (
        _counted(cases, "variant", "variant_label")
        .group_by(GROUP_KEYS, maintain_order=True)
        .agg(pl.format("{}× {}", "n", "variant_label").head(TOP_VARIANTS).alias("top_variants"))
    )
    joined = figures.join(statuses, on=GROUP_KEYS, nulls_equal=True).join(
        variants, on=GROUP_KEYS, nulls_equal=True
    )
    columns = [
        *GROUP_KEYS, "case_count", "throughput_median_seconds", "throughput_p90_seconds",
        "status_mix", "variant_count", "top_variants",
    ]  # fmt: skip
    return joined.select(columns).sort(["_oe_partition", "execution_template_name", "execution_template_id"])


def rebuild_kpis(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> pl.DataFrame:
    """Replace the days' KPI rows in one transaction; returns the rows written."""
    with transaction(conn):
        kpis = compute_kpis(read_activities(conn, days)) if _has_activity_log(conn) else pl.DataFrame()
        conn.execute(PROCESS_KPIS_DDL)
        conn.execute(
            f"DELETE FROM {PROCESS_KPIS} WHERE _oe_partition IN (SELECT unnest($days::DATE[]))",
            {"days": list(days)},
        )
        if kpis.height:
            conn.register("_oe_process_kpis_new", kpis.to_arrow())
            try:
                conn.execute(f"INSERT INTO {PROCESS_KPIS} BY NAME SELECT * FROM _oe_process_kpis_new")
            finally:
                conn.unregister("_oe_process_kpis_new")
    return kpis


def _has_activity_log(conn: duckdb.DuckDBPyConnection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name IN (?, ?)",
        [ACTIVITY_LOG, "execution_context"],
    ).fetchone()
    return bool(row and row[0] == 2)
