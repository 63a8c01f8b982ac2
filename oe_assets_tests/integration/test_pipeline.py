"""The whole asset graph through real Dagster runs, against the simulator over HTTP, into DuckDB on disk."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import orjson
import pytest

from oe_assets.definitions import build_definitions
from oe_assets.flatten.process import FlattenProcess, live_flatten_processes
from oe_assets.load import contexts as context_partition
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.orchestration.runner import GraphRunReport, run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import (
    EVENT_LOG_SCRIPT,
    EXTRACTOR_DOC,
    array_elements,
    count,
    created_day,
    doc_hash,
    extractor_event_log_script,
    run_extractor_script_on_copy,
    table_names,
)
from oe_assets_tests.support.reliability_support import resources_for


@dataclass
class Loaded:
    defs: dg.Definitions
    report: GraphRunReport
    contexts: list[dict]
    days: list[date]
    warehouse: Path
    instance: dg.DagsterInstance
    simulator: SimulatorServer


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """One full load shared by the read-only tests of this module (it takes a few seconds)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    warehouse = tmp / "oe.duckdb"
    (tmp / "home").mkdir()
    with (
        SimulatorServer(seed=11, days=3, contexts_per_day=25) as simulator,
        dg.instance_for_test(temp_dir=str(tmp / "home")) as instance,
    ):
        resources = {
            "oe_api": OeApiResource(
                api_url=simulator.url,
                client_id=simulator.client_id,
                client_secret=simulator.client_secret,
                page_size=50,
            ),
            "warehouse": WarehouseResource(database=str(warehouse)),
        }
        defs = build_definitions(resources)
        contexts = simulator.world.contexts()
        days = sorted({created_day(c) for c in contexts})
        report = run_whole_graph(defs, days[0], days[-1], instance=instance)
        assert report.success, report.failure
        yield Loaded(defs, report, contexts, days, warehouse, instance, simulator)


def test_raw_layer_holds_exactly_the_simulators_contexts(loaded: Loaded) -> None:
    contexts, simulator = loaded.contexts, loaded.simulator
    conn = duckdb.connect(str(loaded.warehouse), read_only=True)
    rows = conn.execute("SELECT process_id, document, partition_date FROM raw_process_contexts").fetchall()
    assert len(rows) == len(contexts)
    landed = {pid: doc_hash(orjson.loads(doc)) for pid, doc, _ in rows}
    assert landed == {c["context"]["processid"]: doc_hash(c) for c in contexts}
    assert all(day == created_day(orjson.loads(doc)) for _, doc, day in rows)
    assert count(conn, "raw_execution_templates") == len(simulator.world.templates())
    assert count(conn, "raw_accounts") == len(simulator.world.tenants())


def test_celonis_tables_have_exact_row_counts(loaded: Loaded) -> None:
    contexts, simulator = loaded.contexts, loaded.simulator
    conn = duckdb.connect(str(loaded.warehouse), read_only=True)
    assert count(conn, "execution_context") == len(contexts)
    children = table_names(conn, "execution_context$")
    assert children, "the simulator's contexts have arrays, so child tables must exist"
    assert sum(count(conn, t) for t in children) == sum(array_elements(c) for c in contexts)
    quotes = sum(
        len(c["context"]["celonis_postaction_feedback"]["quotes"])
        for c in contexts
        if isinstance(c["context"].get("celonis_postaction_feedback"), dict)
    )
    assert quotes > 0
    assert count(conn, "execution_context$context&celonis_postaction_feedback$quotes") == quotes
    templates = simulator.world.templates()
    assert count(conn, "execution_templates") == len(templates)
    assert count(conn, "execution_templates$trigger") == sum(len(t["trigger"]) for t in templates)
    assert count(conn, "accounts") == len(simulator.world.tenants())


def test_event_log_matches_the_seed_script_run_verbatim(loaded: Loaded, tmp_path: Path) -> None:
    contexts, warehouse_path = loaded.contexts, loaded.warehouse
    conn = duckdb.connect(str(warehouse_path), read_only=True)
    # the extractor's columns (ours adds _oe_deleted_at beside them)
    ours = conn.execute(
        "SELECT execution_template_name, instance_id, created_at, last_modified, status "
        "FROM event_log ORDER BY instance_id"
    ).fetchall()
    conn.close()
    assert len(ours) == len(contexts)
    seeds = run_extractor_script_on_copy(warehouse_path, tmp_path, EVENT_LOG_SCRIPT.read_text())
    assert ours == seeds


def test_every_check_passes_on_simulator_data(loaded: Loaded) -> None:
    report = loaded.report
    assert report.checks, "the runs must evaluate the data-model checks"
    failed = [c for c in report.checks if not c.passed]
    assert failed == []
    names = {c.name for c in report.checks}
    assert {"fk_context_to_template", "fk_event_log_instance_to_context", "pk_execution_context"} <= names


def warehouse_snapshot(warehouse_path: Path) -> dict[str, list]:
    conn = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        tables = [*table_names(conn, "execution_context"), "event_log", "raw_process_contexts"]
        return {
            t: sorted(
                map(
                    repr,
                    conn.execute(
                        f'SELECT * EXCLUDE (_oe_loaded_at) FROM "{t}"'
                        if t.startswith("execution_context")
                        else f'SELECT * EXCLUDE (loaded_at) FROM "{t}"'
                        if t == "raw_process_contexts"
                        else f'SELECT * FROM "{t}"'
                    ).fetchall(),
                )
            )
            for t in tables
        }
    finally:
        conn.close()


def test_rematerializing_a_partition_is_idempotent(loaded: Loaded) -> None:
    defs, days, warehouse_path, instance = loaded.defs, loaded.days, loaded.warehouse, loaded.instance

    def snapshot() -> dict[str, list]:
        return warehouse_snapshot(warehouse_path)

    before = snapshot()
    result = defs.resolve_job_def("refresh_process_contexts").execute_in_process(
        instance=instance, partition_key=days[1].isoformat()
    )
    assert result.success
    assert snapshot() == before


def test_a_run_flattening_in_a_child_process_writes_the_same_tables(
    loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large run (PROCESS_MIN_DOCUMENTS contexts or more) flattens in a child process; lowered
    here so that a Dagster run of this small partition takes that path."""
    monkeypatch.setattr(context_partition, "PROCESS_MIN_DOCUMENTS", 1)
    started: list[int] = []

    class Counted(FlattenProcess):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(1)

    monkeypatch.setattr(context_partition, "FlattenProcess", Counted)
    before = warehouse_snapshot(loaded.warehouse)
    result = loaded.defs.resolve_job_def("refresh_process_contexts").execute_in_process(
        instance=loaded.instance, partition_key=loaded.days[2].isoformat()
    )
    assert result.success
    assert warehouse_snapshot(loaded.warehouse) == before
    assert started == [1]
    assert not live_flatten_processes()


def test_a_first_run_over_days_without_contexts_succeeds_and_the_next_one_loads(tmp_path: Path) -> None:
    """A new tenant, or a backfill that starts before the first run: nothing to flatten yet is no error.

    The days after the simulator's clock hold no context, so on a fresh warehouse neither
    ``execution_context`` nor any child table exists when the event and activity logs run.
    """
    warehouse = tmp_path / "oe.duckdb"
    (tmp_path / "home").mkdir()
    with (
        SimulatorServer(
            seed=13, days=1, contexts_per_day=8, now=datetime(2025, 3, 2, 6, tzinfo=UTC)
        ) as simulator,
        dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance,
    ):
        defs = build_definitions(resources_for(simulator, warehouse))
        empty = run_whole_graph(defs, date(2025, 3, 3), date(2025, 3, 4), instance=instance)
        assert empty.success, empty.failure
        assert empty.checks
        assert all(c.passed for c in empty.checks)
        conn = duckdb.connect(str(warehouse), read_only=True)
        try:
            assert table_names(conn, "execution_context") == []
            assert count(conn, "event_log") == 0
            assert count(conn, "activity_log") == 0
            assert count(conn, "execution_templates") == len(simulator.world.templates())
        finally:
            conn.close()

        contexts = simulator.world.contexts()
        days = sorted({created_day(c) for c in contexts})
        loaded = run_whole_graph(defs, days[0], days[-1], instance=instance)
        assert loaded.success, loaded.failure
        assert all(c.passed for c in loaded.checks)
        conn = duckdb.connect(str(warehouse), read_only=True)
        try:
            assert count(conn, "execution_context") == len(contexts)
            assert count(conn, "event_log") == len(contexts)
        finally:
            conn.close()


@pytest.mark.skipif(
    not EXTRACTOR_DOC.exists(),
    reason="the Celonis extractor's document is not beside this clone: the in-repo script is the reference",
)
def test_the_scripts_copy_is_the_seeds_own_text() -> None:
    """The suite runs the copy in oe_assets/sql; it must be the event-log script of the Celonis extractor's documentation, word for word."""
    assert EVENT_LOG_SCRIPT.read_text().split() == extractor_event_log_script(EXTRACTOR_DOC).split()
