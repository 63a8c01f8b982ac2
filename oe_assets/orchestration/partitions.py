"""Daily partitions by the process context's creation date (UTC), and which refresh an asset is in."""

from __future__ import annotations

from datetime import date

import dagster as dg

from oe_assets.config import settings


def daily_partitions(start: date | None = None) -> dg.DailyPartitionsDefinition:
    """`end_offset=1` adds today's partial day, so runs that are still going land too."""
    first = start or settings.current().start_date
    return dg.DailyPartitionsDefinition(start_date=first.isoformat(), timezone="UTC", end_offset=1)


def partition_dates(context: dg.AssetExecutionContext) -> list[date]:
    """The run's partitions as dates (one, or a range in a single-run backfill)."""
    return [date.fromisoformat(k) for k in context.partition_keys]


REFRESH_TAG = "refresh"
"""Which job refreshes an asset: the daily partitions of process contexts, or the catalog."""
CONTEXTS_REFRESH = "process_contexts"
CATALOG_REFRESH = "catalog"
