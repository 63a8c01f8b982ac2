"""The activity log for a hand-written run history, loaded twice as the run goes on."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb

from oe_assets.definitions import build_definitions
from oe_assets.defs.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.timestamps import format_oe_timestamp
from oe_assets_tests.conftest import SAMPLES

CASE = "01HCJ2VRN61N7J5WQSYQ9Z1JEZ-01H7YP07GX9TFRK4S0RRGZ11WT-01HCVQ2M8X1D4W2T7K9B3N5TST"


def test_activity_log_keeps_start_steps_status_history_and_end(
    simulator: SimulatorServer, resources: dict, instance: dg.DagsterInstance, warehouse_path: Path
) -> None:
    defs = build_definitions(resources)
    template = simulator.world.templates()[0]
    t0 = (simulator.world.now - timedelta(hours=3)).replace(tzinfo=None, microsecond=0)
    t1, t2, t3 = t0 + timedelta(minutes=5), t0 + timedelta(minutes=20), t0 + timedelta(minutes=25)
    doc = json.loads((SAMPLES / "process_context_spotbuy.json").read_text())
    doc["context"]["processid"] = CASE
    doc["context"]["executionTemplateID"] = template["id"]
    doc["metadata"]["tenant"] = template["tenant"]
    doc["metadata"]["createdAt"] = format_oe_timestamp(t0)
    doc["metadata"]["updatedAt"] = format_oe_timestamp(t1)
    doc["context"]["check_stock"]["metadata"]["occurredAt"] = format_oe_timestamp(t1)
    doc["status"] = "running"
    simulator.world.put_context(doc)
    day = t0.date()
    assert run_whole_graph(defs, day, day, instance=instance).success

    doc["context"]["score_quote"] = {
        "metadata": {"occurredAt": format_oe_timestamp(t2), "type": "cloud-function"},
        "result": {"score": 0.93},
    }
    doc["metadata"]["updatedAt"] = format_oe_timestamp(t3)
    doc["status"] = "finished"
    simulator.world.put_context(doc)
    assert run_whole_graph(defs, day, day, instance=instance).success

    conn = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        rows = conn.execute(
            "SELECT activity, event_time, activity_type, execution_template_name FROM activity_log "
            "WHERE case_id = ? ORDER BY event_time, sort_order, activity",
            [CASE],
        ).fetchall()
        seed_row = conn.execute(
            "SELECT status, last_modified FROM event_log WHERE instance_id = ?", [CASE]
        ).fetchone()
    finally:
        conn.close()
    name = template["name"]
    assert rows == [
        ("Process started", t0, "start", name),
        ("check_stock", t1, "step", name),
        ("Status: running", t1, "status", name),
        ("score_quote", t2, "step", name),
        ("Status: finished", t3, "status", name),
        ("Process finished", t3, "end", name),
    ]
    assert seed_row == ("finished", t3)  # the seed's event log keeps one row, updated by MERGE
