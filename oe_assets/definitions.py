"""The code location `dagster dev`, `dg` and the CLI load."""

from __future__ import annotations

import warnings

import dagster as dg

from oe_assets.defs.celonis_assets import build_celonis_assets
from oe_assets.defs.checks import TABLE_REF_LOADER, build_checks, duckdb_table_ref
from oe_assets.defs.partitions import daily_partitions
from oe_assets.defs.process_mining_assets import build_process_mining_assets
from oe_assets.defs.raw_assets import build_raw_assets
from oe_assets.defs.resources import default_resources
from oe_assets.defs.sensors import build_catalog_schedule, build_jobs, build_sensor
from oe_assets.model.data_model import build_data_model
from oe_assets.model.schema_file import load_declared_tables

# BackfillPolicy and pools are stable enough for us; their beta notices would drown the CLI's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def build_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    partitions = daily_partitions()
    declared = load_declared_tables()
    raw_contexts, raw_templates, raw_accounts = build_raw_assets(partitions)
    context_tables, template_tables, account_tables = build_celonis_assets(partitions, declared)
    event_log, activity_log = build_process_mining_assets(partitions)
    checks = build_checks(build_data_model(declared), declared)
    contexts_job, catalog_job = build_jobs(
        [raw_contexts, context_tables, event_log, activity_log],
        [raw_templates, raw_accounts, template_tables, account_tables],
    )
    return dg.Definitions(
        # Local source references: each asset's page links to the file and line that defines it.
        assets=dg.with_source_code_references(
            [
                raw_contexts,
                raw_templates,
                raw_accounts,
                context_tables,
                template_tables,
                account_tables,
                event_log,
                activity_log,
            ]
        ),
        asset_checks=checks,
        jobs=[contexts_job, catalog_job],
        sensors=[build_sensor(contexts_job, catalog_job, partitions)],
        schedules=[build_catalog_schedule(catalog_job)],
        resources={
            **(resources if resources is not None else default_resources()),
            TABLE_REF_LOADER: duckdb_table_ref,
        },
        executor=dg.in_process_executor,
    )


defs = build_definitions()
