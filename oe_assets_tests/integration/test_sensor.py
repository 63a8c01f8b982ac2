"""The finished-runs sensor with Dagster's sensor test helpers, against the simulator over HTTP."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oe_assets.core.timestamps import format_oe_timestamp, parse_oe_timestamp
from oe_assets.definitions import build_definitions
from oe_assets.defs.automation.jobs import CATALOG_JOB, CONTEXTS_JOB
from oe_assets.defs.automation.sensors import SENSOR_NAME
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import created_day, table_names


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """Pinned to 06:00 UTC today: advancing the clock by hours must not cross into a day with no partition yet."""
    morning = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    with SimulatorServer(seed=7, days=3, contexts_per_day=25, now=morning) as server:
        yield server


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = defs.get_sensor_def(SENSOR_NAME)
    context = dg.build_sensor_context(
        cursor=cursor, instance=instance, definitions=defs, resources={"oe_api": defs.resources["oe_api"]}
    )
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> None:
    for request in requests:
        job = defs.resolve_job_def(request.job_name or CONTEXTS_JOB)
        result = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags
        )
        assert result.success


def _finished_partitions(server: SimulatorServer, ids: set[str] | None = None) -> set[str]:
    return {
        created_day(c).isoformat()
        for c in server.world.contexts()
        if c["status"] == "finished" and (ids is None or c["context"]["processid"] in ids)
    }


def _state(path: Path) -> dict[str, list]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        tables = [*table_names(conn, "execution_context"), "event_log"]
        out = {}
        for t in tables:
            columns = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY column_name",
                    [t],
                ).fetchall()
                if r[0] not in ("_oe_loaded_at",)
            ]
            cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
            out[t] = sorted(map(repr, conn.execute(f'SELECT {cols} FROM "{t}"').fetchall()))
        return out
    finally:
        conn.close()


def test_sensor_requests_changed_partitions_once_and_catches_up_to_a_full_reload(
    simulator: SimulatorServer,
    resources: dict,
    instance: dg.DagsterInstance,
    warehouse_path: Path,
    tmp_path: Path,
) -> None:
    defs = build_definitions(resources)

    first = _tick(defs, instance, None)
    assert [r.job_name for r in first.run_requests] == [CATALOG_JOB]  # digital processes land first
    _run(defs, instance, first.run_requests)

    second = _tick(defs, instance, first.cursor)
    requested = {r.partition_key for r in second.run_requests}
    assert requested == _finished_partitions(simulator)
    assert all(r.job_name == CONTEXTS_JOB and r.run_key for r in second.run_requests)
    _run(defs, instance, second.run_requests)

    quiet = _tick(defs, instance, second.cursor)
    assert quiet.run_requests == []

    report = simulator.advance(6 * 3600)
    finished_now = set(report.finished)
    assert finished_now, "advancing six hours must finish some running contexts"
    third = _tick(defs, instance, quiet.cursor)
    assert {r.partition_key for r in third.run_requests} == _finished_partitions(simulator, finished_now)
    assert len({r.run_key for r in third.run_requests}) == len(third.run_requests)
    _run(defs, instance, third.run_requests)
    assert _tick(defs, instance, third.cursor).run_requests == []

    # A full reload of the same partitions into a fresh warehouse gives the same tables.
    fresh = tmp_path / "fresh.duckdb"
    fresh_defs = build_definitions({**resources, "warehouse": WarehouseResource(database=str(fresh))})
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    with dg.instance_for_test() as other:
        assert run_whole_graph(fresh_defs, days[0], days[-1], instance=other).success
    ours, full = _state(warehouse_path), _state(fresh)
    assert set(ours) == set(full)
    for table in ours:
        # The sensor only loads days with finished runs; compare the contexts it was told about.
        assert set(ours[table]) <= set(full[table]), table
    conn = duckdb.connect(str(warehouse_path), read_only=True)
    finished_ids = {
        c["context"]["processid"] for c in simulator.world.contexts() if c["status"] == "finished"
    }
    landed = {
        r[0] for r in conn.execute("SELECT instance_id FROM event_log WHERE status = 'finished'").fetchall()
    }
    assert landed == finished_ids


def test_contexts_sharing_one_updated_at_across_a_page_boundary_are_all_picked_up(
    simulator: SimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    resources = {
        "oe_api": OeApiResource(
            api_url=simulator.url,
            client_id=simulator.client_id,
            client_secret=simulator.client_secret,
            page_size=4,
        ),
        "warehouse": WarehouseResource(database=str(warehouse_path)),
    }
    defs = build_definitions(resources)
    cursor = _tick(defs, instance, None).cursor
    cursor = _tick(defs, instance, cursor).cursor
    template = simulator.world.contexts()[0]
    stamp = parse_oe_timestamp(simulator.world.now.isoformat().replace("+00:00", "Z"))
    assert stamp is not None
    same = format_oe_timestamp(stamp)
    clones = []
    for i in range(11):  # more than two pages of 4, all with the same updatedAt
        doc = copy.deepcopy(template)
        doc["context"]["processid"] = f"{template['context']['processid'][:-4]}T{i:03d}"
        doc["metadata"]["updatedAt"] = same
        doc["status"] = "finished"
        simulator.world.put_context(doc)
        clones.append(doc)
    result = _tick(defs, instance, cursor)
    assert {r.partition_key for r in result.run_requests} == {created_day(template).isoformat()}
    # Three more arrive at the very same timestamp after the tick: the next tick still sees them.
    for i in range(11, 14):
        doc = copy.deepcopy(clones[0])
        doc["context"]["processid"] = f"{template['context']['processid'][:-4]}T{i:03d}"
        simulator.world.put_context(doc)
    again = _tick(defs, instance, result.cursor)
    assert {r.partition_key for r in again.run_requests} == {created_day(template).isoformat()}
    assert again.run_requests[0].run_key != result.run_requests[0].run_key
    assert _tick(defs, instance, again.cursor).run_requests == []
