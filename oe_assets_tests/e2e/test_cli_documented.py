"""The README's CLI block, line by line, run as a user runs it: every line answers `--help`, and
every option it documents is run for real here (real processes, the simulator over HTTP, DuckDB on
disk, a real `dagster dev` and its GraphQL)."""

from __future__ import annotations

import csv
import io
import re
import signal
import socket
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.cli_support import (
    ROOT,
    Running,
    clean_env,
    oe_assets,
    port_listens,
    simulator_env,
    start,
    stop_and_wait,
    wait_until_served,
)
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.ui_support import LOCATION, WORKSPACE_QUERY, free_port

README = ROOT / "README.md"
DAYS = 2
DEMO = ["demo", "--days", str(DAYS), "--contexts-per-day", "12", "--warehouse", "demo.duckdb"]
LIVE = ["demo", "--live", "--clock-rate", "600", "--days", "1", "--contexts-per-day", "5"]
MATERIALIZE = ["materialize", "--start", "{first}", "--end", "{last}"]
PRUNE = ["prune", "--deleted", "--before", "{today}", "--dry-run", "--warehouse", "demo.duckdb"]
SQL = [
    "sql",
    "SELECT status, count(*) AS n FROM execution_context GROUP BY status",
    "--warehouse",
    "demo.duckdb",
]
SQL_CSV = ["sql", "SELECT * FROM event_log ORDER BY instance_id", "--csv", "--warehouse", "demo.duckdb"]
SIMULATOR = ["simulator", "--port", "{port}", "--seed", "5", "--days", "1", "--contexts-per-day", "4"]
EXPORT = ["export", "ocel", "--out", "contexts.jsonocel", "--warehouse", "demo.duckdb"]
CELONIS_SIMULATOR = ["celonis-simulator", "--port", "{port}", "--pool-db", "pool.duckdb"]
WAREHOUSE_COPY = ["warehouse", "copy", "--to", "{url}", "--schema", "oe", "--warehouse", "demo.duckdb"]
SCHEMA = ["schema", "infer", "--warehouse", "demo.duckdb", "--out", "tables.json"]
MODEL = ["model", "export", "--out", "model.json"]
UI = ["ui", "--port", "{port}"]
BENCH = ["bench", "--contexts", "200", "--scale", "", "--skip-dlt", "--skip-incremental"]
BENCH_REST = [
    "--skip-extraction",
    "--skip-probe",
    "--skip-writer-alone",
    "--skip-push",
    "--skip-exports",
    "--out",
    "b.json",
    "--work-dir",
    "b",
]
DEBUG = ["--debug", "sql", "SELECT 1", "--warehouse", "nowhere.duckdb"]
EXERCISED = [
    DEMO,
    LIVE,
    MATERIALIZE,
    PRUNE,
    SQL,
    SQL_CSV,
    EXPORT,
    WAREHOUSE_COPY,
    SIMULATOR,
    CELONIS_SIMULATOR,
    SCHEMA,
    MODEL,
    UI,
    BENCH,
    DEBUG,
]


@dataclass(frozen=True)
class CliLine:
    words: list[str]  # the command's words: ["schema", "infer"]; [] for the global options' line
    options: list[str]  # the options the line documents


def readme_cli_lines() -> list[CliLine]:
    """Each `oe-assets ...` line of the README's section "The CLI"."""
    section = README.read_text().split("## The CLI", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    lines = []
    for line in block.splitlines():
        if not line.startswith("oe-assets"):
            continue
        usage = re.split(r"\s{2,}", line.strip())[0]
        tokens = usage.split()[1:]
        words = []
        for token in tokens:
            if not re.fullmatch(r"[a-z][a-z-]*", token):
                break
            words.append(token)
        lines.append(CliLine(words, re.findall(r"--[a-z][a-z-]*", usage)))
    return lines


def _filled(args: list[str], **values: object) -> list[str]:
    return [arg.format(**values) for arg in args]


def test_the_readme_documents_every_command() -> None:
    lines = readme_cli_lines()
    commands = {line.words[0] for line in lines if line.words}
    assert commands == {
        "demo",
        "materialize",
        "prune",
        "sql",
        "export",
        "warehouse",
        "simulator",
        "celonis-simulator",
        "schema",
        "model",
        "ui",
        "bench",
    }
    assert any(not line.words and "--debug" in line.options for line in lines)


def test_every_readme_cli_line_answers_help_with_its_options(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    for line in readme_cli_lines():
        result = oe_assets([*line.words, "--help"], env, tmp_path, timeout=60)
        assert result.returncode == 0, (line, result.stderr)
        assert result.stderr == "", line
        assert result.stdout.startswith("usage: oe-assets"), line
        for option in line.options:
            assert option in result.stdout, (line, option)


def test_every_documented_option_is_run_by_this_module() -> None:
    for line in readme_cli_lines():
        if line.words:
            runs = [args for args in EXERCISED if args[: len(line.words)] == line.words]
        else:  # the global options' line
            runs = [args for args in EXERCISED if args[0].startswith("--")]
        for option in line.options:
            assert any(option in args for args in runs), (line, option)


# --------------------------------------------------------------------------------- the demo itself


@dataclass
class Demo:
    folder: Path
    env: dict[str, str]
    stdout: str
    first: date
    today: date


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    folder = tmp_path_factory.mktemp("demo")
    (folder / ".env").write_text("# mine\nMY_SETTING=kept\nOE_START_DATE=2025-01-01\n")
    env = clean_env(folder)
    result = oe_assets(DEMO, env, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    today = datetime.now(UTC).date()
    return Demo(folder, env, result.stdout, today - timedelta(days=DAYS), today)


_LISTED = re.compile(r"^  (\S+)\s+(\d+)\s+(\d+|-)$", re.MULTILINE)
"""A line of the demo's listing: table, warehouse rows, pool rows (`-`: not delivered)."""


def _table_counts(stdout: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in _LISTED.finditer(stdout)}


def _pool_counts(stdout: str) -> dict[str, int]:
    return {m[1]: int(m[3]) for m in _LISTED.finditer(stdout) if m[3] != "-"}


def test_the_demo_says_which_window_it_loaded_and_records_its_first_day_in_dot_env(demo: Demo) -> None:
    window = f"created {demo.first} 00:00 .. {demo.today} 00:00 UTC"
    assert window in demo.stdout
    assert f"partitions {demo.first} .. {demo.today}" in demo.stdout
    assert (demo.folder / ".env").read_text() == f"# mine\nMY_SETTING=kept\nOE_START_DATE={demo.first}\n"
    assert "oe-assets sql" in demo.stdout.split("Checks:")[1]  # where the demo ends, how to query


def test_the_demo_is_repeatable_the_same_day(demo: Demo, tmp_path: Path) -> None:
    again = oe_assets(DEMO, clean_env(tmp_path), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    counts = _table_counts(demo.stdout)
    assert counts["execution_context"] > 0
    assert _table_counts(again.stdout) == counts
    ids, days = [], []
    for folder in (demo.folder, tmp_path):
        conn = duckdb.connect(str(folder / "demo.duckdb"), read_only=True)
        try:
            ids.append(conn.execute("SELECT instance_id, status FROM event_log ORDER BY 1").fetchall())
            created = "SELECT DISTINCT CAST(created_at AS DATE) FROM event_log ORDER BY 1"
            days.append([row[0] for row in conn.execute(created).fetchall()])
        finally:
            conn.close()
    assert ids[0] == ids[1]
    # whole days: every context was created on one of the demo's days before today, none today
    assert days[0] == [demo.first + timedelta(days=i) for i in range(DAYS)]


def test_the_demos_table_listing_keeps_its_columns_on_long_names(demo: Demo) -> None:
    rows = [line for line in demo.stdout.splitlines() if _LISTED.fullmatch(line)]
    assert max(len(line.split()[0]) for line in rows) > 70  # the Celonis names are long
    assert len({len(line) for line in rows}) == 1


def test_the_demo_shows_the_celonis_pool_holding_every_table_it_pushed(demo: Demo) -> None:
    pool, warehouse = _pool_counts(demo.stdout), _table_counts(demo.stdout)
    assert {"execution_context", "event_log", "activity_log", "accounts"} <= set(pool)
    assert all(pool[name] == warehouse[name] for name in pool), pool
    assert "_oe_celonis_rows" not in pool
    assert "raw_process_contexts" not in pool
    assert (demo.folder / "celonis_pool.duckdb").exists()


# ---------------------------------------------------------------------- the commands on its data


def test_prune_before_dry_run_on_the_demos_warehouse(demo: Demo) -> None:
    result = oe_assets(_filled(PRUNE, today=demo.today), demo.env, demo.folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Dry run: would remove 0 contexts marked deleted before {demo.today}")


def test_sql_prints_a_table(demo: Demo) -> None:
    result = oe_assets(SQL, demo.env, demo.folder, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"│\s+status\s+│\s+n\s+│", result.stdout), result.stdout
    assert re.search(r"│ finished\s+│\s+\d+ │", result.stdout), result.stdout


def test_export_writes_the_demos_contexts_as_ocel(demo: Demo) -> None:
    result = oe_assets(EXPORT, demo.env, demo.folder, timeout=120)
    assert result.returncode == 0, result.stderr
    events = _table_counts(demo.stdout)["activity_log"]
    assert result.stdout.startswith("Wrote contexts.jsonocel (")
    assert f"{events} events" in result.stdout
    assert (demo.folder / "contexts.jsonocel").stat().st_size > 1000


def test_warehouse_copy_puts_every_table_of_the_demo_into_postgresql(
    demo: Demo, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("demo_copy")
    url = f"postgresql://{postgres_server.user}:{postgres_server.password}@127.0.0.1:{postgres_server.port}/{database}"
    result = oe_assets(_filled(WAREHOUSE_COPY, url=url), demo.env, demo.folder, timeout=120)
    assert result.returncode == 0, result.stderr
    shown = url.replace(f":{postgres_server.password}@", "@")
    with duckdb.connect(str(demo.folder / "demo.duckdb"), read_only=True) as conn:
        tables = len(conn.execute("SHOW TABLES").fetchall())
    assert result.stdout.startswith(f"Copied {tables} tables (")
    assert f"from demo.duckdb into schema oe of {shown}" in result.stdout
    assert postgres_server.password not in result.stdout + result.stderr
    counts = _table_counts(demo.stdout)
    assert postgres_server.query(database, "SELECT count(*) FROM oe.execution_context") == [
        (counts["execution_context"],)
    ]


def test_sql_csv_prints_every_row(demo: Demo) -> None:
    result = oe_assets(SQL_CSV, demo.env, demo.folder, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][:5] == ["execution_template_name", "instance_id", "created_at", "last_modified", "status"]
    assert len(rows) - 1 == _table_counts(demo.stdout)["event_log"]


def test_sql_is_read_only(demo: Demo) -> None:
    before = _table_counts(demo.stdout)["execution_context"]
    result = oe_assets(
        ["sql", "DELETE FROM execution_context", "--warehouse", "demo.duckdb"], demo.env, demo.folder
    )
    assert result.returncode == 1
    assert result.stderr.startswith("oe-assets sql failed: ")
    assert "read-only" in result.stderr
    assert "Traceback" not in result.stderr
    count = oe_assets(
        ["sql", "SELECT count(*) FROM execution_context", "--csv", "--warehouse", "demo.duckdb"],
        demo.env,
        demo.folder,
    )
    assert count.stdout.splitlines()[1] == str(before)


def test_schema_infer_and_model_export_write_their_files(demo: Demo) -> None:
    schema = oe_assets(SCHEMA, demo.env, demo.folder, timeout=60)
    assert schema.returncode == 0, schema.stderr
    assert "execution_context" in (demo.folder / "tables.json").read_text()
    model = oe_assets(MODEL, demo.env, demo.folder, timeout=60)
    assert model.returncode == 0, model.stderr
    assert '"event_log"' in (demo.folder / "model.json").read_text()


def test_debug_shows_the_traceback_of_an_error(tmp_path: Path) -> None:
    plain = oe_assets(DEBUG[1:], clean_env(tmp_path), tmp_path, timeout=60)
    debug = oe_assets(DEBUG, clean_env(tmp_path), tmp_path, timeout=60)
    sentence = (
        "oe-assets sql failed: the warehouse nowhere.duckdb does not exist; load it first (make demo)\n"
    )
    assert (plain.returncode, plain.stderr) == (1, sentence)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.endswith(sentence)


def test_bench_with_contexts_and_scale(tmp_path: Path) -> None:
    result = oe_assets([*BENCH, *BENCH_REST], clean_env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "b.json").exists()


def test_materialize_a_range_against_the_simulator(tmp_path: Path) -> None:
    with SimulatorServer(seed=4, days=2, contexts_per_day=6) as server:
        last = server.world.now.date()
        env = simulator_env(tmp_path, server)
        result = oe_assets(_filled(MATERIALIZE, first=last - timedelta(days=2), last=last), env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"Materialized {last - timedelta(days=2)} .. {last}: ")
    assert result.stdout.endswith(", 0 failed\n")


# ------------------------------------------------------------------- long-running: stop signals


def test_simulator_serves_on_its_port_with_its_seed_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    running = start(_filled(SIMULATOR, port=port), clean_env(tmp_path), tmp_path)
    wait_until_served(f"http://127.0.0.1:{port}/_admin/state", running, timeout=60)
    state = httpx.get(f"http://127.0.0.1:{port}/_admin/state", trust_env=False).json()
    assert state["seed"] == 5
    code, left = stop_and_wait(running, signal.SIGTERM, timeout=30)
    assert (code, left) == (0, set())
    assert not port_listens(port)
    assert "Traceback" not in running.output()


def test_celonis_simulator_serves_its_pool_file_and_prints_what_to_export_until_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    running = start(_filled(CELONIS_SIMULATOR, port=port), clean_env(tmp_path), tmp_path)
    wait_until_served(f"http://127.0.0.1:{port}/_admin/state", running, timeout=60)
    state = httpx.get(f"http://127.0.0.1:{port}/_admin/state", trust_env=False).json()
    assert state["poolDb"] == str(tmp_path / "pool.duckdb")
    code, left = stop_and_wait(running, signal.SIGTERM, timeout=30)
    assert (code, left) == (0, set())
    assert f"CELONIS_URL=http://127.0.0.1:{port}" in running.output()
    assert not port_listens(port)
    assert "Traceback" not in running.output()


ASSETS = """
query Assets {
  assetNodes {
    assetKey { path }
    isPartitioned
    partitionKeys
    partitionStats { numMaterialized numPartitions numFailed numMaterializing }
    assetMaterializations(limit: 1) { runId }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
    }
  }
}
"""


def _graphql(port: int, query: str) -> dict[str, Any]:
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=60, trust_env=False
    )
    payload = response.json()
    assert not payload.get("errors"), payload["errors"]
    return dict(payload["data"])


def _wait_for_code_location(port: int, running: Running) -> None:
    wait_until_served(f"http://127.0.0.1:{port}/server_info", running)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        entries = _graphql(port, WORKSPACE_QUERY)["workspaceOrError"].get("locationEntries", [])
        loaded = [e for e in entries if e["name"] == LOCATION and e["loadStatus"] == "LOADED"]
        if loaded:
            assert loaded[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", loaded
            return
        time.sleep(1)
    raise AssertionError(f"the code location did not load:\n{running.output()[-3000:]}")


def _start_ui(demo: Demo) -> tuple[Running, int]:
    port = free_port()
    # `make ui` in the demo's folder: no OE_START_DATE in the environment, the `.env` decides
    env = {**demo.env, "OE_WAREHOUSE": str(demo.folder / "demo.duckdb")}
    running = start(_filled(UI, port=port), env, demo.folder)
    _wait_for_code_location(port, running)
    return running, port


def test_after_the_demo_the_ui_shows_only_its_days_all_materialized_and_stops_on_sigterm(demo: Demo) -> None:
    running, port = _start_ui(demo)
    try:
        nodes = _graphql(port, ASSETS)["assetNodes"]
        days = [(demo.first + timedelta(days=i)).isoformat() for i in range(DAYS + 1)]
        partitioned = [n for n in nodes if n["isPartitioned"]]
        assert partitioned
        for node in partitioned:
            assert node["partitionKeys"] == days, node["assetKey"]
            stats = node["partitionStats"]
            assert stats == {
                "numMaterialized": DAYS + 1,
                "numPartitions": DAYS + 1,
                "numFailed": 0,
                "numMaterializing": 0,
            }, node["assetKey"]
        for node in nodes:  # no "never materialized" badge, no failed check
            assert node["assetMaterializations"], node["assetKey"]
            checks = node["assetChecksOrError"].get("checks", [])
            assert all(c["executionForLatestMaterialization"]["status"] == "SUCCEEDED" for c in checks), node
        # the warehouse can be read while the UI is open
        query = oe_assets(
            ["sql", "SELECT count(*) FROM event_log", "--csv", "--warehouse", "demo.duckdb"],
            demo.env,
            demo.folder,
            timeout=60,
        )
        assert query.returncode == 0, query.stderr
        assert int(query.stdout.splitlines()[1]) == _table_counts(demo.stdout)["event_log"]
    finally:
        code, left = stop_and_wait(running, signal.SIGTERM)
    assert (code, left) == (0, set()), running.output()[-3000:]
    assert not port_listens(port)
    assert "Traceback" not in running.output()


def test_ctrl_c_stops_the_ui_quietly_and_leaves_nothing_behind(demo: Demo) -> None:
    running, port = _start_ui(demo)
    code, left = stop_and_wait(running, signal.SIGINT)
    assert (code, left) == (0, set()), running.output()[-3000:]
    assert not port_listens(port)
    assert "Traceback" not in running.output()
    assert "KeyboardInterrupt" not in running.stderr.read_text()


def test_sigterm_stops_the_live_demo_its_simulator_and_its_ui(tmp_path: Path) -> None:
    simulator, ui = free_port(), free_port()
    args = [*LIVE, "--port", str(simulator), "--ui-port", str(ui), "--warehouse", "live.duckdb"]
    running = start(args, clean_env(tmp_path), tmp_path)
    try:
        _wait_for_code_location(ui, running)
        assert port_listens(simulator)
    finally:
        code, left = stop_and_wait(running, signal.SIGTERM)
    assert (code, left) == (0, set()), running.output()[-3000:]
    assert not port_listens(ui)
    assert not port_listens(simulator)
    assert "Traceback" not in running.output()


def test_the_ui_on_a_busy_port_says_so_in_one_sentence(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = oe_assets(["ui", "--port", str(port)], clean_env(tmp_path), tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        f"oe-assets ui failed: port {port} is in use (is the UI already running?): "
        "stop that, or choose another port\n"
    )
