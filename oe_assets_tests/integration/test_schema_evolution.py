"""A new event type in a later partition adds columns and tables; earlier partitions keep working."""

from __future__ import annotations

import copy
from pathlib import Path

import dagster as dg

from oe_assets.definitions import build_definitions
from oe_assets.model.schema_file import infer_declared_tables
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse import open_warehouse, quote_ident
from oe_assets_tests.support.helpers import created_day

NEW_TABLE = "execution_context$context&brand.new-Event$things"


def test_new_event_key_lands_as_new_columns_and_table_and_drift_is_flagged(
    simulator: SimulatorServer, resources: dict, instance: dg.DagsterInstance, warehouse_path: Path
) -> None:
    defs = build_definitions(resources)
    contexts = simulator.world.contexts()
    days = sorted({created_day(c) for c in contexts})
    first = run_whole_graph(defs, days[0], days[0], instance=instance)
    assert first.success
    assert all(c.passed for c in first.checks)

    later = copy.deepcopy(next(c for c in contexts if created_day(c) == days[1]))
    later["context"]["brand.new-Event"] = {"Größe": 42, "things": [{"id": 1}, {"id": 2}, {"id": 3}]}
    simulator.world.put_context(later)
    second = run_whole_graph(defs, days[1], days[1], instance=instance)
    assert second.success, second.failure
    drift = next(c for c in second.checks if c.name == "schema_drift")
    assert not drift.passed
    assert drift.severity == "WARN"  # undeclared tables are flagged, not refused
    assert drift.offending_rows == 1

    with open_warehouse(warehouse_path, read_only=True) as conn:
        pid = later["context"]["processid"]
        assert conn.execute(
            'SELECT "context$brand.new-Event$Größe" FROM execution_context WHERE "context$processid" = ?',
            [pid],
        ).fetchone() == (42,)
        old_rows = conn.execute(
            'SELECT count(*) FROM execution_context WHERE _oe_partition = ? AND "context$brand.new-Event$Größe" IS NULL',
            [days[0]],
        ).fetchone()[0]
        assert old_rows == sum(1 for c in contexts if created_day(c) == days[0])
        things = conn.execute(
            f'SELECT id, _oe_position, "context$processid" FROM {quote_ident(NEW_TABLE)} ORDER BY 2'
        ).fetchall()
        assert things == [(1, 0, pid), (2, 1, pid), (3, 2, pid)]
        inferred = {t["table"] for t in infer_declared_tables(conn)["execution_context"]}
        assert NEW_TABLE in inferred
