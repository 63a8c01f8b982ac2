"""The finished-runs sensor against a hostile API: it can be neither blinded nor blocked.

Ticks run through Dagster's sensor test helpers against the simulator over HTTP; the simulator
serves the hostile records (a far-future ``updatedAt``, elements no parser accepts, contexts
created before the first partition or on a day that has no partition yet).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from oe_assets.core.timestamps import format_oe_timestamp
from oe_assets.definitions import build_definitions
from oe_assets.defs.automation.jobs import CATALOG_JOB, CONTEXTS_JOB
from oe_assets.defs.automation.sensors import SENSOR_NAME
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.refresh.delta import ChangedContext, SensorCursor, plan_partitions
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import created_day

FAR_FUTURE = "2999-01-01T00:00:00.000Z"


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """Pinned to 06:00 UTC today: advancing the clock by hours stays within today's partition."""
    morning = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    with SimulatorServer(seed=17, days=3, contexts_per_day=12, now=morning) as server:
        yield server


@pytest.fixture
def defs(simulator: SimulatorServer, tmp_path: Path) -> dg.Definitions:
    oe_api = OeApiResource(
        api_url=simulator.url,
        client_id=simulator.client_id,
        client_secret=simulator.client_secret,
        page_size=5,
        backoff_base_seconds=0.01,
        retry_budget_seconds=5,
    )
    return build_definitions(
        {"oe_api": oe_api, "warehouse": WarehouseResource(database=str(tmp_path / "w.duckdb"))}
    )


def tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: str | None,
    log: logging.Handler | None = None,
) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor, instance=instance, definitions=defs, resources={"oe_api": defs.resources["oe_api"]}
    )
    if log is not None:  # the tick's own logger (what the UI shows under the tick) does not propagate
        context.log.addHandler(log)
    result = defs.get_sensor_def(SENSOR_NAME)(context)
    assert isinstance(result, dg.SensorResult)
    return result


def settled_cursor(defs: dg.Definitions, instance: dg.DagsterInstance) -> str:
    """Two ticks: the catalog, then every finished context of the world so far."""
    first = tick(defs, instance, None)
    assert [r.job_name for r in first.run_requests] == [CATALOG_JOB]
    second = tick(defs, instance, first.cursor)
    assert second.cursor is not None
    return second.cursor


def finished_days(server: SimulatorServer, ids: set[str]) -> set[str]:
    return {created_day(c).isoformat() for c in server.world.contexts() if c["context"]["processid"] in ids}


def a_context(server: SimulatorServer, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(server.world.contexts()[0])
    doc["context"]["processid"] = doc["context"]["processid"][:-6] + changes.pop("suffix", "HOSTIL")
    doc["status"] = "finished"
    for key, value in changes.items():
        doc["metadata"][key] = value
    return doc


def test_a_far_future_updated_at_does_not_blind_the_sensor(
    simulator: SimulatorServer, defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    cursor = settled_cursor(defs, instance)
    liar = a_context(simulator, updatedAt=FAR_FUTURE)
    simulator.world.put_context(liar)

    first = tick(defs, instance, cursor)
    assert {r.partition_key for r in first.run_requests} == {created_day(liar).isoformat()}  # still landed
    state = SensorCursor.from_json(first.cursor)
    template = state.templates[liar["context"]["executionTemplateID"]]
    assert template.since is not None
    assert template.since < "2100"
    assert template.ahead[liar["context"]["processid"]] == FAR_FUTURE

    report = simulator.advance(6 * 3600)
    assert report.finished, "six simulated hours must finish some running contexts"
    later = tick(defs, instance, first.cursor)
    assert {r.partition_key for r in later.run_requests} == finished_days(simulator, set(report.finished))
    assert tick(defs, instance, later.cursor).run_requests == []  # the liar is reported once, not every tick


BAD_ELEMENTS = {
    "NaN": '{"n": NaN}',
    "1e400": '{"n": 1e400}',
    "lone surrogate": '{"n": "\\ud800"}',
    "nesting deeper than the parser": '{"n": ' + '{"d": ' * 1100 + "1" + "}" * 1100 + "}",
}


def hostile_text(doc: dict[str, Any], bad_member: str) -> bytes:
    text = json.dumps(doc)
    return (text[:-1] + ", " + bad_member[1:-1] + "}").encode()


@pytest.mark.parametrize("kind", [*BAD_ELEMENTS, "not an object"])
def test_a_record_no_parser_accepts_does_not_block_the_sensor(
    kind: str,
    simulator: SimulatorServer,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cursor = settled_cursor(defs, instance)
    report = simulator.advance(6 * 3600)
    finished_now = set(report.finished)
    bad = a_context(simulator, suffix="BADREC", updatedAt=format_oe_timestamp(simulator.world.now))
    pid, created, updated = (
        bad["context"]["processid"],
        bad["metadata"]["createdAt"],
        bad["metadata"]["updatedAt"],
    )
    template = bad["context"]["executionTemplateID"]
    text = b"[1, 2]" if kind == "not an object" else hostile_text(bad, BAD_ELEMENTS[kind])
    simulator.world.put_raw_context(template, text, process_id=pid, created_at=created, updated_at=updated)

    result = tick(defs, instance, cursor, caplog.handler)
    expected = finished_days(simulator, finished_now)
    if kind != "not an object":  # its creation time can still be read: its day is refreshed too
        expected.add(created_day(bad).isoformat())
    assert {r.partition_key for r in result.run_requests} == expected
    assert all(r.job_name == CONTEXTS_JOB for r in result.run_requests)
    assert "no usable process context" in caplog.text
    assert tick(defs, instance, result.cursor).run_requests == []


def test_contexts_outside_the_partitions_are_reported_and_future_days_wait(
    simulator: SimulatorServer,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    monkeypatch.setenv("OE_START_DATE", days[1].isoformat())  # the first simulated day has no partition
    oe_api = OeApiResource(
        api_url=simulator.url, client_id=simulator.client_id, client_secret=simulator.client_secret
    )
    defs = build_definitions(
        {"oe_api": oe_api, "warehouse": WarehouseResource(database=str(tmp_path / "w.duckdb"))}
    )
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    early = next(c for c in simulator.world.contexts() if created_day(c) == days[0])
    early["status"] = "finished"  # created before the first partition, finished now
    early["metadata"]["updatedAt"] = format_oe_timestamp(simulator.world.now)
    simulator.world.put_context(early)
    ahead = a_context(
        simulator,
        suffix="AHEADX",
        createdAt=format_oe_timestamp(datetime.combine(tomorrow, datetime.min.time())),
    )
    simulator.world.put_context(ahead)

    first = tick(defs, instance, None, caplog.handler)  # the catalog's tick reads the changes too
    second = tick(defs, instance, first.cursor, caplog.handler)
    requested = {r.partition_key for r in second.run_requests}
    assert days[0].isoformat() not in requested
    assert tomorrow.isoformat() not in requested
    assert f"created before OE_START_DATE ({days[1]})" in caplog.text
    assert early["context"]["processid"] in caplog.text
    assert tomorrow.isoformat() in SensorCursor.from_json(second.cursor).pending  # waits for its day


def test_a_day_that_has_no_partition_yet_is_requested_once_it_exists() -> None:
    cursor = SensorCursor()
    change = ChangedContext("P-1", "2026-12-08T00:00:01.000Z", date(2026, 12, 8))
    assert plan_partitions([change], cursor, max_partitions=10, last_partition="2026-12-07") == []
    assert list(cursor.pending) == ["2026-12-08"]
    planned = plan_partitions([], cursor, max_partitions=10, last_partition="2026-12-08")
    assert [key for key, _ in planned] == ["2026-12-08"]
    assert cursor.pending == {}


def test_the_requested_day_lands_its_good_contexts_and_quarantines_the_unusable_one(
    simulator: SimulatorServer, defs: dg.Definitions, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    first = tick(defs, instance, None)
    assert [r.job_name for r in first.run_requests] == [CATALOG_JOB]
    assert defs.resolve_job_def(CATALOG_JOB).execute_in_process(instance=instance).success
    bad = a_context(simulator, suffix="BADREC", updatedAt=format_oe_timestamp(simulator.world.now))
    text = hostile_text(bad, BAD_ELEMENTS["lone surrogate"])
    pid, day = bad["context"]["processid"], created_day(bad)
    simulator.world.put_raw_context(
        bad["context"]["executionTemplateID"],
        text,
        process_id=pid,
        created_at=bad["metadata"]["createdAt"],
        updated_at=bad["metadata"]["updatedAt"],
    )
    result = tick(defs, instance, first.cursor)
    runs = [r for r in result.run_requests if r.partition_key == day.isoformat()]
    assert len(runs) == 1
    job = defs.resolve_job_def(CONTEXTS_JOB)
    assert job.execute_in_process(instance=instance, partition_key=runs[0].partition_key).success

    good = {c["context"]["processid"] for c in simulator.world.contexts() if created_day(c) == day}
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        landed = {r[0] for r in conn.execute("SELECT process_id FROM raw_process_contexts").fetchall()}
        quarantined = conn.execute(
            "SELECT record_key, partition_key, reason, document FROM _oe_quarantine WHERE family = 'raw_process_contexts'"
        ).fetchall()
    assert landed == good
    assert quarantined == [(pid, day.isoformat(), quarantined[0][2], text.decode())]
    assert "surrogate" in quarantined[0][2]
