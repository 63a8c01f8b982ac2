"""Daily partitions by the process context's creation date (UTC), and which refresh an asset is in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import dagster as dg

from oe_assets.config import settings


def daily_partitions(start: date | None = None) -> dg.DailyPartitionsDefinition:
    """`end_offset=1` adds today's partial day, so runs that are still going land too."""
    first = start or settings.current().start_date
    return dg.DailyPartitionsDefinition(start_date=first.isoformat(), timezone="UTC", end_offset=1)


def partition_dates(context: dg.AssetExecutionContext) -> list[date]:
    """The run's partitions as dates (one, or a range in a single-run backfill)."""
    return [date.fromisoformat(k) for k in context.partition_keys]


PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def run_dates(tags: Mapping[str, str]) -> list[date] | None:
    """The days a run's tags name (its partition, or a single-run backfill's range); None for a
    run of no partition (the catalog, a whole-table check run)."""
    if PARTITION_TAG in tags:
        return [date.fromisoformat(tags[PARTITION_TAG])]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if not start or not end:
        return None
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


REFRESH_TAG = "refresh"
"""Which job refreshes an asset: the daily partitions of process contexts, or the catalog."""
CONTEXTS_REFRESH = "process_contexts"
CATALOG_REFRESH = "catalog"
