"""oe_assets: Emporix Orchestration Engine process contexts as a Dagster asset graph on DuckDB."""
