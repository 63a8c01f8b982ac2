"""The `oe-assets` command as a user runs it: a real process, a real simulator, a real DAGSTER_HOME."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.cli_support import clean_env, oe_assets, simulator_env


def test_demo_materializes_everything_and_its_runs_show_in_dagster_home(tmp_path: Path) -> None:
    warehouse = tmp_path / "demo.duckdb"
    env = clean_env(tmp_path)
    result = oe_assets(
        ["demo", "--days", "2", "--contexts-per-day", "15", "--warehouse", str(warehouse)], env, tmp_path
    )
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
        env = simulator_env(tmp_path, server, OE_CLIENT_SECRET="not-the-secret-4711")
        result = oe_assets(["materialize", "--start", server.world.now.date().isoformat()], env, tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("oe-assets materialize failed")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "OE_CLIENT_ID" in lines[0]
    assert "OE_CLIENT_SECRET" in lines[0]
    assert "not-the-secret-4711" not in result.stdout + result.stderr


def test_materialize_with_an_unknown_digital_process_names_the_setting(tmp_path: Path) -> None:
    with SimulatorServer(seed=3, days=1, contexts_per_day=5) as server:
        env = simulator_env(tmp_path, server, OE_DIGITAL_PROCESS_IDS="01NOSUCHPROCESS000000000000")
        result = oe_assets(["materialize", "--start", server.world.now.date().isoformat()], env, tmp_path)
    assert result.returncode == 1
    assert "OE_DIGITAL_PROCESS_IDS" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_materialize_rejects_a_bad_date_range_in_one_line(tmp_path: Path) -> None:
    result = oe_assets(
        ["materialize", "--start", "2025-03-05", "--end", "2025-03-01"], clean_env(tmp_path), tmp_path
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "oe-assets materialize failed: --end 2025-03-01 is before --start 2025-03-05"
    )


def test_materialize_without_credentials_says_so_in_one_sentence(tmp_path: Path) -> None:
    today = datetime.now(UTC).date().isoformat()
    both = oe_assets(["materialize", "--start", today], clean_env(tmp_path), tmp_path)
    assert both.returncode == 1
    assert both.stderr == (
        "oe-assets materialize failed: OE_CLIENT_ID and OE_CLIENT_SECRET are not set: export the OE API's "
        "client credentials (for the simulator, `make simulator` prints them; see the README, section "
        "Configuration)\n"
    )
    assert both.stdout == ""
    one = oe_assets(["materialize", "--start", today], clean_env(tmp_path, OE_CLIENT_ID="someone"), tmp_path)
    assert one.stderr.startswith("oe-assets materialize failed: OE_CLIENT_SECRET is not set: ")
    debug = oe_assets(["--debug", "materialize", "--start", today], clean_env(tmp_path), tmp_path)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.endswith(both.stderr)


def test_materialize_names_the_option_and_the_setting_of_a_day_it_refuses(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    env = clean_env(tmp_path, OE_START_DATE="2025-06-01")
    cases = {
        ("--start", "2026/12/01"): "--start '2026/12/01' is not a date: use YYYY-MM-DD",
        ("--start", "2025-05-31"): (
            "--start 2025-05-31 is before OE_START_DATE=2025-06-01, the first partition; "
            "set OE_START_DATE earlier to land it"
        ),
        ("--start", str(today + timedelta(days=1))): (
            f"--start {today + timedelta(days=1)} is after today ({today}, UTC): it is not a partition yet"
        ),
    }
    for args, sentence in cases.items():
        result = oe_assets(["materialize", *args], env, tmp_path)
        assert (result.returncode, result.stderr) == (1, f"oe-assets materialize failed: {sentence}\n"), args
        debug = oe_assets(["--debug", "materialize", *args], env, tmp_path)
        assert "Traceback (most recent call last):" in debug.stderr, args


def test_a_failed_run_leaves_no_lock_file_and_debug_shows_dagsters_error(tmp_path: Path) -> None:
    folder = tmp_path / "warehouse"
    with SimulatorServer(seed=3, days=1, contexts_per_day=5) as server:
        env = simulator_env(
            tmp_path, server, OE_CLIENT_SECRET="not-the-secret-4711", OE_WAREHOUSE=str(folder / "w.duckdb")
        )
        day = server.world.now.date().isoformat()
        plain = oe_assets(["materialize", "--start", day], env, tmp_path)
        assert plain.returncode == 1
        assert sorted(p.name for p in folder.glob("*.lock")) == []
        debug = oe_assets(["--debug", "materialize", "--start", day], env, tmp_path)
    assert debug.returncode == 1
    assert "Traceback" not in plain.stderr
    assert "Stack Trace" in debug.stderr  # Dagster's whole error, with the stack of each cause
    assert debug.stderr.endswith(plain.stderr)
    assert "not-the-secret-4711" not in debug.stdout + debug.stderr


def test_warehouse_urls_are_refused_where_they_cannot_work_in_one_sentence_without_the_password(
    tmp_path: Path,
) -> None:
    """A PostgreSQL URL is a warehouse for the graph (OE_WAREHOUSE), but not for the commands that
    read a DuckDB file; any other URL is no warehouse: DuckDB would create a file named after it
    and the run would succeed, writing somewhere no one looks. Every message names the setting and
    never the password."""
    url = "postgresql://oe:hunter2-4711@127.0.0.1:1/oe"
    env = clean_env(tmp_path, OE_WAREHOUSE=url)
    credentials = {"OE_CLIENT_ID": "id", "OE_CLIENT_SECRET": "secret-4711"}
    materialize = oe_assets(["materialize", "--start", "2025-01-01"], {**env, **credentials}, tmp_path)
    assert (materialize.returncode, materialize.stderr) == (
        1, "oe-assets materialize failed: OE_WAREHOUSE postgresql://oe@127.0.0.1:1/oe: cannot connect: Connection refused\n",
    )  # fmt: skip
    sql = oe_assets(["sql", "SELECT 1"], env, tmp_path)
    assert sql.returncode == 2
    assert sql.stderr.endswith(
        "oe-assets sql: error: argument --warehouse: OE_WAREHOUSE is a PostgreSQL database "
        "(postgresql://oe@127.0.0.1:1/oe), and oe-assets sql reads a DuckDB warehouse: give it a DuckDB file "
        "with --warehouse, or query PostgreSQL with psql.\n"
    )
    flag = oe_assets(
        ["export", "xes", "--out", "x.xes", "--warehouse", "s3://bucket/w.duckdb"],
        clean_env(tmp_path),
        tmp_path,
    )
    assert flag.returncode == 2
    assert "--warehouse is a URL (s3:…), and a warehouse is a DuckDB file path such as" in flag.stderr
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    validate = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m", "oe_assets.definitions"],
        cwd=tmp_path, env=clean_env(tmp_path, OE_WAREHOUSE="md:my_db"), capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert validate.returncode != 0
    assert (
        "OE_WAREHOUSE is a URL (md:…), and a warehouse is a DuckDB file path"
        in validate.stdout + validate.stderr
    )
    postgres = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m", "oe_assets.definitions"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert postgres.returncode == 0, postgres.stdout + postgres.stderr  # a PostgreSQL warehouse loads
    for result in (materialize, sql, flag, validate, postgres):
        assert "hunter2-4711" not in result.stdout + result.stderr
    assert not (tmp_path / "postgresql:").exists()
    assert not (tmp_path / "md:my_db").exists()
