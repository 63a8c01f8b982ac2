"""The checks' definitions: generated from the data model, with the input manager they read tables by."""

import dagster as dg

from oe_assets.defs.checks.checks import TABLE_REF_LOADER, build_checks, duckdb_table_ref
from oe_assets.model.data_model import build_data_model
from oe_assets.model.schema_file import load_declared_tables


@dg.definitions
def defs() -> dg.Definitions:
    declared = load_declared_tables()
    return dg.Definitions(
        asset_checks=build_checks(build_data_model(declared), declared),
        resources={TABLE_REF_LOADER: duckdb_table_ref},
    )
