"""Jobs, the finished-runs sensor and the catalog schedule."""

import hashlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from oe_assets.defs.raw_assets import digital_process_ids
from oe_assets.defs.resources import DUCKDB_POOL, OeApiResource
from oe_assets.refresh.delta import SensorCursor, plan_partitions, poll_finished_changes

CONTEXTS_JOB = "refresh_process_contexts"
CATALOG_JOB = "refresh_catalog"
SENSOR_NAME = "finished_runs_sensor"
INTERVAL_ENV = "OE_SENSOR_INTERVAL_SECONDS"
MAX_PARTITIONS_ENV = "OE_SENSOR_MAX_PARTITIONS_PER_TICK"
POOL_NOTE = (
    f"Every step that opens the DuckDB warehouse holds a slot of the concurrency pool `{DUCKDB_POOL}` "
    "(limit 1 in DAGSTER_HOME/dagster.yaml; see Deployment > Concurrency): DuckDB allows one writer per "
    "file, so concurrent runs wait for the slot instead of failing on the file lock."
)
RUNNING_ENV = "OE_SENSOR_RUNNING"


def build_jobs(
    partitioned: Sequence[dg.AssetsDefinition], catalog: Sequence[dg.AssetsDefinition]
) -> tuple[UnresolvedAssetJobDefinition, UnresolvedAssetJobDefinition]:
    contexts_job = dg.define_asset_job(
        CONTEXTS_JOB,
        selection=dg.AssetSelection.assets(*partitioned),
        description=(
            "One creation day (or a range, as one run) of the whole partitioned graph, with its checks. "
            + POOL_NOTE
        ),
    )
    catalog_job = dg.define_asset_job(
        CATALOG_JOB,
        selection=dg.AssetSelection.assets(*catalog),
        description=(
            "Digital processes and accounts: raw landing and their Celonis tables, with checks. " + POOL_NOTE
        ),
    )
    return contexts_job, catalog_job


def build_sensor(
    contexts_job: UnresolvedAssetJobDefinition,
    catalog_job: UnresolvedAssetJobDefinition,
    partitions: dg.DailyPartitionsDefinition,
) -> dg.SensorDefinition:
    interval = int(os.environ.get(INTERVAL_ENV, "60"))
    max_partitions = int(os.environ.get(MAX_PARTITIONS_ENV, "10"))

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=[contexts_job, catalog_job],
        minimum_interval_seconds=interval,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if os.environ.get(RUNNING_ENV, "").lower() in ("1", "true", "yes")
            else dg.DefaultSensorStatus.STOPPED
        ),
        description=(
            "Polls the OE API with the seed's delta filter (status=finished, updatedSince=<cursor>) for every "
            "digital process, and requests one run of the partitioned graph per creation day that holds changed "
            f"contexts (run_key = day + change fingerprint; at most {max_partitions} days per tick, the rest on the "
            "next tick). When the list of digital processes changes it first refreshes the catalog "
            f"(templates, accounts). Cursor: the sensor's own state, never the warehouse. Interval: {interval} s "
            f"(${INTERVAL_ENV})."
        ),
    )
    def finished_runs_sensor(context: dg.SensorEvaluationContext, oe_api: OeApiResource) -> dg.SensorResult:
        cursor = SensorCursor.from_json(context.cursor)
        first_day = datetime.fromisoformat(partitions.start.isoformat()).astimezone(UTC)
        last_key = partitions.get_last_partition_key()
        requests: list[dg.RunRequest] = []
        with oe_api.open_client() as client:
            templates = (
                [client.get_execution_template(t) for t in oe_api.configured_template_ids()]
                if oe_api.configured_template_ids()
                else list(client.list_execution_templates())
            )
            catalog = hashlib.sha256(
                "|".join(
                    sorted(f"{t.get('id')}:{(t.get('version') or {}).get('id')}" for t in templates)
                ).encode()
            ).hexdigest()[:16]
            catalog_changed = catalog != cursor.catalog_fingerprint
            if catalog_changed:
                cursor.catalog_fingerprint = catalog
                requests.append(dg.RunRequest(job_name=CATALOG_JOB, run_key=f"catalog:{catalog}"))
            result = poll_finished_changes(
                client, digital_process_ids(oe_api, client), cursor, default_since=first_day
            )
        for pid in result.unplaceable:
            context.log.warning(
                f"Process context {pid} has no usable metadata.createdAt; it cannot be placed in a partition"
            )
        in_range = [
            c
            for c in result.changed
            if first_day.date() <= c.partition and (last_key is None or c.partition.isoformat() <= last_key)
        ]
        if not catalog_changed:  # contexts wait one tick so their digital process is landed first
            for key, run_key in plan_partitions(in_range, cursor, max_partitions=max_partitions):
                requests.append(dg.RunRequest(job_name=CONTEXTS_JOB, partition_key=key, run_key=run_key))
        else:
            plan_partitions(in_range, cursor, max_partitions=0)
        skip = None if requests else f"No finished contexts changed ({result.requests} API requests)"
        return dg.SensorResult(run_requests=requests, cursor=cursor.to_json(), skip_reason=skip)

    return finished_runs_sensor


def build_catalog_schedule(catalog_job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="catalog_hourly",
        job=catalog_job,
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Refreshes digital processes and accounts every hour, even when no run finished.",
    )
