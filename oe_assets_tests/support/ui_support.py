"""The real UI for tests: the OE simulator plus `dagster dev` on a free loopback port, driven over GraphQL.

Both UI test modules load this file with `pytest_plugins`, so its session fixtures (one simulator, one
`dagster dev`, one materialized day) are shared by them and started only when one of them runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import REPO

PROJECT_ROOT = REPO
WORKSPACE = PROJECT_ROOT / "workspace.yaml"
INSTANCE_TEMPLATE = PROJECT_ROOT / "oe_assets" / "orchestration" / "dagster_instance.yaml"
LOCATION = "oe_assets"
REPOSITORY = "__repository__"
CATALOG_JOB = "refresh_catalog"
CONTEXTS_JOB = "refresh_process_contexts"

STARTUP_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


LINEAGE_NAME_LENGTH = 18
"""How many characters of an asset's name the lineage graph shows at the default (fitted) zoom."""


def lineage_label(name: str, max_length: int = LINEAGE_NAME_LENGTH) -> str:
    """The label the lineage graph of Dagster 1.13 prints for an asset named ``name`` (the last part
    of its key): the name, or its middle cut at a separator (``_ . - >``) when longer than
    ``max_length``, e.g. ``raw_process_contexts`` -> ``raw_proc…_contexts``. A port of the UI's
    ``withMiddleTruncation``; test_ui_browser checks it against the labels the browser renders."""
    excess = len(name) - max_length
    if excess <= 0:
        return name
    if max_length <= 10:
        return name[: max_length - 1] + "…"
    separators = [m.start() for m in re.finditer("__" if "__" in name else r"[_>.\-]", name)]
    cut = (len(name) + excess) // 2
    first = next((i for i, at in enumerate(separators) if at > excess + 3), None)
    if first is not None and max(first, len(separators) // 2) < len(separators):
        cut = separators[max(first, len(separators) // 2)]
    return name[: cut - (excess + 1)] + "…" + name[cut:]


class GraphQLError(AssertionError):
    """The GraphQL endpoint answered with errors (or not at all)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dagster_executable(name: str = "dagster") -> str:
    """``name`` (`dagster`, `dagster-daemon`, `dagster-webserver`) of the interpreter running the
    tests (.venv/bin/...), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def child_default_sigint() -> None:
    """A shell without job control starts background jobs with SIGINT ignored, and children inherit
    that; `dagster dev` must get the default disposition or our SIGINT would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_in_own_group(
    command: list[str], *, cwd: Path, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """``command`` leading a process group of its own (so its children can be signalled with it),
    its output (both streams) in ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_default_sigint,
        )


@dataclass
class DagsterUi:
    """A running `dagster dev` (webserver + daemon + code server) in its own process group."""

    url: str
    process: subprocess.Popen[bytes]
    home: Path
    warehouse: Path
    log_path: Path
    client: httpx.Client = field(repr=False)
    stopped_cleanly: bool | None = None

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        if response.status_code != 200:
            raise GraphQLError(f"GraphQL HTTP {response.status_code}: {response.text[:2000]}")
        payload = response.json()
        if payload.get("errors"):
            raise GraphQLError(f"GraphQL errors: {payload['errors']}")
        data = payload.get("data")
        assert isinstance(data, dict), payload
        return data

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])


WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message }
        }
      }
    }
  }
}
"""


def _location_state(ui: DagsterUi) -> tuple[str, str]:
    """(state, detail): state is 'loaded', 'loading' or 'error'."""
    data = ui.graphql(WORKSPACE_QUERY)["workspaceOrError"]
    if data["__typename"] != "Workspace":
        return "loading", data["__typename"]
    for entry in data["locationEntries"]:
        if entry["name"] != LOCATION:
            continue
        loaded = entry["locationOrLoadError"]
        if loaded and loaded["__typename"] == "PythonError":
            return "error", loaded["message"]
        if entry["loadStatus"] == "LOADED" and loaded:
            return "loaded", ""
    return "loading", "code location not loaded yet"


def start_dagster_ui(tmp: Path, simulator: SimulatorServer, start_date: str) -> DagsterUi:
    """`dagster dev -w workspace.yaml` against the simulator, with a fresh DAGSTER_HOME and warehouse.

    The working directory is a temporary folder, so a developer's `.env` in the project folder (which
    `dagster dev` loads from its working directory and which wins over the environment) cannot point
    this test at another API or warehouse.
    """
    home = tmp / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    warehouse = tmp / "warehouse" / "oe.duckdb"
    warehouse.parent.mkdir(parents=True)
    run_dir = tmp / "cwd"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OE_", "DAGSTER_"))}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "OE_API_URL": simulator.url,
            "OE_AUTH_URL": simulator.url,
            "OE_CLIENT_ID": simulator.client_id,
            "OE_CLIENT_SECRET": simulator.client_secret,
            "OE_WAREHOUSE": str(warehouse),
            "OE_START_DATE": start_date,
            "OE_DIGITAL_PROCESS_IDS": "",
            "OE_SENSOR_RUNNING": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    port = free_port()
    log_path = tmp / "dagster-dev.log"
    command = [dagster_executable(), "dev", "-w", str(WORKSPACE), "-p", str(port), "-h", "127.0.0.1"]
    process = start_in_own_group(command, cwd=run_dir, env=env, log_path=log_path)
    ui = DagsterUi(
        url=f"http://127.0.0.1:{port}",
        process=process,
        home=home,
        warehouse=warehouse,
        log_path=log_path,
        client=httpx.Client(trust_env=False),
    )
    try:
        wait_until_ready(ui)
    except BaseException:
        stop_dagster_ui(ui)
        raise
    return ui


def wait_until_ready(ui: DagsterUi) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    detail = "no answer yet"
    while time.monotonic() < deadline:
        if ui.process.poll() is not None:
            raise AssertionError(
                f"dagster dev exited with code {ui.process.returncode} before it served:\n{ui.log_tail()}"
            )
        try:
            if ui.client.get(f"{ui.url}/server_info", timeout=5).status_code == 200:
                state, detail = _location_state(ui)
                if state == "loaded":
                    return
                if state == "error":
                    raise AssertionError(f"code location {LOCATION} failed to load: {detail}")
        except (httpx.HTTPError, GraphQLError) as error:
            detail = f"{type(error).__name__}: {error}"
        time.sleep(1)
    raise AssertionError(
        f"dagster dev did not serve {LOCATION} within {STARTUP_TIMEOUT_S:.0f} s ({detail}):\n{ui.log_tail()}"
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_dagster_ui(ui: DagsterUi) -> bool:
    """SIGINT (what Ctrl-C sends, and what stops `dagster dev` and its children cleanly), then wait.

    Returns True when `dagster dev` and every process of its group were gone within STOP_TIMEOUT_S;
    otherwise kills the group and returns False.
    """
    ui.client.close()
    pgid = ui.process.pid  # start_new_session=True: the process leads its own group
    clean = True
    if ui.process.poll() is None:
        ui.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    try:
        ui.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        clean = False
    while clean and _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(pgid):
        clean = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        ui.process.wait(timeout=10)
    ui.stopped_cleanly = clean
    return clean


# --------------------------------------------------------------------------------------------- runs

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on PresetNotFoundError { message }
    ... on NoModeProvidedError { message }
    ... on UnauthorizedError { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status tags { key value } }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

RUN_FAILURES = """
query RunFailures($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message } }
        ... on RunFailureEvent { message }
      }
    }
  }
}
"""


def job_selector(job: str) -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job}


def launch_run(ui: DagsterUi, job: str, partitions: tuple[str, str] | None = None) -> str:
    """launchRun as the UI's Materialize button does it: the job's selector, and a range of partitions
    as run tags (the one run a single-run backfill of the range launches)."""
    tags = []
    if partitions:
        start, end = partitions
        tags = [
            {"key": "dagster/asset_partition_range_start", "value": start},
            {"key": "dagster/asset_partition_range_end", "value": end},
        ]
    params = {"selector": job_selector(job), "runConfigData": {}, "executionMetadata": {"tags": tags}}
    result = ui.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", f"launchRun({job}, {partitions}): {result}"
    return str(result["run"]["runId"])


def run_failures(ui: DagsterUi, run_id: str) -> list[str]:
    data = ui.graphql(RUN_FAILURES, {"runId": run_id})["logsForRun"]
    messages = []
    for event in data.get("events", []):
        if event["__typename"] == "ExecutionStepFailureEvent":
            messages.append(f"{event['stepKey']}: {event['error']['message'].strip()[:800]}")
        elif event["__typename"] == "RunFailureEvent":
            messages.append(str(event["message"]))
    return messages


def wait_for_run(ui: DagsterUi, run_id: str, timeout: float = RUN_TIMEOUT_S) -> str:
    """Polls runOrError until the run finishes; returns its status (SUCCESS, FAILURE or CANCELED)."""
    deadline = time.monotonic() + timeout
    status = "UNKNOWN"
    while time.monotonic() < deadline:
        run = ui.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        status = str(run["status"])
        if status in FINISHED:
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} still {status} after {timeout:.0f} s:\n{ui.log_tail()}")


@dataclass
class MaterializedDay:
    """What the session's materialization through GraphQL produced (filled in as the runs finish)."""

    partition: str
    catalog_run: str = ""
    catalog_status: str = "NOT LAUNCHED"
    contexts_run: str = ""
    contexts_status: str = "NOT LAUNCHED"
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def ui_simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=23, days=2, contexts_per_day=20) as server:
        yield server


@pytest.fixture(scope="session")
def dagster_ui(
    tmp_path_factory: pytest.TempPathFactory, ui_simulator: SimulatorServer
) -> Iterator[DagsterUi]:
    """One `dagster dev` for the UI tests, its partitions yesterday and today; stopped with SIGINT, and
    the stop must be clean."""
    start_date = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    ui = start_dagster_ui(tmp_path_factory.mktemp("dagster_ui"), ui_simulator, start_date)
    try:
        yield ui
    finally:
        clean = stop_dagster_ui(ui)
    assert clean, f"dagster dev did not stop within {STOP_TIMEOUT_S:.0f} s of SIGINT:\n{ui.log_tail()}"


@pytest.fixture(scope="session")
def materialized_day(dagster_ui: DagsterUi) -> MaterializedDay:
    """The catalog, then every partition of the contexts graph (yesterday's is the one the tests read)
    in one run, launched through GraphQL: a first look at the UI is all materialized, as after the demo."""
    started = time.monotonic()
    today = datetime.now(UTC).date()
    day = MaterializedDay(partition=(today - timedelta(days=1)).isoformat())
    day.catalog_run = launch_run(dagster_ui, CATALOG_JOB)
    day.catalog_status = wait_for_run(dagster_ui, day.catalog_run)
    if day.catalog_status != "SUCCESS":
        day.failures = run_failures(dagster_ui, day.catalog_run)
    else:
        day.contexts_run = launch_run(dagster_ui, CONTEXTS_JOB, (day.partition, today.isoformat()))
        day.contexts_status = wait_for_run(dagster_ui, day.contexts_run)
        if day.contexts_status != "SUCCESS":
            day.failures = run_failures(dagster_ui, day.contexts_run)
    day.seconds = time.monotonic() - started
    return day
