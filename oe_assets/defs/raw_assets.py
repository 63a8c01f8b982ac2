"""The `oe_raw` layer: what the OE API returned, kept verbatim."""

import dagster as dg

from oe_assets.client import OeClient
from oe_assets.defs.metadata import markdown_table, table_metadata
from oe_assets.defs.partitions import partition_dates
from oe_assets.defs.resources import DUCKDB_POOL, OeApiResource, WarehouseResource
from oe_assets.landing.raw_catalog import RAW_ACCOUNTS, RAW_TEMPLATES, land_catalog
from oe_assets.landing.raw_contexts import RAW_CONTEXTS, land_process_contexts
from oe_assets.timestamps import utc_now

RAW_GROUP = "oe_raw"
OWNERS = ["team:data-engineering"]


def digital_process_ids(oe_api: OeApiResource, client: OeClient) -> list[str]:
    """The configured ids, else every digital process the API key can see."""
    configured = oe_api.configured_template_ids()
    if configured:
        for template_id in configured:
            client.get_execution_template(template_id)  # a clear error for an unknown id
        return list(configured)
    return [str(t["id"]) for t in client.list_execution_templates() if isinstance(t, dict) and "id" in t]


def build_raw_assets(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name=RAW_CONTEXTS,
        group_name=RAW_GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=DUCKDB_POOL,
        kinds={"duckdb", "python"},
        owners=OWNERS,
        tags={"layer": "raw"},
        description=(
            "Process contexts as the OE API returns them, one row per context (`document` holds the whole "
            "JSON), partitioned by `metadata.createdAt` (UTC day). A refresh replaces the day's rows of the "
            "digital processes it read, in one transaction; contexts of deleted digital processes stay landed. "
            "Also keeps `raw_process_context_status_history` (every status observed) for the activity log."
        ),
    )
    def raw_process_contexts(
        context: dg.AssetExecutionContext, oe_api: OeApiResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        days = partition_dates(context)
        with oe_api.open_client() as client:
            template_ids = digital_process_ids(oe_api, client)
            with warehouse.get_connection() as conn:
                report = land_process_contexts(conn, client, template_ids, days)
                for q in report.quarantined[:50]:
                    context.log.warning(
                        f"Quarantined process context {q.record_key or '<no id>'}: {q.reason}"
                    )
                window = context.partition_time_window
                meta = table_metadata(
                    conn,
                    RAW_CONTEXTS,
                    partition_rows=report.rows,
                    extra={
                        "partition_window": dg.MetadataValue.text(
                            f"{window.start.isoformat()} .. {window.end.isoformat()}"
                        ),
                        "digital_processes_read": dg.MetadataValue.int(len(report.templates_read)),
                        "api_pages": dg.MetadataValue.int(report.api_pages),
                        "api_requests": dg.MetadataValue.int(report.api_requests),
                        "api_retries": dg.MetadataValue.int(report.api_retries),
                        "quarantined": dg.MetadataValue.int(len(report.quarantined)),
                        "duplicates_merged": dg.MetadataValue.int(report.duplicates_merged),
                        "status_changes_observed": dg.MetadataValue.int(report.status_changes),
                        "rows_per_partition": markdown_table(
                            sorted(report.rows_per_partition.items()), ("partition", "rows")
                        ),
                    },
                )
        return dg.MaterializeResult(metadata=meta)

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
            if configured:
                documents: list[object] = [client.get_execution_template(t) for t in configured]
            else:
                documents = list(client.list_execution_templates())
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
            documents = list(client.list_tenants())
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
