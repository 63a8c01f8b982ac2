"""Security: secrets and tokens stay out of everything; names from JSON cannot inject SQL.

The main run is the CLI a user runs (``oe-assets materialize``, a real process, the whole graph with
every check) against a simulator with a known client secret, tokens revoked every few requests
(so many are issued and some are refused mid-run), and documents whose keys try to inject SQL.
test_secrets.py covers the same for an in-process run and the stored Dagster data; this module
adds the CLI's output, a failing run's error message, debug logs, SQL injection through table and
column names (the Celonis extractor's event-log script and the checks included), the simulator's loopback default and
the plain-http warning.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest

from oe_assets.celonis_simulator import CelonisSimulatorServer
from oe_assets.celonis_simulator.cli import build_parser as build_celonis_parser
from oe_assets.client import OeClient, OeClientConfig
from oe_assets.config.secret import Secret
from oe_assets.core.loopback_http import is_loopback_host
from oe_assets.model.data_model import build_data_model
from oe_assets.model.declaration import load_model
from oe_assets.model.integrity import check_primary_key, check_relation
from oe_assets.model.schema_file import infer_declared_tables, write_schema_file
from oe_assets.orchestration.resources import OeApiResource
from oe_assets.simulator import SimulatorServer
from oe_assets.simulator.cli import build_parser
from oe_assets_tests.support.helpers import EVENT_LOG_SCRIPT, created_day, run_extractor_script_on_copy
from oe_assets_tests.support.reliability_support import FIGURES, ROOT, new_simulator, quote, world_days

SECRET = "Sup3r-s3cret-cli-value-9f2e41"
WRONG = "wr0ng-s3cret-cli-value-77aa"
INJECT_COLUMN = 'x"; DROP TABLE execution_context; --'
INJECT_TABLE = "rows\"'); DROP TABLE event_log; --"
INJECT_NESTED = 'q";DELETE FROM raw_process_contexts;'


@dataclass
class CliRun:
    server: SimulatorServer
    warehouse: Path
    home: Path
    result: subprocess.CompletedProcess[str]
    tokens: list[str]
    injected: dict[str, object]


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    FIGURES.runs += 1
    return subprocess.run(
        [sys.executable, "-m", "oe_assets.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def _env(server: SimulatorServer, warehouse: Path, home: Path, secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OE_")}
    env.update(
        DAGSTER_HOME=str(home),
        OE_API_URL=server.url,
        OE_CLIENT_ID=server.client_id,
        OE_CLIENT_SECRET=secret,
        OE_WAREHOUSE=str(warehouse),
    )
    return env


def _files_containing(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {n[:6]}..." for n in needles if n.encode() in data]
    return found


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliRun]:
    tmp = tmp_path_factory.mktemp("security")
    warehouse, home = tmp / "w" / "oe.duckdb", tmp / "dagster_home"
    with new_simulator(400, days=1, contexts_per_day=10, client_secret=SECRET) as server:
        base = server.world.contexts()[0]
        injected = copy.deepcopy(base)
        injected["context"]["processid"] = base["context"]["processid"][:-6] + "INJECT"
        injected["context"]["hostile.sql"] = {
            INJECT_COLUMN: "harmless",
            INJECT_TABLE: [{INJECT_NESTED: 1}, {INJECT_NESTED: 2}],
        }
        injected["context"][INJECT_COLUMN] = 42
        server.world.put_context(injected)
        server.faults.update({"revoke_tokens_every": 4})  # many tokens, some refused mid-run
        days = world_days(server)
        result = _cli(
            ["materialize", "--start", days[0].isoformat(), "--end", days[-1].isoformat()],
            _env(server, warehouse, home, SECRET),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        FIGURES.add_faults(server.faults.counters())
        yield CliRun(server, warehouse, home, result, server.tokens.issued(), injected)


def test_the_cli_output_dagster_home_and_warehouse_hold_no_secret_or_token(cli_run: CliRun) -> None:
    assert len(cli_run.tokens) > 2, "tokens were revoked and issued again during the run"
    needles = [SECRET, *cli_run.tokens]
    output = cli_run.result.stdout + cli_run.result.stderr
    assert "Materialized" in cli_run.result.stdout
    assert [n[:6] for n in needles if n in output] == []
    assert _files_containing(cli_run.home, needles) == []  # runs, event logs, compute logs, run config
    assert _files_containing(cli_run.warehouse.parent, needles) == []
    instance = dg.DagsterInstance.from_config(str(cli_run.home))
    try:
        runs = instance.get_runs()
        assert {r.job_name for r in runs} == {"refresh_catalog", "refresh_process_contexts"}
        stored = "".join(str(r.run_config) + str(r.tags) for r in runs)
        stored += "".join(str(e) for r in runs for e in instance.all_logs(r.run_id))
    finally:
        instance.dispose()
    assert [n[:6] for n in needles if n in stored] == []


def test_a_run_failing_on_a_wrong_secret_leaks_it_nowhere(tmp_path: Path) -> None:
    warehouse, home = tmp_path / "w" / "oe.duckdb", tmp_path / "dagster_home"
    with new_simulator(401, days=1, contexts_per_day=5, client_secret=SECRET) as server:
        result = _cli(
            ["materialize", "--start", world_days(server)[0].isoformat()],
            _env(server, warehouse, home, WRONG),
        )
    assert result.returncode == 1
    failure = [line for line in result.stderr.splitlines() if line.startswith("oe-assets materialize failed")]
    assert len(failure) == 1, result.stderr[-2000:]
    assert "check OE_CLIENT_ID and OE_CLIENT_SECRET" in failure[0]
    assert WRONG not in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert _files_containing(home, [WRONG, SECRET]) == []  # the stored failure and its stack trace
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        errors = [
            str(e.dagster_event.step_failure_data.error)
            for r in instance.get_runs()
            for e in instance.all_logs(r.run_id)
            if e.dagster_event and e.dagster_event.is_step_failure and e.dagster_event.step_failure_data
        ]
    finally:
        instance.dispose()
    assert errors, "the failed run stored its error"
    assert all(WRONG not in e for e in errors)


def test_debug_logs_of_a_client_under_401s_hold_no_secret_or_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx, httpcore
    with new_simulator(402, days=1, contexts_per_day=5, client_secret=SECRET) as server:
        server.faults.update({"revoke_tokens_every": 2, "rate_5xx": 0.2})
        config = OeClientConfig(
            api_url=server.url,
            auth_url=server.url,
            client_id=server.client_id,
            client_secret=Secret(SECRET),
            page_size=2,
            backoff_base_seconds=0.01,
        )
        with OeClient(config) as client:
            for template in client.list_execution_templates():
                for _ in client.iter_process_context_pages(template["id"]):
                    pass
            shown = repr(client) + repr(config) + str(client.stats)
        tokens = server.tokens.issued()
    assert len(tokens) > 2
    text = caplog.text + shown
    assert "refused the access token" in caplog.text or "requesting a new one" in caplog.text
    assert [n[:6] for n in [SECRET, *tokens] if n in text] == []


# ------------------------------------------------------------------------- SQL through names
def test_names_that_try_to_inject_sql_land_as_harmless_columns_and_tables(cli_run: CliRun) -> None:
    pid = cli_run.injected["context"]["processid"]  # type: ignore[index]
    conn = duckdb.connect(str(cli_run.warehouse), read_only=True)
    try:

        def column(path: list[str], table: str = "execution_context") -> str:
            row = conn.execute(
                "SELECT column_name FROM _oe_columns WHERE table_name = ? AND json_path = ?",
                [table, orjson.dumps(path).decode()],
            ).fetchone()
            assert row is not None, path
            return str(row[0])

        top = column(["context", INJECT_COLUMN])
        nested = column(["context", "hostile.sql", INJECT_COLUMN])
        assert top == f"context${INJECT_COLUMN}"
        row = conn.execute(
            f'SELECT {quote(top)}, {quote(nested)} FROM execution_context WHERE "context$processid" = ?',
            [pid],
        ).fetchone()
        assert row == (42, "harmless")
        table = f"execution_context$context&hostile.sql${INJECT_TABLE}"
        assert conn.execute(
            f"SELECT list({quote(column([INJECT_NESTED], table))} ORDER BY _oe_position) FROM {quote(table)}"
        ).fetchone() == ([1, 2],)
        contexts = [c for c in cli_run.server.world.contexts()]
        assert conn.execute("SELECT count(*) FROM execution_context").fetchone() == (len(contexts),)
        assert conn.execute("SELECT count(*) FROM event_log").fetchone() == (len(contexts),)
        assert conn.execute("SELECT count(*) FROM raw_process_contexts").fetchone() == (len(contexts),)
    finally:
        conn.close()


def test_every_check_ran_on_the_hostile_warehouse_and_only_schema_drift_warns(cli_run: CliRun) -> None:
    instance = dg.DagsterInstance.from_config(str(cli_run.home))
    try:
        evaluations = [
            e.dagster_event.event_specific_data
            for r in instance.get_runs()
            for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            if e.dagster_event is not None
        ]
    finally:
        instance.dispose()
    assert len(evaluations) > 20
    failed = sorted((ev.check_name, ev.severity.value) for ev in evaluations if not ev.passed)  # type: ignore[union-attr]
    # the injected array is a table nobody declared in oe_assets/model/model.json: flagged, not refused
    assert failed == [("schema_drift", "WARN")]
    drift = next(ev for ev in evaluations if ev.check_name == "schema_drift")  # type: ignore[union-attr]
    assert INJECT_TABLE in str(drift.metadata["detail"].value)  # type: ignore[union-attr]


def test_the_checks_sql_runs_on_every_hostile_table_and_passes(cli_run: CliRun, tmp_path: Path) -> None:
    """The same integrity SQL the checks run, over a model that declares the hostile tables too."""
    conn = duckdb.connect(str(cli_run.warehouse), read_only=True)
    try:
        schema = tmp_path / "model.json"
        write_schema_file(infer_declared_tables(conn), schema)
        declared = load_model(schema)
        assert any(INJECT_TABLE in t.name for t in declared.declared_tables)
        model = build_data_model(declared)
        outcomes = [check_primary_key(conn, t.name, t.primary_key) for t in model.tables]
        outcomes += [check_relation(conn, r) for r in model.relations]
    finally:
        conn.close()
    assert len(outcomes) > 20
    assert [o.detail for o in outcomes if not o.passed] == []


def test_the_seeds_event_log_script_runs_unchanged_on_the_hostile_warehouse(
    cli_run: CliRun, tmp_path: Path
) -> None:
    conn = duckdb.connect(str(cli_run.warehouse), read_only=True)
    try:
        # the extractor's columns (ours adds _oe_deleted_at beside them)
        ours = conn.execute(
            "SELECT execution_template_name, instance_id, created_at, last_modified, status "
            "FROM event_log ORDER BY instance_id"
        ).fetchall()
    finally:
        conn.close()
    seeds = run_extractor_script_on_copy(cli_run.warehouse, tmp_path, EVENT_LOG_SCRIPT.read_text())
    assert seeds == ours
    assert len(ours) == len(cli_run.server.world.contexts())
    assert {created_day(c) for c in cli_run.server.world.contexts()}


# --------------------------------------------------------------------------------- the network
def test_the_simulator_binds_to_loopback_by_default() -> None:
    with SimulatorServer(seed=1, days=1, contexts_per_day=2) as server:
        assert server.host == "127.0.0.1"
        assert server.url.startswith("http://127.0.0.1:")
        assert server.bound_host == "127.0.0.1"
    with CelonisSimulatorServer() as celonis:
        assert celonis.bound_host == "127.0.0.1"
    assert build_parser().parse_args([]).host == "127.0.0.1"  # `oe-assets simulator` too
    assert build_celonis_parser().parse_args([]).host == "127.0.0.1"
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.8.9.10"))
    assert not any(is_loopback_host(h) for h in ("0.0.0.0", "10.0.0.1", "example.com", "::"))


@pytest.mark.parametrize(
    ("api_url", "auth_url", "warns"),
    [
        ("http://oe.example.com", "https://auth.example.com", True),
        ("https://api.emporix.io", "http://10.1.2.3:8080", True),
        ("http://192.168.1.20", "", True),
        ("https://api.emporix.io", "", False),
        ("http://127.0.0.1:8765", "", False),
        ("http://localhost:8765", "", False),
        ("http://[::1]:8765", "", False),
    ],
)
def test_plain_http_to_anything_but_loopback_draws_a_warning(
    api_url: str, auth_url: str, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    resource = OeApiResource(api_url=api_url, auth_url=auth_url, client_id="cid", client_secret=SECRET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with resource.open_client():
            pass  # building the client warns; nothing is sent
    messages = [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning) and "plain http" in str(w.message)
    ]
    assert bool(messages) == warns, messages
    if warns:
        assert "use https" in messages[0]
        assert "OE_API_URL" in messages[0] or "OE_AUTH_URL" in messages[0]
        assert "plain http" in caplog.text  # logged too, so it reaches the run's logs
    assert SECRET not in "".join(messages) + caplog.text
