"""The checks' definitions: generated from the data model, with the input manager they read tables by."""

import dagster as dg

from oe_assets.defs.checks.checks import TABLE_REF_LOADER, build_checks, table_ref_loader
from oe_assets.model.data_model import build_data_model
from oe_assets.model.declaration import MODEL


@dg.definitions
def defs() -> dg.Definitions:
    model = build_data_model(MODEL)
    return dg.Definitions(
        asset_checks=build_checks(model),
        resources={TABLE_REF_LOADER: table_ref_loader(model)},
    )
