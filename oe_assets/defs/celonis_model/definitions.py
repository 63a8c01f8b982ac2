"""The `celonis_model` layer's definitions: one asset per declared table of each family."""

import dagster as dg

from oe_assets.defs.celonis_model.assets import build_celonis_assets
from oe_assets.model.declaration import MODEL
from oe_assets.orchestration.partitions import daily_partitions


@dg.definitions
def defs() -> dg.Definitions:
    assets = build_celonis_assets(daily_partitions(), MODEL)
    return dg.Definitions(assets=dg.with_source_code_references(assets))
