"""The two jobs: the daily partitions of process contexts, and the catalog (digital processes, accounts).

Each selects the assets tagged with its refresh (``refresh`` tag), with their checks.
"""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from oe_assets.orchestration.partitions import CATALOG_REFRESH, CONTEXTS_REFRESH, REFRESH_TAG
from oe_assets.orchestration.resources import DUCKDB_POOL

CONTEXTS_JOB = "refresh_process_contexts"
CATALOG_JOB = "refresh_catalog"
POOL_NOTE = (
    f"Every step that opens the DuckDB warehouse holds a slot of the concurrency pool `{DUCKDB_POOL}` "
    "(limit 1 in DAGSTER_HOME/dagster.yaml; see Deployment > Concurrency): DuckDB allows one writer per "
    "file, so concurrent runs wait for the slot instead of failing on the file lock."
)


def contexts_job() -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        CONTEXTS_JOB,
        selection=dg.AssetSelection.tag(REFRESH_TAG, CONTEXTS_REFRESH),
        description="One creation day (or a range, as one run) of the whole partitioned graph, with its checks. "
        + POOL_NOTE,
    )


def catalog_job() -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        CATALOG_JOB,
        selection=dg.AssetSelection.tag(REFRESH_TAG, CATALOG_REFRESH),
        description="Digital processes and accounts: raw landing and their Celonis tables, with checks. "
        + POOL_NOTE,
    )
