"""Automation's definitions: the jobs, the sensor that launches them, the catalog schedule."""

import dagster as dg

from oe_assets.config import settings
from oe_assets.defs.automation.jobs import catalog_job, contexts_job
from oe_assets.defs.automation.sensors import build_catalog_schedule, build_sensor
from oe_assets.orchestration.partitions import daily_partitions


@dg.definitions
def defs() -> dg.Definitions:
    contexts, catalog = contexts_job(), catalog_job()
    sensor = build_sensor([contexts, catalog], daily_partitions(), settings.current().sensor)
    return dg.Definitions(
        jobs=[contexts, catalog], sensors=[sensor], schedules=[build_catalog_schedule(catalog)]
    )
