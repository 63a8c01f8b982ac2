"""The `process_mining` layer's definitions: the event log and the activity log, daily partitions."""

import dagster as dg

from oe_assets.defs.process_mining.assets import activity_log_asset, event_log_asset
from oe_assets.orchestration.partitions import daily_partitions


@dg.definitions
def defs() -> dg.Definitions:
    partitions = daily_partitions()
    assets = [event_log_asset(partitions), activity_log_asset(partitions)]
    return dg.Definitions(assets=dg.with_source_code_references(assets))
