"""The `celonis` layer's definitions: a push asset per table, and the hourly catch-up schedule."""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from oe_assets.config import settings
from oe_assets.defs.celonis.assets import CELONIS_GROUP, push_assets
from oe_assets.model.data_model import build_data_model
from oe_assets.model.declaration import MODEL
from oe_assets.orchestration.partitions import daily_partitions


@dg.definitions
def defs() -> dg.Definitions:
    enabled = settings.current().celonis.enabled
    partitions = daily_partitions()
    assets = push_assets(build_data_model(MODEL), partitions, enabled)
    return dg.Definitions(
        assets=dg.with_source_code_references(assets),
        jobs=[catch_up_job(partitions)],
        schedules=[catch_up_schedule(partitions, enabled)],
    )


CATCH_UP_JOB = "celonis_catch_up"


def catch_up_job(partitions: dg.DailyPartitionsDefinition) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        CATCH_UP_JOB,
        selection=dg.AssetSelection.groups(CELONIS_GROUP),
        partitions_def=partitions,
        description="Pushes to Celonis whatever the warehouse holds that Celonis has not confirmed "
        "(a push deferred by Celonis's hourly job limit, or one that failed); unchanged tables cost nothing.",
    )


def catch_up_schedule(partitions: dg.DailyPartitionsDefinition, enabled: bool) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=CATCH_UP_JOB,
        job_name=CATCH_UP_JOB,
        cron_schedule="5 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if enabled else dg.DefaultScheduleStatus.STOPPED,
        description="Every hour at :05 (a new hour of Celonis's job limit): the Celonis catch-up push.",
    )
    def celonis_catch_up(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        if not enabled:
            return dg.SkipReason(f"{settings.CELONIS_URL} is not set: nothing is delivered to Celonis.")
        return dg.RunRequest(partition_key=partitions.get_last_partition_key())

    return celonis_catch_up
