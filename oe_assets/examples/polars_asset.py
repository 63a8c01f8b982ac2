"""Example: your own asset that reads our tables as polars DataFrames.

``activity_steps`` counts, per digital process and activity, the day's activities and cases. It
receives the activity log as a ``polars.DataFrame`` through :class:`WarehousePolarsInputManager`:
only the rows of the partition it runs for, read through Arrow. Put such an asset in your own
``Definitions`` next to the resource, and materialize it after the activity log::

    dg.Definitions(
        assets=[activity_steps],
        resources={POLARS_INPUT_MANAGER_KEY: WarehousePolarsInputManager(warehouse=warehouse)},
    )

The integration test ``oe_assets_tests/integration/test_polars_input.py`` materializes it with real Dagster.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from oe_assets.orchestration.metadata import markdown_table
from oe_assets.orchestration.partitions import daily_partitions
from oe_assets.orchestration.polars_input import POLARS_INPUT_MANAGER_KEY


@dg.asset(
    partitions_def=daily_partitions(),
    ins={"activity_log": dg.AssetIn(input_manager_key=POLARS_INPUT_MANAGER_KEY)},
    kinds={"polars"},
)
def activity_steps(activity_log: pl.DataFrame) -> dg.MaterializeResult:
    """How often each activity happened, and in how many cases, per digital process (one day)."""
    steps = (
        activity_log.group_by("execution_template_name", "activity")
        .agg(pl.len().alias("rows"), pl.col("case_id").n_unique().alias("cases"))
        .sort("execution_template_name", "rows", "activity", descending=[False, True, False])
    )
    return dg.MaterializeResult(
        metadata={
            "rows_read": dg.MetadataValue.int(activity_log.height),
            "steps": markdown_table(
                list(steps.iter_rows()), ("digital process", "activity", "rows", "cases")
            ),
        }
    )
