"""The `oe_raw` layer: what the OE API returned, kept verbatim."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from oe_assets.client import OeClient, Page
from oe_assets.config.settings import START_DATE
from oe_assets.core.timestamps import utc_now
from oe_assets.landing.outside_partitions import OutsidePartitions, count_outside_partitions
from oe_assets.landing.raw_catalog import RAW_ACCOUNTS, RAW_TEMPLATES, CatalogLandingReport, land_catalog
from oe_assets.landing.raw_catalog_pg import land_catalog_pg
from oe_assets.landing.raw_contexts import RAW_CONTEXTS, RawLandingReport, commit_stage
from oe_assets.landing.raw_contexts_pg import commit_stage_pg
from oe_assets.landing.stage import ContextStage, stage_process_contexts
from oe_assets.orchestration.metadata import OWNERS, Warehouse, markdown_table, table_metadata
from oe_assets.orchestration.partitions import CATALOG_REFRESH, CONTEXTS_REFRESH, REFRESH_TAG, partition_dates
from oe_assets.orchestration.resources import DUCKDB_POOL, OeApiResource, WarehouseResource, warehouse_kind

RAW_GROUP = "oe_raw"
OUTSIDE_CHECK = "no_contexts_outside_partitions"


def stage_directory(warehouse: WarehouseResource) -> Path | None:
    """Stages go beside the warehouse (its disk must hold the data anyway; /tmp may be RAM).

    A PostgreSQL warehouse is on its server, not on this machine: the stage goes where this
    machine keeps the warehouse's other files, the folder holding the exports (``data/`` unless
    ``OE_EXPORT_DIR`` says otherwise), for the same reason: a stage holds every context of the
    days read, a backfill's many days too, and the system's temporary folder may be RAM."""
    if warehouse.on_postgres:
        directory = warehouse.exports_folder().resolve().parent
    elif warehouse.database == ":memory:":
        return None
    else:
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
    conn: Warehouse,
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


def raw_contexts_asset(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    first_partition = partitions.start.date()

    # A multi_asset only to allow subsetting: a job may select the asset without its check.
    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                RAW_CONTEXTS,
                group_name=RAW_GROUP,
                kinds={warehouse_kind(), "python"},
                owners=OWNERS,
                tags={"layer": "raw", REFRESH_TAG: CONTEXTS_REFRESH},
                description=RAW_CONTEXTS_DESCRIPTION,
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
            template_ids = oe_api.template_ids_to_read(client)
            outside = count_outside_partitions(client, template_ids, first_partition, utc_now().date())
            # The API is read into the stage first; the warehouse is opened only once it is complete.
            with stage_process_contexts(
                client, template_ids, days, directory=stage_directory(warehouse)
            ) as stage:
                report, meta = commit_contexts(warehouse, stage, context, outside)
        log_landing(context, report, outside)
        check = dg.AssetCheckKey(dg.AssetKey([RAW_CONTEXTS]), OUTSIDE_CHECK)
        selected = check in context.selected_asset_check_keys
        yield dg.MaterializeResult(
            asset_key=RAW_CONTEXTS,
            metadata=meta,
            check_results=[outside_check_result(outside)] if selected else [],
        )

    return raw_process_contexts


def commit_contexts(
    warehouse: WarehouseResource,
    stage: ContextStage,
    context: dg.AssetExecutionContext,
    outside: OutsidePartitions,
) -> tuple[RawLandingReport, dict[str, Any]]:
    """The stage committed to the warehouse, whichever it is; the report and the asset's metadata."""
    if warehouse.on_postgres:
        with warehouse.postgres() as pg:
            report = commit_stage_pg(pg, stage, utc_now())
            return report, contexts_metadata(pg, context, report, outside)
    with warehouse.get_connection() as conn:
        report = commit_stage(conn, stage, utc_now())
        return report, contexts_metadata(conn, context, report, outside)


RAW_CONTEXTS_DESCRIPTION = (
    "Process contexts as the OE API returns them, one row per context (`document` holds the API's own text "
    "of it), partitioned by `metadata.createdAt` (UTC day). A refresh only adds and updates (upsert by "
    "process id; an older `updatedAt` never overwrites a newer version): a landed context the API no longer "
    "returns is kept with `deleted_at` set (`oe-assets prune --deleted` removes such contexts). The API is "
    "read into a stage file first; the warehouse is opened only to commit it, in one transaction. Also keeps "
    "`raw_process_context_status_history` (every status observed)."
)


def catalog_asset(
    table: str, description: str, fetch: Callable[[OeClient, OeApiResource], Page]
) -> dg.AssetsDefinition:
    """A full refresh of a list the API returns whole (digital processes, accounts), by upsert."""

    @dg.asset(
        name=table,
        group_name=RAW_GROUP,
        pool=DUCKDB_POOL,
        kinds={warehouse_kind(), "python"},
        owners=OWNERS,
        tags={"layer": "raw", REFRESH_TAG: CATALOG_REFRESH},
        description=description,
    )
    def catalog(oe_api: OeApiResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        with oe_api.open_client() as client:
            documents = fetch(client, oe_api)
            pages, retries = client.stats.pages, client.stats.retries
        if warehouse.on_postgres:
            with warehouse.postgres() as pg:
                report = land_catalog_pg(pg, table, documents, utc_now())
                meta = table_metadata(pg, table, extra=catalog_extra(report, pages, retries))
        else:
            with warehouse.get_connection() as conn:
                report = land_catalog(conn, table, documents, utc_now())
                meta = table_metadata(conn, table, extra=catalog_extra(report, pages, retries))
        return dg.MaterializeResult(metadata=meta)

    return catalog


def catalog_extra(report: CatalogLandingReport, pages: int, retries: int) -> dict[str, Any]:
    """What a catalog asset reports beyond the table's standard metadata."""
    return {
        "listed_by_api": dg.MetadataValue.int(report.rows_in_api),
        "no_longer_in_api": dg.MetadataValue.int(report.no_longer_in_api),
        "quarantined": dg.MetadataValue.int(len(report.quarantined)),
        "api_pages": dg.MetadataValue.int(pages),
        "api_retries": dg.MetadataValue.int(retries),
    }


def _templates(client: OeClient, oe_api: OeApiResource) -> Page:
    configured = oe_api.configured_template_ids()
    return client.get_execution_templates(configured) if configured else client.list_execution_templates()


def catalog_assets() -> list[dg.AssetsDefinition]:
    return [
        catalog_asset(
            RAW_TEMPLATES,
            "Digital processes (execution templates) as the OE API returns them. Full refresh by upsert: a "
            "digital process the API no longer lists keeps its row with `present_in_api = false`.",
            _templates,
        ),
        catalog_asset(
            RAW_ACCOUNTS,
            "Accounts (OE tenants) as the OE API returns them; full refresh by upsert, nothing deleted.",
            lambda client, _: client.list_tenants(),
        ),
    ]
