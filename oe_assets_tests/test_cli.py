"""The `oe-assets` command as a user runs it: a real process, a real simulator, a real DAGSTER_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from oe_assets.simulator import SimulatorServer

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oe_assets.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OE_")}
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    env.update(extra)
    return env


def test_demo_materializes_everything_and_its_runs_show_in_dagster_home(tmp_path: Path) -> None:
    warehouse = tmp_path / "demo.duckdb"
    env = _clean_env(tmp_path)
    result = _run(["demo", "--days", "2", "--contexts-per-day", "15", "--warehouse", str(warehouse)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "execution_context" in out
    assert "event_log" in out
    assert "Checks:" in out
    assert " 0 failed" in out
    assert "make ui" in out
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        contexts = conn.execute("SELECT count(*) FROM execution_context").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM event_log").fetchone()[0]
    finally:
        conn.close()
    assert contexts > 0
    assert contexts == events
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()
    instance = dg.DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    try:
        runs = instance.get_runs()
        assert {r.job_name for r in runs} == {"refresh_catalog", "refresh_process_contexts"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    finally:
        instance.dispose()


def test_materialize_with_wrong_credentials_fails_in_one_line_naming_the_setting(tmp_path: Path) -> None:
    with SimulatorServer(seed=3, days=1, contexts_per_day=5) as server:
        env = _clean_env(
            tmp_path,
            OE_API_URL=server.url,
            OE_CLIENT_ID=server.client_id,
            OE_CLIENT_SECRET="not-the-secret-4711",
            OE_WAREHOUSE=str(tmp_path / "w.duckdb"),
        )
        result = _run(["materialize", "--start", server.world.now.date().isoformat()], env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("oe-assets materialize failed")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "OE_CLIENT_ID" in lines[0]
    assert "OE_CLIENT_SECRET" in lines[0]
    assert "not-the-secret-4711" not in result.stdout + result.stderr


def test_materialize_with_an_unknown_digital_process_names_the_setting(tmp_path: Path) -> None:
    with SimulatorServer(seed=3, days=1, contexts_per_day=5) as server:
        env = _clean_env(
            tmp_path,
            OE_API_URL=server.url,
            OE_CLIENT_ID=server.client_id,
            OE_CLIENT_SECRET=server.client_secret,
            OE_DIGITAL_PROCESS_IDS="01NOSUCHPROCESS000000000000",
            OE_WAREHOUSE=str(tmp_path / "w.duckdb"),
        )
        result = _run(["materialize", "--start", server.world.now.date().isoformat()], env)
    assert result.returncode == 1
    assert "OE_DIGITAL_PROCESS_IDS" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_materialize_rejects_a_bad_date_range_in_one_line(tmp_path: Path) -> None:
    result = _run(["materialize", "--start", "2025-03-05", "--end", "2025-03-01"], _clean_env(tmp_path))
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "oe-assets materialize failed: --end 2025-03-01 is before --start 2025-03-05"
    )
