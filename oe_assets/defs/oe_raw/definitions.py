"""The `oe_raw` layer's definitions: raw process contexts (daily partitions), digital processes, accounts."""

import dagster as dg

from oe_assets.defs.oe_raw.assets import catalog_assets, raw_contexts_asset
from oe_assets.orchestration.partitions import daily_partitions


@dg.definitions
def defs() -> dg.Definitions:
    assets = [raw_contexts_asset(daily_partitions()), *catalog_assets()]
    return dg.Definitions(assets=dg.with_source_code_references(assets))
