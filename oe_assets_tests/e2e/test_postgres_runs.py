"""Runs on a PostgreSQL warehouse as separate processes: different days write at the same time,
the same day twice waits and lands once, a run killed mid-write leaves its partition as it was,
a lost connection too, and a server that cannot be used is one sentence naming OE_WAREHOUSE.

The verification reads what PostgreSQL holds through a DuckDB copy of it under the model's names
(:func:`~oe_assets_tests.support.twin.postgres_as_duckdb`), so the same checks as on DuckDB apply
(:func:`~oe_assets_tests.support.reliability_support.compare_with_simulator`).
"""

from __future__ import annotations

import copy
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oe_assets.core.timestamps import format_oe_timestamp
from oe_assets.orchestration.resources import WarehouseResource
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.crash_points import (
    CRASH_AT_ENV,
    EVENT_LOG_BEFORE_COMMIT,
    MARKER,
    PAUSE_AT_ENV,
    PAUSE_MARKER,
    PAUSE_SECONDS_ENV,
    RAW_BEFORE_COMMIT,
    after_delete,
    after_first_batch,
)
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.reliability_support import (
    LIGHT_CATALOG_JOB,
    LIGHT_CONTEXTS_JOB,
    ROOT,
    api_resource,
    compare_with_simulator,
    failure_text,
    light_definitions,
    light_full_load,
    new_simulator,
    run_job,
    subprocess_env,
    victim_command,
    world_days,
)
from oe_assets_tests.support.twin import connect, postgres_as_duckdb

TIMEOUT = 240
PAUSE_SECONDS = 25


@dataclass(frozen=True)
class PostgresWarehouse:
    """A database of its own on the test server, as a run's settings name it."""

    server: PostgresServer
    database: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.server.user}@{self.server.host}:{self.server.port}/{self.database}"

    def resources(self, simulator: SimulatorServer) -> dict[str, Any]:
        warehouse = WarehouseResource(database=self.url, postgres_password=self.server.password)
        return {"oe_api": api_resource(simulator), "warehouse": warehouse}

    def env(self, simulator: SimulatorServer, home: Path, **extra: str) -> dict[str, str]:
        return subprocess_env(simulator, self.url, home, PGPASSWORD=self.server.password, **extra)

    def as_duckdb(self, path: Path) -> Path:
        with connect(self.server, self.database) as pg:
            return postgres_as_duckdb(pg, path)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.server.query(self.database, sql)


@pytest.fixture
def pg_warehouse(postgres_server: PostgresServer) -> PostgresWarehouse:
    return PostgresWarehouse(
        postgres_server, postgres_server.create_database(f"runs_{uuid.uuid4().hex[:10]}")
    )


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        victim_command(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_marker(proc: subprocess.Popen[str], marker: str) -> None:
    """Reads the process's stderr until ``marker`` (the process is then held at its pause point)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if marker in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"the run ended ({proc.returncode}) before {marker}")
    raise AssertionError(f"no {marker} within {TIMEOUT} s")


def _busiest_days(server: SimulatorServer) -> list[date]:
    days = world_days(server)
    return sorted(days, key=lambda d: -sum(1 for c in server.world.contexts() if created_day(c) == d))


@pytest.mark.slow
def test_different_days_write_at_once_and_the_same_day_twice_waits_and_lands_once(
    pg_warehouse: PostgresWarehouse, tmp_path: Path
) -> None:
    """Run A is held inside its publishing transaction for day 1 (rows deleted, new ones not yet
    in). Meanwhile run B writes day 2 to the end, and run C for day 1 waits for A: it ends after A."""
    with (
        new_simulator(220, days=1, contexts_per_day=20) as server,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        defs = light_definitions(pg_warehouse.resources(server))
        assert run_job(defs, instance, LIGHT_CATALOG_JOB).success
        day_a, day_b = _busiest_days(server)[:2]
        home = tmp_path / "dagster_home"
        env = pg_warehouse.env(server, home)
        point = after_delete("execution_context")
        held = _start(
            {**env, PAUSE_AT_ENV: point, PAUSE_SECONDS_ENV: str(PAUSE_SECONDS)},
            "--partition",
            day_a.isoformat(),
        )
        _wait_for_marker(held, f"{PAUSE_MARKER} {point}")
        paused_at = time.monotonic()
        other_day = subprocess.run(victim_command("--partition", day_b.isoformat()), cwd=ROOT, env=env,
                                   capture_output=True, text=True, timeout=TIMEOUT, check=False)  # fmt: skip
        other_day_done = time.monotonic() - paused_at
        same_day = _start(env, "--partition", day_a.isoformat())
        assert held.wait(timeout=TIMEOUT) == 0, held.communicate()[1][-3000:]
        held_done = time.monotonic() - paused_at
        assert same_day.wait(timeout=TIMEOUT) == 0, same_day.communicate()[1][-3000:]
        same_day_done = time.monotonic() - paused_at
    assert other_day.returncode == 0, other_day.stderr[-3000:]
    assert other_day_done < PAUSE_SECONDS, "day 2 did not wait for day 1's open transaction"
    assert same_day_done > held_done >= PAUSE_SECONDS, "the same day's second run waited for the first"
    comparison = compare_with_simulator(
        pg_warehouse.as_duckdb(tmp_path / "seen.duckdb"), server.world.contexts(), [day_a, day_b]
    )
    assert comparison.exact, comparison


KILLED_WRITES = {
    RAW_BEFORE_COMMIT: "SELECT count(*), max(loaded_at) FROM raw_process_contexts WHERE partition_date = '{day}'",
    after_delete("execution_context"): "SELECT count(*), max(_oe_loaded_at) FROM execution_context WHERE _oe_partition = '{day}'",
    after_first_batch("execution_context"): "SELECT count(*), max(_oe_loaded_at) FROM execution_context WHERE _oe_partition = '{day}'",
    EVENT_LOG_BEFORE_COMMIT: "SELECT count(*), max(last_modified) FROM event_log WHERE created_at::date = '{day}'",
}  # fmt: skip
"""Each point a run is killed at, and what the write it stopped holds of the day."""


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILLED_WRITES))
def test_a_run_killed_mid_write_keeps_the_partition_and_a_rerun_completes_it(
    pg_warehouse: PostgresWarehouse, tmp_path: Path, point: str
) -> None:
    with (
        new_simulator(230, days=1, contexts_per_day=20) as server,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        defs = light_definitions(pg_warehouse.resources(server))
        for result in light_full_load(defs, instance, world_days(server)):
            assert result.success, failure_text(result)
        day = _busiest_days(server)[0]
        before = pg_warehouse.query(KILLED_WRITES[point].format(day=day))
        _change_a_context(server, day)
        killed = subprocess.run(victim_command("--partition", day.isoformat()), cwd=ROOT,
                                env=pg_warehouse.env(server, tmp_path / "home", **{CRASH_AT_ENV: point}),
                                capture_output=True, text=True, timeout=TIMEOUT, check=False)  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert f"{MARKER} {point}" in killed.stderr
        after = pg_warehouse.query(KILLED_WRITES[point].format(day=day))
        assert after == before  # the kill rolled the write back: the day is as it was
        rerun = run_job(defs, instance, LIGHT_CONTEXTS_JOB, partition_key=day.isoformat())
        assert rerun.success, failure_text(rerun)
        assert pg_warehouse.query(KILLED_WRITES[point].format(day=day)) != before  # what the kill stopped
    comparison = compare_with_simulator(
        pg_warehouse.as_duckdb(tmp_path / "seen.duckdb"), server.world.contexts(), [day]
    )
    assert comparison.exact, comparison


def _change_a_context(server: SimulatorServer, day: date) -> None:
    """A context of ``day`` gains a key: the re-run has something new to write."""
    changed = copy.deepcopy(next(c for c in server.world.contexts() if created_day(c) == day))
    changed["context"]["killed.round"] = {"seen": True}
    changed["metadata"]["updatedAt"] = format_oe_timestamp(server.world.now)
    server.world.put_context(changed)


def test_a_server_that_cannot_be_used_is_one_sentence_naming_oe_warehouse(
    pg_warehouse: PostgresWarehouse, tmp_path: Path
) -> None:
    server = pg_warehouse.server
    with server.connect(pg_warehouse.database) as cursor:
        cursor.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw-4711'")
    cases = {
        f"postgresql://{server.user}@{server.host}:{server.port}/{pg_warehouse.database}|wrong-pw-4711":
            "cannot connect: password authentication failed",
        f"postgresql://{server.user}@{server.host}:{server.port}/no_such_db|{server.password}":
            'cannot connect: database "no_such_db" does not exist',
        f"postgresql://reader@{server.host}:{server.port}/{pg_warehouse.database}|reader-pw-4711":
            "user reader lacks a privilege the write needs: permission denied for schema public",
        "postgresql://x@127.0.0.1:1/db|wrong-pw-4711": "cannot connect: Connection refused",
    }  # fmt: skip
    with (
        new_simulator(240, days=1, contexts_per_day=3) as simulator,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        for case, expected in cases.items():
            url, password = case.split("|")
            warehouse = WarehouseResource(database=url, postgres_password=password)
            defs = light_definitions({"oe_api": api_resource(simulator), "warehouse": warehouse})
            result = run_job(defs, instance, LIGHT_CATALOG_JOB)
            assert not result.success
            text = failure_text(result)
            shown = url.split("|")[0]
            assert f"OE_WAREHOUSE {shown}: {expected}" in text, text
            assert password not in text
