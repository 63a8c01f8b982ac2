"""Benchmarks: our flatten + warehouse write path against dlt, side by side (`oe-assets bench`).

Each loader runs in its own process on the same JSONL file of generated process contexts:

* :mod:`oe_assets.bench.generate` writes the file (the simulator's generator),
* :mod:`oe_assets.bench.ours` loads it with the code the assets use (one partition per day),
* :mod:`oe_assets.bench.dlt_peer` loads it with dlt (``dlt[duckdb]``, parquet loader, default nesting),
* :mod:`oe_assets.bench.runner` runs them, measures wall time and peak RSS (with
  :mod:`oe_assets.bench.measure`), counts the rows of each table family in each resulting DuckDB
  (:mod:`oe_assets.bench.counts`) and writes the report as JSON; :mod:`oe_assets.bench.report`
  judges the targets and prints it,
* :mod:`oe_assets.bench.writer_alone` and :mod:`oe_assets.bench.native_probe` time the two
  ceilings beside our loader: our writer with nothing to wait for, and DuckDB alone,
* :mod:`oe_assets.bench.incremental` and :mod:`oe_assets.bench.extraction` measure the cost of
  refreshing one day and the client's overhead over HTTP against the simulator,
* :mod:`oe_assets.bench.celonis_push` pushes our warehouse of the comparison size into the Celonis
  stand-in (served in its process) and times it.

dlt is a benchmark-only dependency (the ``bench`` extra), imported only by ``dlt_peer``.
"""
