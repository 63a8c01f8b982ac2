"""Parts working together in one process: the simulator over HTTP, DuckDB files, Dagster runs."""
