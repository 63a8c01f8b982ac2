"""The finished-runs sensor and the catalog schedule."""

import hashlib
from datetime import UTC, date, datetime

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from oe_assets.client import OeClient
from oe_assets.config import settings
from oe_assets.config.settings import START_DATE
from oe_assets.defs.automation.jobs import CATALOG_JOB, CONTEXTS_JOB
from oe_assets.orchestration.resources import OeApiResource
from oe_assets.refresh.delta import PollResult, SensorCursor, plan_partitions, poll_finished_changes

SENSOR_NAME = "finished_runs_sensor"
REPORT_LIMIT = 20
"""Log lines per kind and tick (the cursor makes sure each context is reported once)."""


def build_sensor(
    jobs: list[UnresolvedAssetJobDefinition],
    partitions: dg.DailyPartitionsDefinition,
    config: settings.SensorSettings,
) -> dg.SensorDefinition:
    interval, max_partitions = config.interval_seconds, config.max_partitions_per_tick

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING if config.running else dg.DefaultSensorStatus.STOPPED,
        description=(
            "Polls the OE API with the Celonis extractor's delta filter (status=finished, "
            "updatedSince=<cursor>) for every "
            "digital process, and requests one run of the partitioned graph per creation day that holds changed "
            f"contexts (run_key = day + change fingerprint; at most {max_partitions} days per tick, the rest on the "
            "next tick). When the list of digital processes changes it first refreshes the catalog "
            f"(templates, accounts). Cursor: the sensor's own state, never the warehouse. Interval: {interval} s "
            f"(${settings.SENSOR_INTERVAL})."
        ),
    )
    def finished_runs_sensor(context: dg.SensorEvaluationContext, oe_api: OeApiResource) -> dg.SensorResult:
        cursor = SensorCursor.from_json(context.cursor)
        first_day = datetime.fromisoformat(partitions.start.isoformat()).astimezone(UTC)
        requests: list[dg.RunRequest] = []
        with oe_api.open_client() as client:
            catalog_changed = _catalog_changed(client, oe_api, cursor)
            if catalog_changed:
                requests.append(dg.RunRequest(job_name=CATALOG_JOB, run_key=f"catalog:{catalog_changed}"))
            result = poll_finished_changes(
                client,
                oe_api.template_ids_to_read(client),
                cursor,
                default_since=first_day,
                now=datetime.now(UTC),
            )
        _report(context, result, first_day.date())
        in_range = [c for c in result.changed if first_day.date() <= c.partition]
        # Contexts wait one tick after a catalog change, so their digital process is landed first.
        planned = plan_partitions(
            in_range,
            cursor,
            max_partitions=0 if catalog_changed else max_partitions,
            last_partition=partitions.get_last_partition_key(),
        )
        for key, run_key in planned:
            requests.append(dg.RunRequest(job_name=CONTEXTS_JOB, partition_key=key, run_key=run_key))
        skip = None if requests else f"No finished contexts changed ({result.requests} API requests)"
        return dg.SensorResult(run_requests=requests, cursor=cursor.to_json(), skip_reason=skip)

    return finished_runs_sensor


def _catalog_changed(client: OeClient, oe_api: OeApiResource, cursor: SensorCursor) -> str | None:
    """The new fingerprint of the digital processes and their versions, or None if unchanged."""
    configured = oe_api.configured_template_ids()
    templates = (
        client.get_execution_templates(configured) if configured else client.list_execution_templates()
    )
    versions = sorted(f"{t.get('id')}:{(t.get('version') or {}).get('id')}" for t in templates)
    catalog = hashlib.sha256("|".join(versions).encode()).hexdigest()[:16]
    if catalog == cursor.catalog_fingerprint:
        return None
    cursor.catalog_fingerprint = catalog
    return catalog


def _report(context: dg.SensorEvaluationContext, result: PollResult, first_day: date) -> None:
    """What the tick could not refresh as usual, in its log (each context once per version)."""
    for pid in result.unplaceable[:REPORT_LIMIT]:
        context.log.warning(
            f"Process context {pid} has no usable metadata.createdAt; it cannot be placed in a partition"
        )
    for rejected in result.rejected[:REPORT_LIMIT]:
        context.log.warning(
            f"An element of the API's answer is no usable process context ({rejected.reason}); "
            f"process id {rejected.process_id or 'unreadable'}, created {rejected.created_at or 'unreadable'}: "
            "its day is refreshed when known, and the run quarantines it with its text"
        )
    for change in result.future[:REPORT_LIMIT]:
        context.log.warning(
            f"Process context {change.process_id} says it was updated at {change.updated_at}, later than "
            "now: it is refreshed, but the sensor's cursor does not move to that time"
        )
    early = sorted({c.process_id for c in result.changed if c.partition < first_day})
    if early:
        context.log.warning(
            f"{len(early)} finished process contexts were created before {START_DATE} ({first_day}) and have "
            f"no partition: {', '.join(early[:10])}{' ...' if len(early) > 10 else ''}"
        )


def build_catalog_schedule(catalog_job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="catalog_hourly",
        job=catalog_job,
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Refreshes digital processes and accounts every hour, even when no run finished.",
    )
