"""`oe-assets materialize` against a hostile API: it neither hangs, nor swells, nor leaks a secret.

Each test runs the real command in its own process, with its own DAGSTER_HOME and warehouse,
against the simulator behind :class:`~oe_assets_tests.support.hostile_server.HostileServer`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import duckdb
import orjson
import pytest

from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.locking import exclusive_file_lock, lock_path_for
from oe_assets_tests.support.hostile_server import HostileServer, Reply, Request, gzip_bomb, trickle
from oe_assets_tests.support.reliability_support import FIGURES

PROCESS_CONTEXTS = "/process-contexts"
TODAY = datetime.now(UTC).date().isoformat()


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(
        seed=23, days=1, contexts_per_day=15, client_secret="s3cr=t with space&more"
    ) as server:
        yield server


def environment(tmp_path: Path, url: str, sim: SimulatorServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OE_")}
    env.update(
        {
            "OE_API_URL": url,
            "OE_CLIENT_ID": sim.client_id,
            "OE_CLIENT_SECRET": sim.client_secret,
            "OE_WAREHOUSE": str(tmp_path / "warehouse" / "oe.duckdb"),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            **extra,
        }
    )
    return env


def run_cli(
    env: dict[str, str], tmp_path: Path, *, timeout: float = 240, meanwhile: Callable[[], None] | None = None
) -> Finished:
    """``oe-assets materialize --start <today>`` to its end; peak memory measured by the kernel
    (``wait4`` on this very child). ``meanwhile`` runs while the command does."""
    command = [sys.executable, "-m", "oe_assets.cli", "materialize", "--start", TODAY]
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    began = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
    try:
        if meanwhile is not None:
            meanwhile()
        status, usage = _wait(process.pid, began + timeout)
    finally:
        process.returncode = -1  # reaped by _wait; keeps Popen from waiting again
    return Finished(
        os.waitstatus_to_exitcode(status),
        out.read_text(),
        err.read_text(),
        time.monotonic() - began,
        usage.ru_maxrss / 1024,
    )


def _wait(pid: int, until: float) -> tuple[int, os.struct_rusage]:  # type: ignore[name-defined]
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        if time.monotonic() > until:
            os.kill(pid, 9)
        time.sleep(0.1)


def on_pages(reply: Reply):  # type: ignore[no-untyped-def]
    def rule(request: Request) -> Reply | None:
        return reply if request.path.endswith(PROCESS_CONTEXTS) else None

    return rule


@pytest.mark.timeout(300)
def test_a_trickling_api_ends_the_run_within_its_budget_and_never_locks_the_warehouse(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    page = orjson.dumps(sim.world.contexts())
    slow = Reply(200, trickle(page, piece=16), headers={"Content-Length": str(len(page))}, pause_seconds=0.5)
    with HostileServer(sim.url, [on_pages(slow)]) as hostile:
        env = environment(
            tmp_path, hostile.url, sim, OE_REQUEST_DEADLINE_SECONDS="3", OE_RETRY_BUDGET_SECONDS="8"
        )
        warehouse = Path(env["OE_WAREHOUSE"])
        opened: list[bool] = []

        def open_the_warehouse_meanwhile() -> None:
            while not any(r.path.endswith(PROCESS_CONTEXTS) for r in hostile.seen):
                time.sleep(0.1)
            time.sleep(1.0)  # the run now waits on the API
            with exclusive_file_lock(lock_path_for(warehouse), timeout_seconds=2):
                duckdb.connect(str(warehouse)).close()  # another writer gets in while the run reads the API
                opened.append(True)

        result = run_cli(env, tmp_path, meanwhile=open_the_warehouse_meanwhile)
    assert opened == [True]
    assert result.returncode == 1
    assert "no complete answer within 3 s" in result.stderr
    assert "Traceback" not in result.stderr
    # The budget (8 s) bounds the API call; the rest is starting Python, Dagster and the catalog run.
    assert result.seconds < 8 + 60, result.seconds
    FIGURES.scenario(
        "hostile:body_trickles_in",
        run_seconds=round(result.seconds, 1),
        budget_seconds=8,
        warehouse_opened_meanwhile=True,
    )


def test_a_gzip_bomb_fails_its_request_without_filling_memory(sim: SimulatorServer, tmp_path: Path) -> None:
    bomb = Reply(200, gzip_bomb(2 << 30), headers={"Content-Encoding": "gzip"})
    with HostileServer(sim.url, [on_pages(bomb)]) as hostile:
        result = run_cli(environment(tmp_path, hostile.url, sim, OE_MAX_RESPONSE_MB="64"), tmp_path)
    assert result.returncode == 1
    assert "more than 64 MiB once decoded" in result.stderr
    assert result.peak_rss_mb < 1024, (
        f"peak RSS {result.peak_rss_mb:.0f} MB for a body that inflates to 2 GiB"
    )
    FIGURES.scenario("hostile:gzip_bomb_2GiB", cap_mib=64, peak_rss_mb=round(result.peak_rss_mb))


def forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), quote_plus(value), quote_plus(value).lower()]


def files_holding(root: Path, values: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {v!r}" for v in values if v.encode() in data]
    return found


def test_a_token_endpoint_echoing_the_secret_leaks_it_nowhere(sim: SimulatorServer, tmp_path: Path) -> None:
    secret = sim.client_secret
    assert "=" in secret
    assert " " in secret
    echo = f"Invalid client secret {secret}. You sent {quote_plus(secret)}"

    def refuse(request: Request) -> Reply | None:
        if request.path == "/oauth/token":
            return Reply(401, orjson.dumps({"fault": {"faultstring": echo}}))
        return None

    with HostileServer(sim.url, [refuse]) as hostile:
        result = run_cli(environment(tmp_path, hostile.url, sim), tmp_path)
    assert result.returncode == 1
    assert "Invalid client secret ***. You sent ***" in result.stderr
    for value in forms(secret):
        assert value not in result.stdout + result.stderr
    assert files_holding(tmp_path, forms(secret)) == []
    FIGURES.scenario("hostile:token_endpoint_echoes_secret", leaked_in_files=0, leaked_in_output=0)


def test_a_data_endpoint_echoing_the_bearer_token_leaks_it_nowhere(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    def echo(request: Request) -> Reply | None:
        if request.path.endswith(PROCESS_CONTEXTS):
            return Reply(400, orjson.dumps({"message": f"Rejected {request.headers['Authorization']}."}))
        return None

    with HostileServer(sim.url, [echo]) as hostile:
        result = run_cli(environment(tmp_path, hostile.url, sim), tmp_path)
        tokens = {r.headers["Authorization"][7:] for r in hostile.seen if "Authorization" in r.headers}
    assert result.returncode == 1
    assert "Rejected Bearer ***." in result.stderr
    assert tokens
    leaked = [v for token in tokens for v in forms(token) if v in result.stdout + result.stderr]
    assert leaked == []
    assert files_holding(tmp_path, [v for token in tokens for v in forms(token)]) == []
    FIGURES.scenario(
        "hostile:api_echoes_bearer_token", tokens=len(tokens), leaked_in_files=0, leaked_in_output=0
    )
