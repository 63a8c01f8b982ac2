"""The team topology as separate processes: a real PostgreSQL server holds Dagster's instance
(deploy/dagster.yaml), and a `dagster api grpc` code server, `dagster-webserver` and `dagster-daemon`
run side by side, as the compose file starts them. The daemon ticks the sensor, which requests the
catalog and one run per day; each run is its own process. The runs land every context in the
PostgreSQL warehouse, several at the same time (the pool lets 4 go), and the whole history is in
PostgreSQL, where the webserver reads it.

The Docker run launcher of deploy/dagster.yaml needs a Docker daemon, which the tests do not have:
the test replaces that one block with Dagster's default launcher, and keeps every other line.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg2.errors
import pytest
import yaml
from dagster import DagsterEventType
from dagster._grpc.client import DagsterGrpcClient

from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import REPO, created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.reliability_support import new_simulator
from oe_assets_tests.support.ui_support import (
    LOCATION,
    STARTUP_TIMEOUT_S,
    DagsterUi,
    dagster_executable,
    free_port,
    start_in_own_group,
    wait_until_ready,
)

TEAM_INSTANCE = REPO / "deploy" / "dagster.yaml"
RUNS_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0


@dataclass
class Service:
    """One long-running Dagster process in its own process group, its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name}\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGINT to the group (the code server's runs are in it too), then SIGKILL what is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_service(name: str, command: list[str], env: dict[str, str], folder: Path) -> Service:
    log = folder / f"{name}.log"
    return Service(name, start_in_own_group(command, cwd=folder, env=env, log_path=log), log)


def wait_for_code_server(port: int, service: Service) -> None:
    """Until the gRPC server answers its health check (loading the definitions takes seconds)."""
    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert service.process.poll() is None, f"the code server exited:\n{service.tail()}"
        with contextlib.suppress(Exception):
            if client.health_check_query() == "SERVING":
                return
        time.sleep(0.5)
    raise AssertionError(f"the code server did not serve within {STARTUP_TIMEOUT_S:.0f} s:\n{service.tail()}")


def team_home(folder: Path) -> Path:
    """DAGSTER_HOME with deploy/dagster.yaml, its Docker run launcher left out (see module doc)."""
    config = yaml.safe_load(TEAM_INSTANCE.read_text())
    assert config["run_launcher"]["class"] == "DockerRunLauncher"
    del config["run_launcher"]
    home = folder / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def team_env(folder: Path, pg: PostgresServer, server: SimulatorServer, first_day: date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OE_", "DAGSTER_", "CELONIS_"))}
    env.update(
        DAGSTER_HOME=str(team_home(folder)),
        DAGSTER_POSTGRES_HOST=pg.host,
        DAGSTER_POSTGRES_PORT=str(pg.port),
        DAGSTER_POSTGRES_USER=pg.user,
        DAGSTER_POSTGRES_PASSWORD=pg.password,
        DAGSTER_POSTGRES_DB=pg.create_database("dagster"),
        OE_API_URL=server.url,
        OE_CLIENT_ID=server.client_id,
        OE_CLIENT_SECRET=server.client_secret,
        OE_WAREHOUSE=f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.create_database('oe_warehouse')}",
        PGPASSWORD=pg.password,
        OE_START_DATE=first_day.isoformat(),
        OE_SENSOR_RUNNING="1",
        OE_SENSOR_INTERVAL_SECONDS="5",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def team_topology(folder: Path, env: dict[str, str]) -> Iterator[tuple[DagsterUi, list[Service]]]:
    """The code server, then the webserver and the daemon pointed at it by a workspace file."""
    grpc_port, web_port = free_port(), free_port()
    workspace = folder / "workspace.yaml"
    location = {"host": "127.0.0.1", "port": grpc_port, "location_name": LOCATION}
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": location}]}))
    code = start_service(
        "code",
        [
            dagster_executable(),
            "api",
            "grpc",
            "-m",
            "oe_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(grpc_port),
        ],
        env,
        folder,
    )
    services = [code]
    try:
        wait_for_code_server(grpc_port, code)
    except BaseException:
        code.stop()
        raise
    services += [
        start_service(
            "webserver",
            [
                dagster_executable("dagster-webserver"),
                "-w",
                str(workspace),
                "-h",
                "127.0.0.1",
                "-p",
                str(web_port),
            ],
            env,
            folder,
        ),
        start_service(
            "daemon", [dagster_executable("dagster-daemon"), "run", "-w", str(workspace)], env, folder
        ),
    ]
    ui = DagsterUi(
        url=f"http://127.0.0.1:{web_port}",
        process=services[1].process,
        home=Path(env["DAGSTER_HOME"]),
        warehouse=Path(env["OE_WAREHOUSE"]),
        log_path=services[1].log,
        client=httpx.Client(trust_env=False),
    )
    try:
        wait_until_ready(ui)
        yield ui, services
    finally:
        ui.client.close()
        for service in reversed(services):
            service.stop()


def instance_runs(pg: PostgresServer) -> dict[str, dict[str, Any]]:
    """Every run in the instance's database: its job, partition, status and the pid of its process."""
    runs: dict[str, dict[str, Any]] = {}
    for run_id, job, status, body in pg.query(
        "dagster", "SELECT run_id, pipeline_name, status, run_body FROM runs"
    ):
        tags = json.loads(body).get("tags", {})
        runs[run_id] = {"job": job, "status": status, "partition": tags.get("dagster/partition")}
    kinds = {e.value: e.name for e in (DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS)}
    for run_id, kind, event, timestamp in pg.query(
        "dagster",
        "SELECT run_id, dagster_event_type, event, timestamp FROM event_logs WHERE dagster_event_type = ANY(%s)",
        (list(kinds),),
    ):
        record = runs.setdefault(run_id, {})
        record[kinds[kind]] = timestamp
        if kinds[kind] == "RUN_START":
            record["pid"] = json.loads(event)["dagster_event"]["pid"]
    return runs


def failures(pg: PostgresServer) -> str:
    """What the instance recorded of every failed step and run: their error messages."""
    rows = pg.query(
        "dagster",
        "SELECT run_id, step_key, event FROM event_logs WHERE dagster_event_type IN ('STEP_FAILURE', 'RUN_FAILURE')",
    )
    texts = []
    for run_id, step, event in rows:
        data = json.loads(event)["dagster_event"]["event_specific_data"] or {}
        error = data.get("error") or {}
        causes = [error.get("message", "")] + [c.get("message", "") for c in [error.get("cause") or {}]]
        texts.append(f"{run_id} {step}: {' / '.join(m.strip() for m in causes if m)}")
    return "\n".join(texts) or "no failure recorded"


def wait_for_day_runs(
    pg: PostgresServer, days: set[str], services: list[Service]
) -> dict[str, dict[str, Any]]:
    """Until the catalog run and one run per day in ``days`` have ended (or any run failed)."""
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    runs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg2.errors.UndefinedTable):  # created by the first process to start
            runs = instance_runs(pg)
        ended = [r for r in runs.values() if r.get("status") in ("SUCCESS", "FAILURE", "CANCELED")]
        landed_days = {r["partition"] for r in ended if r.get("partition")}
        if any(r["status"] != "SUCCESS" for r in ended) or (
            landed_days >= days and any(r["job"] == "refresh_catalog" for r in ended)
        ):
            return runs
        time.sleep(2)
    logs = "\n".join(s.tail() for s in services)
    raise AssertionError(f"the sensor's runs did not end within {RUNS_TIMEOUT_S:.0f} s: {runs}\n{logs}")


def test_the_team_topology_lands_every_day_through_the_postgres_instance(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    with new_simulator(seed=61, days=3, contexts_per_day=12) as server:
        contexts = server.world.contexts()
        finished_days = {created_day(c).isoformat() for c in contexts if c.get("status") == "finished"}
        per_day = {day: sum(created_day(c).isoformat() == day for c in contexts) for day in finished_days}
        env = team_env(tmp_path, postgres_server, server, min(created_day(c) for c in contexts))
        with team_topology(tmp_path, env) as (ui, services):
            runs = wait_for_day_runs(postgres_server, finished_days, services)
            shown = ui.graphql("{ runsOrError { ... on Runs { results { runId status } } } }")
        logs = "\n".join(s.log.read_text(errors="replace") for s in services)

    assert {r["status"] for r in runs.values()} == {"SUCCESS"}, failures(postgres_server)
    day_runs = [r for r in runs.values() if r["job"] == "refresh_process_contexts"]
    assert sorted(r["partition"] for r in day_runs) == sorted(finished_days)
    # Each run was its own process, none of them the code server, the webserver or the daemon.
    service_pids = {s.process.pid for s in services}
    run_pids = [r["pid"] for r in runs.values()]
    assert len(set(run_pids)) == len(run_pids)
    assert not service_pids & set(run_pids)
    # Runs for different days wrote the warehouse at the same time.
    windows = sorted((r["RUN_START"], r["RUN_SUCCESS"]) for r in day_runs)
    assert any(next_start < end for (_, end), (next_start, _) in itertools.pairwise(windows)), windows
    # The webserver shows the history the runs wrote into PostgreSQL.
    assert {r["runId"] for r in shown["runsOrError"]["results"]} == set(runs)
    landed = dict(
        postgres_server.query(
            "oe_warehouse", "SELECT _oe_partition::text, count(*) FROM execution_context GROUP BY 1"
        )
    )
    assert {day: landed.get(day, 0) for day in finished_days} == per_day
    for secret in (postgres_server.password, server.client_secret):
        assert secret not in logs


@pytest.mark.parametrize("broken", ["password", "database"])
def test_a_wrong_instance_setting_stops_the_webserver_with_a_sentence_without_the_password(
    tmp_path: Path, postgres_server: PostgresServer, broken: str
) -> None:
    """A wrong password or database name ends `dagster-webserver` with PostgreSQL's reason; the
    password the variable holds shows nowhere in what it prints."""
    wrong_password = "not-the-password-4711"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OE_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(team_home(tmp_path)),
        DAGSTER_POSTGRES_HOST=postgres_server.host,
        DAGSTER_POSTGRES_PORT=str(postgres_server.port),
        DAGSTER_POSTGRES_USER=postgres_server.user,
        DAGSTER_POSTGRES_PASSWORD=wrong_password if broken == "password" else postgres_server.password,
        DAGSTER_POSTGRES_DB="dagster" if broken == "password" else "no_such_database",
    )
    done = subprocess.run(
        [dagster_executable(), "instance", "info"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    printed = done.stdout + done.stderr
    assert done.returncode != 0
    expected = "password authentication failed" if broken == "password" else 'database "no_such_database"'
    assert expected in printed
    assert wrong_password not in printed
    assert postgres_server.password not in printed
