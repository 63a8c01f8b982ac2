"""A user's own asset receives our tables as polars DataFrames (the documented example, run with
real Dagster against a warehouse built from the simulator)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from oe_assets.definitions import build_definitions
from oe_assets.examples.polars_asset import activity_steps
from oe_assets.orchestration.partitions import daily_partitions
from oe_assets.orchestration.polars_input import POLARS_INPUT_MANAGER_KEY, WarehousePolarsInputManager
from oe_assets.orchestration.resources import WarehouseResource
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer


def test_the_example_asset_gets_its_partition_of_the_activity_log_as_polars(
    simulator: SimulatorServer, resources: dict, instance: dg.DagsterInstance, warehouse_path: Path
) -> None:
    today = simulator.world.now.date()
    first = today - timedelta(days=simulator.world.days)
    assert run_whole_graph(build_definitions(resources), first, today, instance=instance).success
    conn = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        day, rows = conn.execute(
            "SELECT _oe_partition, count(*) FROM activity_log GROUP BY ALL ORDER BY 2 DESC LIMIT 1"
        ).fetchone() or (None, 0)
        total = conn.execute("SELECT count(*) FROM activity_log").fetchone()
        steps = conn.execute(
            "SELECT count(DISTINCT (execution_template_name, activity)) FROM activity_log WHERE _oe_partition = ?",
            [day],
        ).fetchone()
    finally:
        conn.close()
    assert total
    assert 0 < rows < total[0]

    upstream = dg.AssetSpec("activity_log", partitions_def=daily_partitions())
    manager = WarehousePolarsInputManager(warehouse=WarehouseResource(database=str(warehouse_path)))
    result = dg.materialize(
        [upstream, activity_steps],
        selection=[activity_steps],
        partition_key=str(day),
        resources={POLARS_INPUT_MANAGER_KEY: manager},
        instance=instance,
    )
    assert result.success
    meta = result.asset_materializations_for_node("activity_steps")[0].metadata
    assert meta["rows_read"].value == rows
    assert steps
    assert str(meta["steps"].value).count("\n") == 1 + steps[0]


def test_an_unpartitioned_asset_gets_the_whole_table_and_a_missing_table_says_what_to_run(
    warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    seen: list[pl.DataFrame] = []

    @dg.asset(ins={"process_kpis": dg.AssetIn(input_manager_key=POLARS_INPUT_MANAGER_KEY)})
    def mine(process_kpis: pl.DataFrame) -> None:
        seen.append(process_kpis)

    manager = WarehousePolarsInputManager(warehouse=WarehouseResource(database=str(warehouse_path)))
    run: list[dg.AssetsDefinition | dg.AssetSpec] = [dg.AssetSpec("process_kpis"), mine]
    resources = {POLARS_INPUT_MANAGER_KEY: manager, "io_manager": dg.InMemoryIOManager()}
    with pytest.raises(
        dg.Failure, match="no table 'process_kpis' yet: build it with `oe-assets materialize`"
    ):
        dg.materialize(run, selection=[mine], resources=resources, instance=instance)

    conn = duckdb.connect(str(warehouse_path))
    try:
        conn.execute(
            "CREATE TABLE process_kpis AS SELECT DATE '2025-01-01' + i::INTEGER AS _oe_partition, i AS n "
            "FROM range(3) t(i)"
        )
    finally:
        conn.close()
    assert dg.materialize(run, selection=[mine], resources=resources, instance=instance).success
    assert isinstance(seen[0], pl.DataFrame)
    assert seen[0].sort("n")["n"].to_list() == [0, 1, 2]
