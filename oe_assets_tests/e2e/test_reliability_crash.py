"""Crashes and concurrency: a killed write leaves the previous content; runs started together all land.

The victim is a real pipeline process (``oe_assets_tests.support.reliability_victim``: the project's
partitioned assets, run the way a launched run runs them) pointed at a simulator started here,
with ``OE_ASSETS_CRASH_AT`` naming a point inside a warehouse write (see ``oe_assets_tests.support.crash_points``):
the process SIGKILLs itself there, with the transaction open. The partition must then hold exactly
what it held before (every table the killed step writes, byte for byte), reopening the file must
recover whatever DuckDB left behind (its WAL), and a re-run must complete the partition.
"""

from __future__ import annotations

import copy
import shutil
import signal
import subprocess
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oe_assets.core.timestamps import format_oe_timestamp
from oe_assets.landing.stage import STAGE_PREFIX, stage_folder
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.crash_points import (
    CRASH_AT_ENV,
    EVENT_LOG_BEFORE_COMMIT,
    MARKER,
    RAW_BEFORE_COMMIT,
    RAW_MID_STAGE,
    after_delete,
    after_first_batch,
)
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.reliability_support import (
    FIGURES,
    LIGHT_CATALOG_JOB,
    LIGHT_CONTEXTS_JOB,
    ROOT,
    compare_with_simulator,
    failure_text,
    light_definitions,
    light_full_load,
    new_simulator,
    quote,
    resources_for,
    run_job,
    subprocess_env,
    tick,
    victim_command,
    warehouse_snapshot,
    world_days,
)

RAW_TABLES = ("raw_process_contexts", "raw_process_context_status_history")
# crash point -> tables that earlier steps of the killed run committed before it (they may change)
CRASH_POINTS: dict[str, tuple[str, ...]] = {
    RAW_BEFORE_COMMIT: (),
    after_first_batch("execution_context"): RAW_TABLES,
    after_delete("execution_context"): RAW_TABLES,
    EVENT_LOG_BEFORE_COMMIT: (*RAW_TABLES, "execution_context*", "_oe_tables", "_oe_columns"),
}
TIMEOUT = 240


def _victim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    FIGURES.runs += 1
    return subprocess.run(
        victim_command(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _committed_earlier(table: str, patterns: Sequence[str]) -> bool:
    return any(table.startswith(p[:-1]) if p.endswith("*") else table == p for p in patterns)


def _change_the_day(server: SimulatorServer, day: date, round_no: int) -> None:
    """A run goes on and a new one starts: a new key (a new column), a new array (a new table)."""
    on_day = [c for c in server.world.contexts() if created_day(c) == day]
    if not on_day:  # a day without contexts yet: one starts at 01:00
        first = copy.deepcopy(server.world.contexts()[0])
        first["context"]["processid"] = first["context"]["processid"][:-6] + f"START{round_no}"
        first["metadata"]["createdAt"] = f"{day.isoformat()}T01:00:00.000Z"
        server.world.put_context(first)
        on_day = [first]
    changed = copy.deepcopy(on_day[round_no % len(on_day)])
    changed["context"][f"crash.round-{round_no}"] = {"seen": True, "lines": [{"n": i} for i in range(3)]}
    changed["metadata"]["updatedAt"] = format_oe_timestamp(
        server.world.now + timedelta(milliseconds=round_no)
    )
    server.world.put_context(changed)
    added = copy.deepcopy(on_day[0])
    added["context"]["processid"] = added["context"]["processid"][:-6] + f"CRASH{round_no}"
    server.world.put_context(added)


@pytest.mark.slow
def test_a_run_killed_mid_write_keeps_the_partition_and_a_rerun_completes_it(tmp_path: Path) -> None:
    warehouse, home = tmp_path / "warehouse.duckdb", tmp_path / "dagster_home"
    with (
        new_simulator(200, days=1, contexts_per_day=25) as server,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        days = world_days(server)
        env = subprocess_env(server, warehouse, home)
        defs = light_definitions(resources_for(server, warehouse))
        for result in light_full_load(defs, instance, days):
            assert result.success, failure_text(result)
        day = max(days, key=lambda d: sum(1 for c in server.world.contexts() if created_day(c) == d))
        wal = Path(f"{warehouse}.wal")

        for round_no, (point, may_change) in enumerate(CRASH_POINTS.items(), start=1):
            _change_the_day(server, day, round_no)
            before = warehouse_snapshot(warehouse)
            killed = _victim({**env, CRASH_AT_ENV: point}, "--partition", day.isoformat())
            assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr[-3000:])
            assert f"{MARKER} {point}" in killed.stderr
            FIGURES.processes_killed += 1
            wal_left = wal.exists()

            after = warehouse_snapshot(warehouse)  # opening the file recovers what the kill left
            unchanged = {t for t in before if not _committed_earlier(t, may_change)}
            assert {t: after.get(t) for t in unchanged} == {t: before[t] for t in unchanged}, point
            if may_change:  # the killed run got past its earlier steps: they committed
                assert any(after.get(t) != before.get(t) for t in after if _committed_earlier(t, may_change))

            rerun = run_job(defs, instance, LIGHT_CONTEXTS_JOB, partition_key=day.isoformat())
            assert rerun.success, failure_text(rerun)
            comparison = compare_with_simulator(warehouse, server.world.contexts(), [day])
            assert comparison.exact, (point, comparison)
            _assert_no_duplicate_rows(warehouse)
            FIGURES.scenario(f"crash:{point}", wal_left_by_kill=wal_left, partition_rows=comparison.checked)
        # A range run killed on its second day: the first day's event-log merge committed in the
        # killed process and is left in DuckDB's WAL, which reopening the file must replay.
        first_day, second_day = days[-2], days[-1]
        for d in (first_day, second_day):
            _change_the_day(server, d, 5)
        before_days = {d: _event_log_of(warehouse, d) for d in (first_day, second_day)}
        point = f"{EVENT_LOG_BEFORE_COMMIT}#2"
        killed = _victim(
            {**env, CRASH_AT_ENV: point}, "--start", first_day.isoformat(), "--end", second_day.isoformat()
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert f"{MARKER} {point}" in killed.stderr
        FIGURES.processes_killed += 1
        assert wal.exists(), "the first day's commit waits in the WAL"
        assert _event_log_of(warehouse, second_day) == before_days[second_day]
        assert _event_log_of(warehouse, first_day) != before_days[first_day]  # replayed from the WAL
        rerun = run_job(defs, instance, LIGHT_CONTEXTS_JOB, days=[first_day, second_day])
        assert rerun.success, failure_text(rerun)
        comparison = compare_with_simulator(warehouse, server.world.contexts(), [first_day, second_day])
        assert comparison.exact, comparison
        FIGURES.scenario(
            f"crash:{point} (range run)", wal_left_by_kill=True, partition_rows=comparison.checked
        )

        new_table = quote("execution_context$context&crash.round-4$lines")
        conn = duckdb.connect(str(warehouse), read_only=True)
        try:
            assert conn.execute(f"SELECT count(*) FROM {new_table}").fetchone() == (3,)
        finally:
            conn.close()


def _event_log_of(warehouse: Path, day: date) -> list[tuple[object, ...]]:
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        return conn.execute(
            "SELECT * FROM event_log WHERE CAST(created_at AS DATE) = ? ORDER BY ALL", [day]
        ).fetchall()
    finally:
        conn.close()


def _create_dagster_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "oe_assets" / "orchestration" / "dagster_instance.yaml", home / "dagster.yaml")
    dg.DagsterInstance.from_config(str(home)).dispose()


def _assert_no_duplicate_rows(warehouse: Path) -> None:
    """Every child row once (process id, ``_oe_row_id``), every context once, every event-log instance once."""
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'execution_context$%'"
            ).fetchall()
        ]
        keys = {t: ("context$processid", "_oe_row_id") for t in tables}
        keys.update({"execution_context": ("context$processid",), "event_log": ("instance_id",)})
        keys["raw_process_contexts"] = ("process_id",)
        for table, key in keys.items():
            columns = ", ".join(quote(k) for k in key)
            row = conn.execute(
                f"SELECT count(*) - count(DISTINCT ({columns})) FROM {quote(table)}"
            ).fetchone()
            assert row == (0,), f"duplicate {key} in {table}"
    finally:
        conn.close()


@pytest.mark.slow
def test_a_run_killed_while_it_stages_leaves_a_folder_that_the_next_run_removes(tmp_path: Path) -> None:
    """The stage (the API's pages on disk, beside the warehouse) of a run killed with SIGKILL is
    removed by the next run that stages there; a stage a live run still writes is left alone."""
    warehouse, home = tmp_path / "warehouse.duckdb", tmp_path / "dagster_home"
    with (
        new_simulator(201, days=1, contexts_per_day=25) as server,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        day = max(world_days(server))
        env = subprocess_env(server, warehouse, home)
        killed = _victim({**env, CRASH_AT_ENV: RAW_MID_STAGE}, "--partition", day.isoformat())
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        abandoned = sorted(tmp_path.glob(f"{STAGE_PREFIX}*"))
        assert len(abandoned) == 1
        assert (abandoned[0] / "contexts.parquet").exists()
        with stage_folder(tmp_path) as live:  # another run, staging right now
            defs = light_definitions(resources_for(server, warehouse))
            for rerun in light_full_load(defs, instance, [day]):  # the catalog, then the day
                assert rerun.success, failure_text(rerun)
            assert sorted(tmp_path.glob(f"{STAGE_PREFIX}*")) == [live]
        assert compare_with_simulator(warehouse, server.world.contexts(), [day]).exact
    assert sorted(tmp_path.glob(f"{STAGE_PREFIX}*")) == []


def test_runs_started_together_all_finish_with_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    """The sensor's runs (different partitions), one of them twice, and a backfill beside them."""
    warehouse, home = tmp_path / "warehouse.duckdb", tmp_path / "dagster_home"
    with new_simulator(210, days=1, contexts_per_day=15) as server:
        days = world_days(server)
        defs = light_definitions(resources_for(server, warehouse))
        with dg.DagsterInstance.ephemeral() as instance:
            catalog = run_job(defs, instance, LIGHT_CATALOG_JOB)
            assert catalog.success, failure_text(catalog)
            first = tick(defs, instance, None)  # asks for the catalog (landed above)
            server.advance(12 * 3600)
            sensor = tick(defs, instance, first.cursor)
        requests = list(sensor.run_requests or [])
        assert len({r.partition_key for r in requests}) >= 2, "runs of different partitions"
        env = subprocess_env(server, warehouse, home)
        _create_dagster_home(home)  # as a deployment has one: several processes must not all create it
        commands = []
        for request in requests:
            assert request.partition_key is not None
            tags = [f"--tag={k}={v}" for k, v in request.tags.items()]
            commands.append(["--partition", request.partition_key, *tags])
        commands.append(commands[-1])  # the same partition twice
        commands.append(["--start", days[0].isoformat(), "--end", days[-1].isoformat()])  # a backfill
        procs = [
            subprocess.Popen(
                victim_command(*args),
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in commands
        ]
        outcomes = [p.communicate(timeout=TIMEOUT) for p in procs]
        FIGURES.runs += len(procs)
        for args, proc, (_, err) in zip(commands, procs, outcomes, strict=True):
            assert proc.returncode == 0, (args, err[-3000:])
        comparison = compare_with_simulator(warehouse, server.world.contexts(), days)
        assert comparison.exact, comparison
        _assert_no_duplicate_rows(warehouse)
    FIGURES.scenario("concurrent_runs", runs=len(commands), contexts=comparison.checked)
