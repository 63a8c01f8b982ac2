"""The `process_mining` layer's definitions: the event log, the activity log and the
process KPIs (with the process map), daily partitions."""

import dagster as dg

from oe_assets.defs.process_mining.assets import activity_log_asset, event_log_asset, process_kpis_asset
from oe_assets.defs.process_mining.exports import ocel_export_asset, xes_export_asset
from oe_assets.orchestration.partitions import daily_partitions


@dg.definitions
def defs() -> dg.Definitions:
    partitions = daily_partitions()
    assets = [event_log_asset(partitions), activity_log_asset(partitions), process_kpis_asset(partitions)]
    assets += [ocel_export_asset(partitions), xes_export_asset(partitions)]  # OCEL 2.0 and XES files
    return dg.Definitions(assets=dg.with_source_code_references(assets))
