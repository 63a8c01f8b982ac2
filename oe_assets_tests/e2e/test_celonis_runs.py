"""Celonis delivery through the CLI, as a user runs it: the CELONIS_* variables, a run killed while
Celonis executes its jobs and the run after it, and no secret in any file or output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg

from oe_assets.celonis_simulator import CelonisSimulatorServer
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.celonis_support import POOL_ID, differences, pushing_definitions, stand_in
from oe_assets_tests.support.reliability_support import morning, subprocess_env

CELONIS_SECRET = "celonis-S3cret-that-must-never-leak-41d2"


def _env(oe: SimulatorServer, celonis: CelonisSimulatorServer, warehouse: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in subprocess_env(oe, warehouse, home).items() if not k.startswith("CELONIS_")}
    env.update(
        OE_START_DATE=(oe.world.now.date() - timedelta(days=3)).isoformat(),
        CELONIS_URL=celonis.url,
        CELONIS_POOL_ID=POOL_ID,
        CELONIS_CLIENT_ID=celonis.client_id,
        CELONIS_CLIENT_SECRET=celonis.client_secret,
    )
    return env


def _materialize(oe: SimulatorServer, env: dict[str, str]) -> subprocess.Popen[str]:
    today = oe.world.now.date()
    command = [sys.executable, "-m", "oe_assets.cli", "materialize"]
    args = ["--start", (today - timedelta(days=3)).isoformat(), "--end", today.isoformat()]
    return subprocess.Popen(
        [*command, *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _after_queued_jobs_ran(celonis: CelonisSimulatorServer) -> int:
    """Celonis runs what the killed run submitted anyway: wait until its executions stop growing."""
    count, stable_since = len(celonis.executions), time.monotonic()
    while time.monotonic() - stable_since < 2.0:
        time.sleep(0.1)
        if len(celonis.executions) != count:
            count, stable_since = len(celonis.executions), time.monotonic()
    return count


def test_a_run_killed_while_celonis_runs_its_jobs_is_completed_by_the_next_without_duplicates(
    tmp_path: Path,
) -> None:
    warehouse, home = tmp_path / "w" / "oe.duckdb", tmp_path / "home"
    with (
        SimulatorServer(seed=31, days=2, contexts_per_day=10, now=morning()) as oe,
        stand_in(tmp_path, job_delay=0.4) as celonis,
    ):
        victim = _materialize(oe, _env(oe, celonis, warehouse, home))
        deadline = time.monotonic() + 120
        while len(celonis.executions) < 8 and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victim.poll() is None, (
            "the run ended before it could be killed: " + victim.communicate()[1][-2000:]
        )
        os.killpg(victim.pid, signal.SIGKILL)  # mid-push: some jobs done, others queued, nothing confirmed
        victim.wait()
        killed_at = _after_queued_jobs_ran(celonis)

        first = oe.world.now.date() - timedelta(days=3)
        with dg.DagsterInstance.ephemeral() as instance:
            defs = pushing_definitions(oe, celonis, warehouse, first)
            report = run_whole_graph(defs, first, oe.world.now.date(), instance=instance)

        assert report.success, report.failure
        assert not list(differences(celonis, warehouse))
        after = [target for _, target, _, _ in celonis.executions[killed_at:]]
        assert len(after) == len(set(after)), "the re-run pushed each table at most once"


def test_a_cli_run_with_celonis_leaves_no_secret_in_any_file_or_output(tmp_path: Path) -> None:
    warehouse, home = tmp_path / "w" / "oe.duckdb", tmp_path / "home"
    with (
        SimulatorServer(seed=32, days=1, contexts_per_day=8, now=morning()) as oe,
        stand_in(tmp_path, client_secret=CELONIS_SECRET) as celonis,
    ):
        run = _materialize(oe, _env(oe, celonis, warehouse, home))
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        tokens = list(celonis.tokens._tokens)  # every access token the stand-in issued
    assert tokens, "the run authenticated with the OAuth client"
    needles = [CELONIS_SECRET, *tokens]
    leaks = [
        f"{path}: {n[:8]}…"
        for path in tmp_path.rglob("*")
        if path.is_file()
        for n in needles
        if n.encode() in path.read_bytes()
    ]
    leaks += [f"output: {n[:8]}…" for n in needles if n in out + err]
    assert not leaks, leaks
    assert "0 failed" in out
