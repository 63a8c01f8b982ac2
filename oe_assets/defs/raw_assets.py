"""The `oe_raw` layer: what the OE API returned, kept verbatim."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from oe_assets.client import OeClient
from oe_assets.defs.metadata import markdown_table, table_metadata
from oe_assets.defs.partitions import partition_dates
from oe_assets.defs.resources import DUCKDB_POOL, OeApiResource, WarehouseResource
from oe_assets.landing.outside_partitions import OutsidePartitions, count_outside_partitions
from oe_assets.landing.raw_catalog import RAW_ACCOUNTS, RAW_TEMPLATES, land_catalog
from oe_assets.landing.raw_contexts import RAW_CONTEXTS, RawLandingReport, commit_stage
from oe_assets.landing.stage import stage_process_contexts
from oe_assets.settings import START_DATE
from oe_assets.timestamps import utc_now

RAW_GROUP = "oe_raw"
OWNERS = ["team:data-engineering"]
OUTSIDE_CHECK = "no_contexts_outside_partitions"


def digital_process_ids(oe_api: OeApiResource, client: OeClient) -> list[str]:
    """The configured ids, else every digital process the API key can see."""
    configured = oe_api.configured_template_ids()
    if configured:
        for template_id in configured:
            client.get_execution_template(template_id)  # a clear error for an unknown id
        return list(configured)
    return [str(t["id"]) for t in client.list_execution_templates() if isinstance(t, dict) and "id" in t]


def stage_directory(warehouse: WarehouseResource) -> Path | None:
    """Stages go beside the warehouse (its disk must hold the data anyway; /tmp may be RAM)."""
    if warehouse.database == ":memory:":
        return None
    directory = Path(warehouse.database).resolve().parent
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _count_text(value: int | None) -> dg.MetadataValue:
    return dg.MetadataValue.int(value) if value is not None else dg.MetadataValue.text("unknown")


def outside_check_result(outside: OutsidePartitions) -> dg.AssetCheckResult:
    """WARN when contexts exist that no partition lands; passes (saying so) when the API has no count."""
    if outside.known:
        detail = (
            f"{outside.before_first_day} contexts created before {START_DATE}={outside.first_day}, "
            f"{outside.after_last_day} created after today ({outside.last_day}): no partition lands them"
        )
    else:
        detail = "unknown: the API answers without an X-Total-Count header"
    return dg.AssetCheckResult(
        check_name=OUTSIDE_CHECK,
        passed=outside.total == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "offending_rows": dg.MetadataValue.int(outside.total),
            "contexts_before_first_partition": _count_text(outside.before_first_day),
            "contexts_after_today": _count_text(outside.after_last_day),
            "detail": dg.MetadataValue.text(detail),
        },
    )


def contexts_metadata(
    conn: duckdb.DuckDBPyConnection,
    context: dg.AssetExecutionContext,
    report: RawLandingReport,
    outside: OutsidePartitions,
) -> dict[str, Any]:
    stage = report.stage
    window = context.partition_time_window
    retention: list[tuple[object, ...]] = [
        (d.day, d.landed_before, d.returned_now, d.newly_missing) for d in report.retention
    ]
    return table_metadata(
        conn,
        RAW_CONTEXTS,
        partition_rows=report.rows,
        extra={
            "partition_window": dg.MetadataValue.text(
                f"{window.start.isoformat()} .. {window.end.isoformat()}"
            ),
            "digital_processes_read": dg.MetadataValue.int(len(stage.templates_read)),
            "api_pages": dg.MetadataValue.int(stage.api_pages),
            "api_requests": dg.MetadataValue.int(stage.api_requests),
            "api_retries": dg.MetadataValue.int(stage.api_retries),
            "quarantined": dg.MetadataValue.int(stage.quarantined),
            "duplicates_merged": dg.MetadataValue.int(report.duplicates_merged),
            "older_versions_ignored": dg.MetadataValue.int(report.older_versions_ignored),
            "status_changes_observed": dg.MetadataValue.int(report.status_changes),
            "newly_missing": dg.MetadataValue.int(report.newly_missing),
            "partitions_shrunk_sharply": dg.MetadataValue.json(
                [d.day.isoformat() for d in report.retention if d.shrank_sharply]
            ),
            "retention_per_partition": markdown_table(
                retention, ("partition", "landed before", "returned now", "newly missing")
            ),
            "rows_per_partition": markdown_table(
                sorted(report.rows_per_partition.items()), ("partition", "rows")
            ),
            "contexts_before_first_partition": _count_text(outside.before_first_day),
            "contexts_after_today": _count_text(outside.after_last_day),
        },
    )


def log_landing(
    context: dg.AssetExecutionContext, report: RawLandingReport, outside: OutsidePartitions
) -> None:
    for q in report.stage.quarantine_samples:
        context.log.warning(f"Quarantined process context {q.record_key or '<no id>'}: {q.reason}")
    for day in report.retention:
        if day.shrank_sharply:
            context.log.warning(
                f"{day.day}: the API returned {day.returned_now} contexts where {day.landed_before} were landed; "
                f"{day.newly_missing} no longer returned are kept, marked deleted_at "
                "(`oe-assets prune --deleted` removes marked contexts)"
            )
        elif day.newly_missing:
            context.log.info(
                f"{day.day}: {day.newly_missing} landed contexts no longer returned; kept, marked deleted_at"
            )
    if outside.total:
        context.log.warning(
            f"{outside.before_first_day} contexts were created before {START_DATE}={outside.first_day} and "
            f"{outside.after_last_day} after today: no partition lands them"
        )


def build_raw_assets(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetsDefinition]:
    first_partition = partitions.start.date()

    # A multi_asset only to allow subsetting: a job may select the asset without its check.
    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                RAW_CONTEXTS,
                group_name=RAW_GROUP,
                kinds={"duckdb", "python"},
                owners=OWNERS,
                tags={"layer": "raw"},
                description=(
                    "Process contexts as the OE API returns them, one row per context (`document` holds the "
                    "API's own text of it), partitioned by `metadata.createdAt` (UTC day). A refresh only adds "
                    "and updates (upsert by process id; an older `updatedAt` never overwrites a newer version): "
                    "a landed context the API no longer returns is kept with `deleted_at` set (`oe-assets prune "
                    "--deleted` removes such contexts). The API is read into a stage file first; the warehouse "
                    "is opened only to commit it, in one transaction. Also keeps "
                    "`raw_process_context_status_history` (every status observed)."
                ),
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(
                OUTSIDE_CHECK,
                asset=RAW_CONTEXTS,
                blocking=False,
                description=(
                    f"No process context was created before {START_DATE} or after today, where no partition "
                    "lands it (WARN; counted with the API's X-Total-Count)."
                ),
            )
        ],
        name=RAW_CONTEXTS,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=DUCKDB_POOL,
        can_subset=True,
    )
    def raw_process_contexts(
        context: dg.AssetExecutionContext, oe_api: OeApiResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        days = partition_dates(context)
        with oe_api.open_client() as client:
            template_ids = digital_process_ids(oe_api, client)
            outside = count_outside_partitions(client, template_ids, first_partition, utc_now().date())
            # The API is read into the stage first; the warehouse is opened only once it is complete.
            with (
                stage_process_contexts(
                    client, template_ids, days, directory=stage_directory(warehouse)
                ) as stage,
                warehouse.get_connection() as conn,
            ):
                report = commit_stage(conn, stage, utc_now())
                meta = contexts_metadata(conn, context, report, outside)
        log_landing(context, report, outside)
        selected = (
            dg.AssetCheckKey(dg.AssetKey([RAW_CONTEXTS]), OUTSIDE_CHECK) in context.selected_asset_check_keys
        )
        yield dg.MaterializeResult(
            asset_key=RAW_CONTEXTS,
            metadata=meta,
            check_results=[outside_check_result(outside)] if selected else [],
        )

    @dg.asset(
        name=RAW_TEMPLATES,
        group_name=RAW_GROUP,
        pool=DUCKDB_POOL,
        kinds={"duckdb", "python"},
        owners=OWNERS,
        tags={"layer": "raw"},
        description=(
            "Digital processes (execution templates) as the OE API returns them. Full refresh by upsert: a "
            "digital process the API no longer lists keeps its row with `present_in_api = false`."
        ),
    )
    def raw_execution_templates(
        context: dg.AssetExecutionContext, oe_api: OeApiResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        with oe_api.open_client() as client:
            configured = oe_api.configured_template_ids()
            documents = (
                client.get_execution_templates(configured)
                if configured
                else client.list_execution_templates()
            )
            pages, retries = client.stats.pages, client.stats.retries
        with warehouse.get_connection() as conn:
            report = land_catalog(conn, RAW_TEMPLATES, documents, utc_now())
            meta = table_metadata(
                conn,
                RAW_TEMPLATES,
                extra={
                    "listed_by_api": dg.MetadataValue.int(report.rows_in_api),
                    "no_longer_in_api": dg.MetadataValue.int(report.no_longer_in_api),
                    "quarantined": dg.MetadataValue.int(len(report.quarantined)),
                    "api_pages": dg.MetadataValue.int(pages),
                    "api_retries": dg.MetadataValue.int(retries),
                },
            )
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(
        name=RAW_ACCOUNTS,
        group_name=RAW_GROUP,
        pool=DUCKDB_POOL,
        kinds={"duckdb", "python"},
        owners=OWNERS,
        tags={"layer": "raw"},
        description="Accounts (OE tenants) as the OE API returns them; full refresh by upsert, nothing deleted.",
    )
    def raw_accounts(
        context: dg.AssetExecutionContext, oe_api: OeApiResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        with oe_api.open_client() as client:
            documents = client.list_tenants()
            pages, retries = client.stats.pages, client.stats.retries
        with warehouse.get_connection() as conn:
            report = land_catalog(conn, RAW_ACCOUNTS, documents, utc_now())
            meta = table_metadata(
                conn,
                RAW_ACCOUNTS,
                extra={
                    "listed_by_api": dg.MetadataValue.int(report.rows_in_api),
                    "no_longer_in_api": dg.MetadataValue.int(report.no_longer_in_api),
                    "api_pages": dg.MetadataValue.int(pages),
                    "api_retries": dg.MetadataValue.int(retries),
                },
            )
        return dg.MaterializeResult(metadata=meta)

    return [raw_process_contexts, raw_execution_templates, raw_accounts]
