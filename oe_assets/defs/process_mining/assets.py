"""The `process_mining` layer: the Celonis extractor's event log, an activity-level log, process KPIs
and the process map."""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from oe_assets.landing.raw_contexts import RAW_CONTEXTS
from oe_assets.landing.retention import MODEL_DELETED_AT
from oe_assets.orchestration.metadata import OWNERS, Warehouse, markdown_table, row_count, table_metadata
from oe_assets.orchestration.partitions import CONTEXTS_REFRESH, REFRESH_TAG, partition_dates
from oe_assets.orchestration.resources import DUCKDB_POOL, WarehouseResource, warehouse_kind
from oe_assets.process_mining.activity_log import ACTIVITY_LOG, rebuild_activity_log_partition
from oe_assets.process_mining.activity_log_pg import rebuild_activity_log_partition_pg
from oe_assets.process_mining.event_log import EVENT_LOG, merge_event_log_partition
from oe_assets.process_mining.event_log_pg import merge_event_log_partition_pg
from oe_assets.process_mining.kpis import PROCESS_KPIS, rebuild_kpis
from oe_assets.process_mining.kpis_pg import rebuild_kpis_pg
from oe_assets.process_mining.process_map import Graph, edge_table, write_process_map
from oe_assets.process_mining.process_map_pg import write_process_map_pg

PROCESS_MINING_GROUP = "process_mining"

_CTX = dg.AssetKey(["execution_context"])
_TPL = dg.AssetKey(["execution_templates"])


def _lineage(deps: dict[str, list[tuple[dg.AssetKey, str]]]) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=key, column_name=name) for key, name in sources]
            for column, sources in deps.items()
        }
    )


EVENT_LOG_LINEAGE = _lineage(
    {
        "execution_template_name": [(_TPL, "name")],
        "instance_id": [(_CTX, "context$processid")],
        "created_at": [(_CTX, "metadata$createdAt")],
        "last_modified": [(_CTX, "metadata$updatedAt")],
        "status": [(_CTX, "status")],
        "_oe_deleted_at": [(_CTX, "_oe_deleted_at")],
    }
)

EVENT_LOG_DESCRIPTION = (
    "The Celonis extractor's event log (its activity table): one row per process context with "
    "execution_template_name, instance_id (primary key = context$processid), created_at, last_modified, "
    "status. Maintained with the extractor's event-log MERGE, one partition at a time: a known instance gets "
    "last_modified and status updated, a new one is inserted. Nothing leaves it except by "
    "`oe-assets prune --deleted`: `_oe_deleted_at` marks a context the API no longer returns."
)

ACTIVITY_LOG_DESCRIPTION = (
    "Activity-level log for process mining: one row per (case_id, activity, event_time), case = process "
    "context. Activities: 'Process started' (createdAt); every event-type key whose payload has a time of "
    "its own (metadata.occurredAt, occurredAt, metadata.timestamp, timestamp, metadata.createdAt, "
    "createdAt or firedAt, first readable one), named by the key; 'Status: <status>' for every status "
    "observed between loads (history); and 'Process <status>' at updatedAt for finished/failed/stopped "
    "runs. A 'Status: <status>' at the same instant as 'Process <status>' is the same fact and is left out."
)

PROCESS_KPIS_DESCRIPTION = (
    "Process KPIs per digital process and creation day, from the activity log: number of cases, "
    "throughput time (median and 90th percentile in seconds, from 'Process started' to the case's last "
    "activity, which is the end for finished, failed and stopped runs), the mix of current statuses, and "
    "the most frequent variants (activity sequences). Each run also redraws the process map of the whole "
    "activity log (which activity follows which, and how often) as an SVG file; its path is on the "
    "asset's page."
)


def _partitioned_asset(
    partitions: dg.DailyPartitionsDefinition,
    name: str,
    deps: list[dg.AssetKey],
    description: str,
    kinds: frozenset[str] = frozenset({"sql"}),
    **more: Any,
) -> Any:
    """The decorator the process-mining assets share: a daily-partitioned SQL asset, refreshed with the contexts."""
    return dg.asset(
        name=name,
        group_name=PROCESS_MINING_GROUP,
        deps=deps,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=DUCKDB_POOL,
        kinds={warehouse_kind(), *kinds},
        owners=OWNERS,
        tags={"layer": "process_mining", REFRESH_TAG: CONTEXTS_REFRESH},
        description=description,
        **more,
    )


def event_log_asset(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    @_partitioned_asset(
        partitions,
        EVENT_LOG,
        [_CTX, _TPL],
        EVENT_LOG_DESCRIPTION,
        metadata={"dagster/column_lineage": EVENT_LOG_LINEAGE},
    )
    def event_log(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        days = partition_dates(context)
        if warehouse.on_postgres:
            with warehouse.postgres() as pg:
                meta = _event_log_metadata(pg, [merge_event_log_partition_pg(pg, day) for day in days])
        else:
            with warehouse.get_connection() as conn:
                meta = _event_log_metadata(conn, [merge_event_log_partition(conn, day) for day in days])
        return dg.MaterializeResult(metadata=meta)

    return event_log


def _event_log_metadata(conn: Warehouse, merges: list[dict[str, int]]) -> dict[str, Any]:
    """The event log's page after the run's merges (their counts per day, summed)."""
    totals = {key: sum(counts[key] for counts in merges) for key in ("source_rows", "inserted", "updated")}
    extra = {
        "inserted": dg.MetadataValue.int(totals["inserted"]),
        "updated": dg.MetadataValue.int(totals["updated"]),
        "marked_deleted": dg.MetadataValue.int(
            row_count(conn, EVENT_LOG, f"WHERE {MODEL_DELETED_AT} IS NOT NULL")
        ),
        "dagster/column_lineage": EVENT_LOG_LINEAGE,
    }
    return table_metadata(conn, EVENT_LOG, partition_rows=totals["source_rows"], extra=extra)


def activity_log_asset(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    @_partitioned_asset(
        partitions, ACTIVITY_LOG, [_CTX, _TPL, dg.AssetKey([RAW_CONTEXTS])], ACTIVITY_LOG_DESCRIPTION
    )
    def activity_log(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        days = partition_dates(context)
        if warehouse.on_postgres:
            with warehouse.postgres() as pg:
                meta = _activity_log_metadata(
                    pg, [rebuild_activity_log_partition_pg(pg, day) for day in days]
                )
        else:
            with warehouse.get_connection() as conn:
                meta = _activity_log_metadata(
                    conn, [rebuild_activity_log_partition(conn, day) for day in days]
                )
        return dg.MaterializeResult(metadata=meta)

    return activity_log


def _activity_log_metadata(conn: Warehouse, rebuilt: list[dict[str, int]]) -> dict[str, Any]:
    """The activity log's page after the run's days (their rows per activity type, summed)."""
    by_type: dict[str, int] = {}
    for counts in rebuilt:
        for kind, n in counts.items():
            by_type[kind] = by_type.get(kind, 0) + n
    extra = {"activities_by_type": markdown_table(sorted(by_type.items()), ("activity_type", "rows"))}
    return table_metadata(conn, ACTIVITY_LOG, partition_rows=sum(by_type.values()), extra=extra)


def process_kpis_asset(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    @_partitioned_asset(
        partitions,
        PROCESS_KPIS,
        [dg.AssetKey([ACTIVITY_LOG]), _CTX],
        PROCESS_KPIS_DESCRIPTION,
        kinds=frozenset({"polars"}),
    )
    def process_kpis(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        days, folder = partition_dates(context), warehouse.exports_folder()
        if warehouse.on_postgres:
            with warehouse.postgres() as pg:
                kpis = rebuild_kpis_pg(pg, days)
                meta = _process_kpis_metadata(pg, kpis, *write_process_map_pg(pg, folder))
        else:
            with warehouse.get_connection() as conn:
                kpis = rebuild_kpis(conn, days)
                meta = _process_kpis_metadata(conn, kpis, *write_process_map(conn, folder))
        return dg.MaterializeResult(metadata=meta)

    return process_kpis


def _process_kpis_metadata(
    conn: Warehouse, kpis: pl.DataFrame, map_path: Path, graph: Graph
) -> dict[str, Any]:
    """The KPIs' page: the rows written (the first 100), the process map's path and its edges."""
    rows: list[tuple[object, ...]] = [
        (r["_oe_partition"], r["execution_template_name"], r["case_count"],
         _seconds(r["throughput_median_seconds"]), _seconds(r["throughput_p90_seconds"]),
         r["status_mix"], "<br>".join(r["top_variants"]))
        for r in kpis.head(100).iter_rows(named=True)
    ]  # fmt: skip
    header = (
        "day",
        "digital process",
        "cases",
        "median throughput",
        "p90 throughput",
        "statuses",
        "top variants",
    )
    extra = {
        "kpis": markdown_table(rows, header),
        "process_map": dg.MetadataValue.path(str(map_path)),
        "process_map_edges": markdown_table(list(edge_table(graph)), ("from", "to", "times")),
    }
    return table_metadata(conn, PROCESS_KPIS, partition_rows=kpis.height, extra=extra)


def _seconds(value: float | None) -> str:
    """A duration a reader takes in: 95 s, 12.5 min, 3.2 h, 2.1 d."""
    if value is None:
        return "-"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} s"
