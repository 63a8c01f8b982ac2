"""The activity log (and the event log's times) for hand-written run histories, through real runs."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oe_assets.core.timestamps import format_oe_timestamp, parse_oe_timestamp
from oe_assets.definitions import build_definitions
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.sql import utc_timestamp
from oe_assets_tests.support.helpers import SAMPLES

CASE = "01HCJ2VRN61N7J5WQSYQ9Z1JEZ-01H7YP07GX9TFRK4S0RRGZ11WT-01HCVQ2M8X1D4W2T7K9B3N5TST"


def test_activity_log_keeps_start_steps_status_history_and_end_once(
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
        ("Process finished", t3, "end", name),  # "Status: finished" at t3 says the same: dropped
    ]
    assert seed_row == ("finished", t3)  # the extractor's event log keeps one row, updated by MERGE


def test_every_event_type_key_with_a_time_of_its_own_becomes_an_activity(
    simulator: SimulatorServer, resources: dict, instance: dg.DagsterInstance, warehouse_path: Path
) -> None:
    """The time fields of the module's rule, in their order; keys without one, dates deeper in a
    payload and the context's own metadata give no activity."""
    template = simulator.world.templates()[0]
    t0 = (simulator.world.now - timedelta(hours=3)).replace(tzinfo=None, microsecond=0)
    at = [t0 + timedelta(minutes=n) for n in range(10)]
    doc = json.loads((SAMPLES / "process_context_spotbuy.json").read_text())
    doc["context"].update(
        {
            "processid": CASE,
            "executionTemplateID": template["id"],
            "order.created": {"order": {"id": "EON1", "placed": {"timestamp": format_oe_timestamp(at[9])}}},
            "_timer-event": {"firedAt": format_oe_timestamp(at[1]), "timeExpression": "R/PT1H"},
            "Payment-Captured": {"occurredAt": format_oe_timestamp(at[2]), "amount": 5},
            "score_quote": {
                "metadata": {"occurredAt": format_oe_timestamp(at[3]), "type": "cloud-function"},
                "timestamp": format_oe_timestamp(at[8]),
            },
            "shipment.Dispatched": {
                "metadata": {"occurredAt": "soon"},
                "createdAt": format_oe_timestamp(at[4]),
            },
            "inventory.Sync-Completed": {"metadata": {"timestamp": format_oe_timestamp(at[5])}},
        }
    )
    doc["context"]["metadata"]["createdAt"] = format_oe_timestamp(at[7])  # the run's data, not an event
    doc["context"]["check_stock"]["metadata"]["occurredAt"] = format_oe_timestamp(at[6])
    doc["metadata"].update(
        tenant=template["tenant"], createdAt=format_oe_timestamp(t0), updatedAt=format_oe_timestamp(at[9])
    )
    doc["status"] = "running"
    simulator.world.put_context(doc)
    assert run_whole_graph(build_definitions(resources), t0.date(), t0.date(), instance=instance).success

    conn = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        steps = conn.execute(
            "SELECT activity, event_time, source FROM activity_log WHERE case_id = ? AND activity_type = 'step' "
            "ORDER BY event_time",
            [CASE],
        ).fetchall()
    finally:
        conn.close()
    assert steps == [
        ("_timer-event", at[1], "execution_context.context$_timer-event$firedAt"),
        ("Payment-Captured", at[2], "execution_context.context$Payment-Captured$occurredAt"),
        ("score_quote", at[3], "execution_context.context$score_quote$metadata$occurredAt"),
        ("shipment.Dispatched", at[4], "execution_context.context$shipment.Dispatched$createdAt"),
        (
            "inventory.Sync-Completed",
            at[5],
            "execution_context.context$inventory.Sync-Completed$metadata$timestamp",
        ),
        ("check_stock", at[6], "execution_context.context$check_stock$metadata$occurredAt"),
    ]


def test_times_written_with_an_offset_land_at_their_utc_instant_and_day(
    simulator: SimulatorServer, resources: dict, instance: dg.DagsterInstance, warehouse_path: Path
) -> None:
    """Texts with a space, 7 fraction digits and ``+02:00`` make the columns text; the event log
    and the activity log still read the UTC instant (TRY_CAST AS TIMESTAMP dropped the offset)."""
    defs = build_definitions(resources)
    template = simulator.world.templates()[0]
    day = simulator.world.now.date() - timedelta(days=1)
    local = (day + timedelta(days=1)).isoformat()  # 01:30 at +02:00 on the next day is 23:30 UTC on `day`
    doc = json.loads((SAMPLES / "process_context_spotbuy.json").read_text())
    doc["context"]["processid"] = CASE
    doc["context"]["executionTemplateID"] = template["id"]
    doc["metadata"]["tenant"] = template["tenant"]
    doc["metadata"]["createdAt"] = f"{local} 01:30:00.1234567+02:00"
    doc["metadata"]["updatedAt"] = f"{local} 04:00:00.5+0200"
    doc["context"]["check_stock"]["metadata"]["occurredAt"] = f"{local} 03:00:00+02"
    doc["status"] = "finished"
    simulator.world.put_context(doc)
    assert run_whole_graph(defs, day, day, instance=instance).success

    next_day = day + timedelta(days=1)
    created = datetime.combine(day, time(23, 30, 0, 123456))
    step, finished = datetime.combine(next_day, time(1, 0)), datetime.combine(next_day, time(2, 0, 0, 500000))
    conn = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        column_type = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'execution_context' AND column_name = 'metadata$createdAt'"
        ).fetchone()
        logged = conn.execute(
            "SELECT created_at, last_modified FROM event_log WHERE instance_id = ?", [CASE]
        ).fetchone()
        activities = conn.execute(
            "SELECT activity, event_time, _oe_partition FROM activity_log WHERE case_id = ? "
            "AND activity_type IN ('start', 'step', 'end') ORDER BY event_time",
            [CASE],
        ).fetchall()
    finally:
        conn.close()
    assert logged == (created, finished), f"metadata$createdAt is {column_type}"
    assert activities == [
        ("Process started", created, day),
        ("check_stock", step, day),
        ("Process finished", finished, day),
    ]


TIMESTAMP_TEXTS = [
    "2025-03-02T01:30:00.322Z",
    "2025-03-02T01:30:00+02:00",
    "2025-03-02 01:30:00.123456789+02:00",
    "2025-03-02T01:30:00.1234567-0530",
    "2025-03-02T01:30:00+02",
    "2025-03-02t01:30:00z",
    "2025-03-02 01:30:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC: no timestamp
    "2025-03-02T24:00:00Z",
    "2025-02-30T01:30:00Z",
    "2025-03-02",
    "not a timestamp",
    "",
    None,
]


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/Los_Angeles"])
def test_utc_timestamp_reads_text_and_typed_columns_in_any_session_time_zone(zone: str) -> None:
    """The SQL reading agrees with the project's parser on every text (NULL where it says None),
    and typed columns give their UTC instant, whatever the session's TimeZone."""
    conn = duckdb.connect()
    try:
        conn.execute(f"SET TimeZone = '{zone}'")
        conn.execute("CREATE TABLE t (v VARCHAR)")
        conn.executemany("INSERT INTO t VALUES (?)", [[v] for v in TIMESTAMP_TEXTS])
        read = dict(conn.execute(f"SELECT v, {utc_timestamp('v')} FROM t").fetchall())
        typed = conn.execute(
            f"""SELECT {utc_timestamp("a")}, {utc_timestamp("b")}, {utc_timestamp("c")}, {utc_timestamp("d")}
                FROM (SELECT TIMESTAMP '2025-03-02 01:30:00' AS a, TIMESTAMPTZ '2025-03-02 01:30:00+02' AS b,
                             TIMESTAMP_NS '2025-03-02 01:30:00.123456789' AS c, NULL AS d)"""
        ).fetchone()
    finally:
        conn.close()
    assert read == {v: parse_oe_timestamp(v) for v in TIMESTAMP_TEXTS}
    assert read["2025-03-02 01:30:00.123456789+02:00"] == datetime(2025, 3, 1, 23, 30, 0, 123456)
    assert read["not a timestamp"] is None
    assert typed == (
        datetime(2025, 3, 2, 1, 30),
        datetime(2025, 3, 1, 23, 30),
        datetime(2025, 3, 2, 1, 30, 0, 123456),
        None,
    )
