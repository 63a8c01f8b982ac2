"""Delivery into Celonis, over HTTP against the stand-in: real Dagster runs of the project's jobs,
the warehouse a DuckDB file, the pool the stand-in's DuckDB file; after every run the pool must
hold exactly the warehouse's rows, value by value."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oe_assets.celonis import CelonisApi, CelonisRequestError
from oe_assets.celonis.ledger import ROWS, TABLES
from oe_assets.celonis_simulator import CelonisSimulatorServer
from oe_assets.defs.automation.jobs import CATALOG_JOB, CONTEXTS_JOB
from oe_assets.defs.celonis.assets import POOL_ROWS_CHECK
from oe_assets.defs.celonis.definitions import CATCH_UP_JOB
from oe_assets.orchestration.runner import GraphRunReport, run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.reading import reading
from oe_assets_tests.support.celonis_support import (
    POOL_ID,
    PUSHED_TABLES,
    celonis_resource,
    differences,
    pushing_definitions,
    stand_in,
)
from oe_assets_tests.support.reliability_support import morning, run_job

LONG_TEXT = "Ångström-" + "0123456789" * 14 + "-end"  # 153 characters, more bytes
QUOTES = "execution_context$context&celonis_postaction_feedback$quotes"


@pytest.fixture
def oe() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=23, days=2, contexts_per_day=12, now=morning()) as server:
        yield server


@pytest.fixture
def celonis(tmp_path: Path) -> Iterator[CelonisSimulatorServer]:
    with stand_in(tmp_path) as server:
        yield server


def days_of(oe: SimulatorServer) -> tuple[date, date]:
    today = oe.world.now.date()
    return today - timedelta(days=3), today


def load(defs: dg.Definitions, oe: SimulatorServer, instance: dg.DagsterInstance) -> GraphRunReport:
    first, last = days_of(oe)
    return run_whole_graph(defs, first, last, instance=instance)


def defs_for(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse: Path, **more: Any
) -> dg.Definitions:
    return pushing_definitions(oe, celonis, warehouse, days_of(oe)[0], **more)


def a_context_with(oe: SimulatorServer, path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of a served context whose document has a non-empty array at ``path``."""
    for doc in oe.world.contexts():
        node: Any = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, list) and len(node) >= 2:
            return copy.deepcopy(doc)
    raise AssertionError(f"no simulated context has an array at {'.'.join(path)}")


def touched(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as OE serves it after a change: updatedAt moved to the simulated now."""
    doc["metadata"]["updatedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return doc


def assert_equal(celonis: CelonisSimulatorServer, warehouse: Path) -> None:
    found = list(differences(celonis, warehouse))
    assert not found, "\n".join(found)


def pool_checks(report: GraphRunReport) -> list[bool]:
    return [c.passed for c in report.checks if c.name == POOL_ROWS_CHECK]


def test_a_full_load_leaves_the_pool_equal_to_the_warehouse_value_by_value(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    doc = oe.world.contexts()[0]
    doc["context"]["long_note"] = LONG_TEXT
    oe.world.put_context(doc)

    report = load(defs_for(oe, celonis, warehouse_path), oe, instance)

    assert report.success, report.failure
    assert_equal(celonis, warehouse_path)
    checks = pool_checks(report)
    assert checks, "every pushed table has its check"
    assert all(checks), report.checks
    notes = [
        r["context$long_note"] for r in celonis.pool_rows("execution_context") if r.get("context$long_note")
    ]
    assert notes == [LONG_TEXT]  # whole, not cut at 80 characters
    pushed = [target for _, target, _, _ in celonis.executions]
    assert len(pushed) == len(set(pushed)), "one job per table and run"
    assert QUOTES in celonis.pool_counts()  # the exact Celonis name, `$` and `&` kept


def test_the_data_model_has_every_pushed_table_its_keys_and_a_process(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    assert load(defs_for(oe, celonis, warehouse_path), oe, instance).success
    resource = celonis_resource(celonis)
    with CelonisApi(resource.api_config()) as api:
        models = [m for m in api.list_data_models() if m.get("name") == "OE Process Contexts"]
        assert len(models) == 1
        model_id = str(models[0]["id"])
        tables = {t["name"]: t["id"] for t in api.list_model_tables(model_id)}
        keys = api.list_foreign_keys(model_id)
        info = api.load_info(model_id)
        model = next(m for m in api.list_data_models() if m["id"] == models[0]["id"])
    assert set(celonis.pool_counts()) == set(tables)
    by_ids = {(k["sourceTableId"], k["targetTableId"]) for k in keys}
    assert (tables["event_log"], tables["execution_context"]) in by_ids
    assert (tables["execution_context"], tables["execution_templates"]) in by_ids
    assert (tables[QUOTES], tables["execution_context"]) in by_ids
    process = model["processConfigurations"][0]
    assert process["caseTableId"] == tables["execution_context"]
    assert process["activityTableId"] == tables["activity_log"]
    assert info["loadInfo"]["currentComputeLoad"]["loadStatus"] == "SUCCESS"


def test_a_refresh_after_changes_leaves_the_pool_equal_again_with_rows_deleted(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = defs_for(oe, celonis, warehouse_path)
    assert load(defs, oe, instance).success
    quotes_before = celonis.pool_counts()[QUOTES]
    first_run_jobs = len(celonis.executions)

    doc = a_context_with(oe, ("context", "celonis_postaction_feedback", "quotes"))
    doc["context"]["celonis_postaction_feedback"]["quotes"] = doc["context"]["celonis_postaction_feedback"][
        "quotes"
    ][:1]
    doc["context"]["brand.new-event"] = {"occurredAt": "2026-01-01T00:00:00Z", "answer": 42}
    oe.world.put_context(touched(doc))
    oe.world.advance(6 * 3600)  # runs progress: statuses and updatedAt change

    report = load(defs, oe, instance)

    assert report.success, report.failure
    assert_equal(celonis, warehouse_path)
    assert celonis.pool_counts()[QUOTES] < quotes_before  # the removed quotes were deleted in Celonis
    columns = [name for name, _, _ in celonis.pool_columns("execution_context")]
    assert "context$brand.new-event$answer" in columns
    second_run = celonis.executions[first_run_jobs:]
    assert 0 < len(second_run) < len(PUSHED_TABLES)  # only the tables that changed got a job
    assert all(status == "DONE" for *_, status in second_run)
    assert all(pool_checks(report))


def test_429_and_5xx_are_retried_and_the_pool_ends_equal(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    celonis.faults.status_429 = 3
    celonis.faults.status_5xx = 3

    report = load(defs_for(oe, celonis, warehouse_path), oe, instance)

    assert report.success, report.failure
    assert celonis.faults.status_429 == 0
    assert celonis.faults.status_5xx == 0
    assert_equal(celonis, warehouse_path)


def test_the_token_is_renewed_before_it_expires_and_when_celonis_revokes_it(
    oe: SimulatorServer, tmp_path: Path, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    with stand_in(tmp_path, token_ttl=2.0, job_delay=0.1) as celonis:
        revoker = threading.Thread(target=_revoke_after_executions, args=(celonis, 5), daemon=True)
        revoker.start()

        report = load(defs_for(oe, celonis, warehouse_path), oe, instance)

        revoker.join(timeout=60)
        assert report.success, report.failure
        assert celonis.tokens_issued >= 3  # the first, one before expiry, one after the revocation
        assert_equal(celonis, warehouse_path)


def _revoke_after_executions(celonis: CelonisSimulatorServer, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(celonis.executions) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    celonis.faults.revoke_tokens()


def test_a_job_in_error_fails_the_run_records_nothing_and_the_next_run_delivers(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = defs_for(oe, celonis, warehouse_path)
    celonis.faults.fail_jobs = 1

    failed = load(defs, oe, instance)

    assert not failed.success
    assert "ended in ERROR: Simulated failure" in (failed.failure or "")
    with reading(warehouse_path) as conn:
        confirmed = {str(r[0]) for r in conn.execute(f"SELECT target FROM {TABLES}").fetchall()}
    failed_table = next(target for _, target, _, status in celonis.executions if status == "ERROR")
    assert failed_table not in confirmed
    assert failed_table in (failed.failure or "")

    again = load(defs, oe, instance)

    assert again.success, again.failure
    assert_equal(celonis, warehouse_path)


def test_re_running_a_push_changes_nothing(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = defs_for(oe, celonis, warehouse_path)
    assert load(defs, oe, instance).success
    jobs = len(celonis.executions)
    with reading(warehouse_path) as conn:
        ledger_rows = conn.execute(f"SELECT count(*) FROM {ROWS}").fetchall()[0][0]

    assert load(defs, oe, instance).success

    assert len(celonis.executions) == jobs  # nothing differed, so nothing was submitted
    with reading(warehouse_path) as conn:
        assert conn.execute(f"SELECT count(*) FROM {ROWS}").fetchall()[0][0] == ledger_rows
    assert_equal(celonis, warehouse_path)


def sensor_runs_past_the_hourly_limit(
    defs: dg.Definitions, oe: SimulatorServer, instance: dg.DagsterInstance
) -> list[dg.ExecuteInProcessResult]:
    """The catalog and every day, launched as the sensor launches them."""
    first, last = days_of(oe)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    sensor_tags = {"dagster/sensor_name": "finished_runs_sensor"}
    return [
        run_job(defs, instance, CATALOG_JOB, tags=sensor_tags),
        run_job(defs, instance, CONTEXTS_JOB, days=days, tags=sensor_tags),
    ]


def test_the_hourly_limit_defers_a_sensor_run_and_fails_a_manual_one(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = defs_for(oe, celonis, warehouse_path, resource=celonis_resource(celonis, jobs_per_hour=3))

    runs = sensor_runs_past_the_hourly_limit(defs, oe, instance)
    first, last = days_of(oe)
    manual = run_job(defs, instance, CONTEXTS_JOB, days=[first, last])

    assert all(run.success for run in runs)
    deferred = [
        e for run in runs for e in run.get_asset_check_evaluations() if e.check_name == POOL_ROWS_CHECK
    ]
    assert deferred
    assert all(not e.passed and "deferred" in (e.description or "").lower() for e in deferred)
    assert celonis.executions == []  # nothing was submitted past the limit
    assert not manual.success
    assert any(
        "no more push jobs this hour" in str(e.step_failure_data.error)
        for e in manual.all_events
        if e.is_step_failure
    )


def test_the_hourly_catch_up_pushes_what_deferred_runs_left(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    busy = defs_for(oe, celonis, warehouse_path, resource=celonis_resource(celonis, jobs_per_hour=3))
    assert all(run.success for run in sensor_runs_past_the_hourly_limit(busy, oe, instance))
    assert celonis.executions == []

    next_hour = defs_for(oe, celonis, warehouse_path)
    schedule = next_hour.resolve_schedule_def(CATCH_UP_JOB)
    context = dg.build_schedule_context(instance=instance, repository_def=next_hour.get_repository_def())
    request = schedule.evaluate_tick(context).run_requests[0]
    caught_up = run_job(next_hour, instance, CATCH_UP_JOB, partition_key=request.partition_key)

    assert caught_up.success
    assert_equal(celonis, warehouse_path)
    checks = [e.passed for e in caught_up.get_asset_check_evaluations() if e.check_name == POOL_ROWS_CHECK]
    assert checks
    assert all(checks)


def test_celonis_refusing_more_jobs_this_hour_keeps_what_it_confirmed(
    oe: SimulatorServer, tmp_path: Path, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    with stand_in(tmp_path, jobs_per_hour=4) as celonis:
        # Celonis asks to wait until the next full hour; a budget shorter than that gives up (a
        # longer one would wait, near the end of an hour, and then go on)
        resource = celonis_resource(celonis, retry_budget_seconds=2.0)
        report = load(defs_for(oe, celonis, warehouse_path, resource=resource), oe, instance)
        assert not report.success
        assert "no more push jobs this hour" in (report.failure or "")
        done = [target for _, target, _, status in celonis.executions if status == "DONE"]
        with reading(warehouse_path) as conn:
            confirmed = {str(r[0]) for r in conn.execute(f"SELECT target FROM {TABLES}").fetchall()}
        assert set(done) == confirmed
        assert len(done) == 4


def test_a_failed_data_model_load_fails_the_run_with_celonis_message(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    celonis.faults.load_error = True

    report = load(defs_for(oe, celonis, warehouse_path), oe, instance)

    assert not report.success
    assert "load ended in ERROR" in (report.failure or "")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"client_secret": "not-the-secret"}, "CELONIS_CLIENT_ID and CELONIS_CLIENT_SECRET"),
        ({"client_id": "", "app_key": "wrong-app-key"}, "CELONIS_APP_KEY"),
        ({"pool_id": "no-such-pool"}, "CELONIS_POOL_ID"),
    ],
)
def test_wrong_settings_fail_in_one_sentence_naming_the_setting(
    oe: SimulatorServer,
    celonis: CelonisSimulatorServer,
    warehouse_path: Path,
    instance: dg.DagsterInstance,
    override: dict[str, str],
    named: str,
) -> None:
    resource = celonis_resource(celonis, **override)
    report = load(defs_for(oe, celonis, warehouse_path, resource=resource), oe, instance)

    assert not report.success
    assert named in (report.failure or "")
    assert "not-the-secret" not in (report.failure_details or "")
    assert "wrong-app-key" not in (report.failure_details or "")


def test_a_connection_id_pushes_into_that_connection_s_schema(
    oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse_path: Path, instance: dg.DagsterInstance
) -> None:
    connection = celonis.connection_ids[0]
    resource = celonis_resource(celonis, connection_id=connection)

    report = load(defs_for(oe, celonis, warehouse_path, resource=resource), oe, instance)

    assert report.success, report.failure
    assert "execution_context" in celonis.pool_counts(connection)
    assert "execution_context" not in celonis.pool_counts()


def test_without_celonis_url_the_push_assets_are_idle_and_in_no_job() -> None:
    from oe_assets.config import settings
    from oe_assets.definitions import build_definitions

    defs = build_definitions(config=settings.Settings())
    push = dg.AssetKey(["celonis", "pool_execution_context"])
    spec = next(
        s for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for s in a.specs if s.key == push
    )
    assert spec.description
    assert spec.description.startswith("Idle: CELONIS_URL is not set")
    job = defs.resolve_job_def(CONTEXTS_JOB)
    assert push not in job.asset_layer.executable_asset_keys
    assert POOL_ID  # the stand-in's pool is only used by the other tests


def test_a_credential_without_the_pools_scope_is_refused_in_one_sentence(
    celonis: CelonisSimulatorServer, warehouse_path: Path
) -> None:
    config = dataclasses.replace(celonis_resource(celonis).api_config(), scope="integration.data-pools:read")
    with CelonisApi(config) as api, pytest.raises(CelonisRequestError) as refused:
        api.create_job({"targetName": "accounts", "type": "REPLACE"})
    assert refused.value.status == 403
    assert "scope integration.data-pools" in str(refused.value)
    assert "Data Push API" in str(refused.value)
    assert celonis.client_secret not in str(refused.value)
