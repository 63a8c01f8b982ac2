"""What was landed stays landed: an API answer that shrinks never deletes anything.

Real Dagster runs of the whole graph (every check) against the simulator over HTTP, into DuckDB
on disk. The API answers a landed day with 1 of its contexts, another with ``[]`` (HTTP 200
both): every landed context stays in the raw table, execution_context, the event log and the
activity log, marked with the time it was first missed; the run reports the shrinking days.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import orjson
import pytest

from oe_assets.client import OeClient
from oe_assets.core.timestamps import format_oe_timestamp, parse_oe_timestamp
from oe_assets.definitions import build_definitions
from oe_assets.landing.raw_contexts import land_process_contexts
from oe_assets.orchestration.runner import GraphRunReport, run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import created_day, doc_hash
from oe_assets_tests.support.reliability_support import new_simulator, resources_for, world_days

KEYS = {
    "raw_process_contexts": "process_id",
    "execution_context": "context$processid",
    "event_log": "instance_id",
    "activity_log": "case_id",
}


@dataclass
class Shrunk:
    warehouse: Path
    instance: dg.DagsterInstance
    report: GraphRunReport
    one_of: date  # answered with one of its contexts
    empty: date  # answered with []
    landed: dict[date, set[str]]
    kept: str  # the context still returned on `one_of`
    server: SimulatorServer
    defs: dg.Definitions
    deleted: dict[str, dict[str, Any]]  # the contexts the API stopped returning


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shrunk]:
    tmp = tmp_path_factory.mktemp("retention")
    warehouse = tmp / "oe.duckdb"
    with (
        new_simulator(170, days=2, contexts_per_day=12) as server,
        dg.instance_for_test(temp_dir=str(tmp)) as instance,
    ):
        defs = build_definitions(resources_for(server, warehouse))
        days = world_days(server)
        assert run_whole_graph(defs, days[0], days[-1], instance=instance).success
        by_day: dict[date, set[str]] = {}
        for c in server.world.contexts():
            by_day.setdefault(created_day(c), set()).add(c["context"]["processid"])
        one_of, empty = sorted(d for d in days if len(by_day.get(d, ())) >= 5)[:2]
        kept = sorted(by_day[one_of])[0]
        deleted = {
            c["context"]["processid"]: c
            for c in server.world.contexts()
            if c["context"]["processid"] in (by_day[one_of] - {kept}) | by_day[empty]
        }
        for pid in deleted:
            assert server.world.delete_context(pid)  # the API now answers 200 with less
        report = run_whole_graph(defs, min(one_of, empty), max(one_of, empty), instance=instance)
        yield Shrunk(warehouse, instance, report, one_of, empty, by_day, kept, server, defs, deleted)


def _marks(warehouse: Path, sql: str) -> dict[str, Any]:
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        return dict(conn.execute(sql).fetchall())
    finally:
        conn.close()


def test_the_run_succeeds_with_every_check_green(shrunk: Shrunk) -> None:
    assert shrunk.report.success, shrunk.report.failure
    assert shrunk.report.checks
    assert [c for c in shrunk.report.checks if not c.passed] == []


def test_every_landed_context_stays_in_every_table_marked_when_first_missed(shrunk: Shrunk) -> None:
    landed = shrunk.landed[shrunk.one_of] | shrunk.landed[shrunk.empty]
    missing = landed - {shrunk.kept}
    for table, key in KEYS.items():
        ids = set(_marks(shrunk.warehouse, f'SELECT DISTINCT "{key}", 1 FROM {table}'))
        assert landed <= ids, f"{table} lost {sorted(landed - ids)[:3]}"
    raw = _marks(shrunk.warehouse, "SELECT process_id, deleted_at FROM raw_process_contexts")
    flat = _marks(shrunk.warehouse, 'SELECT "context$processid", _oe_deleted_at FROM execution_context')
    logged = _marks(shrunk.warehouse, "SELECT instance_id, _oe_deleted_at FROM event_log")
    assert {pid for pid, at in raw.items() if at is not None} == missing
    assert {pid: flat[pid] for pid in landed} == {pid: raw[pid] for pid in landed}
    assert {pid: logged[pid] for pid in landed} == {pid: raw[pid] for pid in landed}


def test_the_run_reports_each_day_and_warns_of_the_sharp_shrink(shrunk: Shrunk) -> None:
    run_id = shrunk.report.run_ids[-1]
    event = shrunk.instance.get_latest_materialization_event(dg.AssetKey("raw_process_contexts"))
    assert event is not None
    assert event.run_id == run_id
    assert event.asset_materialization is not None
    meta = event.asset_materialization.metadata
    table = str(meta["retention_per_partition"].value)
    n_one, n_empty = len(shrunk.landed[shrunk.one_of]), len(shrunk.landed[shrunk.empty])
    assert f"| {shrunk.one_of} | {n_one} | 1 | {n_one - 1} |" in table, table
    assert f"| {shrunk.empty} | {n_empty} | 0 | {n_empty} |" in table, table
    assert meta["newly_missing"].value == n_one - 1 + n_empty
    assert meta["partitions_shrunk_sharply"].value == sorted([str(shrunk.one_of), str(shrunk.empty)])
    warnings = [
        r.user_message
        for r in shrunk.instance.all_logs(run_id)
        if r.level == 30 and "kept, marked deleted_at" in r.user_message
    ]
    assert len(warnings) == 2, warnings


def test_a_context_that_comes_back_loses_its_mark_everywhere(shrunk: Shrunk) -> None:
    """Runs last in this module: it changes the shared warehouse."""
    back = next(c for c in shrunk.deleted.values() if created_day(c) == shrunk.empty)
    pid = back["context"]["processid"]
    shrunk.server.world.put_context(back)
    report = run_whole_graph(shrunk.defs, shrunk.empty, shrunk.empty, instance=shrunk.instance)
    assert report.success, report.failure
    for sql in (
        "SELECT process_id, deleted_at FROM raw_process_contexts",
        'SELECT "context$processid", _oe_deleted_at FROM execution_context',
        "SELECT instance_id, _oe_deleted_at FROM event_log",
    ):
        marks = _marks(shrunk.warehouse, sql)
        assert marks[pid] is None, sql
        assert sum(at is not None for at in marks.values()) == len(shrunk.deleted) - 1, sql


# ------------------------------------------------------------------------- one refresh at a time
def test_an_older_version_never_overwrites_the_newer_one_landed(
    simulator: SimulatorServer, oe_client: OeClient, warehouse_path: Path
) -> None:
    original = simulator.world.contexts()[0]
    pid, day = original["context"]["processid"], created_day(original)
    updated = parse_oe_timestamp(original["metadata"]["updatedAt"])
    assert updated is not None
    newer = copy.deepcopy(original)
    newer["metadata"]["updatedAt"] = format_oe_timestamp(updated.replace(year=updated.year + 1))
    newer["context"]["version"] = "newer"
    stale = copy.deepcopy(original)
    stale["context"]["version"] = "stale"
    stale["status"] = "stale-status"
    conn = duckdb.connect(str(warehouse_path))
    try:
        simulator.world.put_context(newer)
        land_process_contexts(conn, oe_client, [original["context"]["executionTemplateID"]], [day])
        simulator.world.put_context(stale)  # the API answers with an older copy
        report = land_process_contexts(conn, oe_client, [original["context"]["executionTemplateID"]], [day])
        row = conn.execute(
            "SELECT document, status FROM raw_process_contexts WHERE process_id = ?", [pid]
        ).fetchone()
        statuses = conn.execute(
            "SELECT status FROM raw_process_context_status_history WHERE process_id = ?", [pid]
        ).fetchall()
    finally:
        conn.close()
    assert row is not None
    assert doc_hash(orjson.loads(row[0])) == doc_hash(newer)
    assert row[1] == newer["status"]
    assert report.older_versions_ignored == 1
    assert ("stale-status",) not in statuses
