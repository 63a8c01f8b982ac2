"""`oe-assets` as a user runs it, for the CLI tests: a real process in a folder of its own, and the
processes it leaves (or does not leave) behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import REPO

ROOT = REPO


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without any OE_* variable, with a DAGSTER_HOME of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OE_", "DAGSTER_"))}
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def simulator_env(tmp_path: Path, server: SimulatorServer, **extra: str) -> dict[str, str]:
    """:func:`clean_env` pointed at ``server`` (its own credentials), with a warehouse in ``tmp_path``."""
    settings = {
        "OE_API_URL": server.url,
        "OE_CLIENT_ID": server.client_id,
        "OE_CLIENT_SECRET": server.client_secret,
        "OE_WAREHOUSE": str(tmp_path / "w.duckdb"),
    }
    return clean_env(tmp_path, **{**settings, **extra})


def oe_assets(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`oe-assets ARGS` in ``cwd`` (where it writes `.env` and relative paths), to its end."""
    return subprocess.run(
        [sys.executable, "-m", "oe_assets.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Running:
    """A long-running `oe-assets` command (ui, demo --live, simulator) and its output files."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


def start(args: list[str], env: dict[str, str], cwd: Path) -> Running:
    out, err = cwd / f"{args[0]}.stdout.txt", cwd / f"{args[0]}.stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "oe_assets.cli", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    return Running(process, out, err)


def port_listens(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until_served(url: str, running: Running, timeout: float = 180) -> None:
    """Until ``url`` answers 200 (the process must not end meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert running.process.poll() is None, f"ended with {running.process.returncode}:\n{running.output()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5, trust_env=False).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s:\n{running.output()[-3000:]}")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process from /proc, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[1]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie nobody reaped is not running)."""
    return {pid for pid in pids if (stat := _stat(pid)) is not None and stat[0] != "Z"}


def kill_all(pids: set[int]) -> None:
    for pid in alive(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_and_wait(running: Running, signum: int, timeout: float = 90) -> tuple[int, set[int]]:
    """Send ``signum`` to the `oe-assets` process alone, as `kill` or Ctrl-C does; returns its exit
    code and the processes it had started that still run once it has ended (killed afterwards)."""
    tree = descendants(running.process.pid)
    running.process.send_signal(signum)
    try:
        code = running.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all(tree | {running.process.pid})
        raise
    left = alive(tree)
    kill_all(left)
    return code, left
