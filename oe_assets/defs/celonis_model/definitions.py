"""The `celonis_model` layer's definitions: one asset per declared table of each family."""

import dagster as dg

from oe_assets.defs.celonis_model.assets import build_celonis_assets
from oe_assets.model.schema_file import load_declared_tables
from oe_assets.orchestration.partitions import daily_partitions


@dg.definitions
def defs() -> dg.Definitions:
    assets = build_celonis_assets(daily_partitions(), load_declared_tables())
    return dg.Definitions(assets=dg.with_source_code_references(assets))
