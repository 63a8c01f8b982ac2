"""The resources every layer uses (the OE API, the warehouse), as the settings say, and how runs execute."""

import dagster as dg

from oe_assets.config import settings
from oe_assets.orchestration.resources import resources_for


@dg.definitions
def defs() -> dg.Definitions:
    # One process per run: DuckDB allows one writer per file, and the steps are short.
    return dg.Definitions(resources=resources_for(settings.current()), executor=dg.in_process_executor)
