"""`dagster dev` as a child of `oe-assets ui` and `oe-assets demo --live`, and the `.env` it reads.

`dagster dev` starts a webserver, a daemon and a code server, and stops them only when it gets
SIGINT (Ctrl-C). A SIGTERM would end it alone and leave the webserver serving. So it runs in a
process group of its own: every stop signal this process gets becomes one SIGINT to that group
(what Ctrl-C in a terminal sends), and whatever of the group outlives `dagster dev` is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from oe_assets.orchestration.runner import PROJECT_ROOT

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_TIMEOUT_SECONDS = 60.0  # how long `dagster dev` may take to stop its children
SWEEP_TIMEOUT_SECONDS = 10.0


def dagster_dev_command(port: int) -> list[str]:
    """`dagster dev` on the project's workspace, with this interpreter."""
    workspace = PROJECT_ROOT / "workspace.yaml"
    return [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-p", str(port)]


def check_port_free(port: int) -> None:
    """A busy port would end `dagster dev` with a page of its webserver's traceback: say it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise OSError(
                f"port {port} is in use (is the UI already running?): stop that, or choose another port"
            ) from None


def run_dagster_dev(port: int, *, cwd: Path, env: Mapping[str, str]) -> int:
    """Run `dagster dev` until it ends or this process is told to stop; 0 when told to stop.

    `cwd` is where `dagster dev` looks for a `.env` file (whose values win over `env`).
    """
    children: list[subprocess.Popen[bytes]] = []
    stops: list[float] = []  # when each stop signal came

    def forward(signum: int, frame: FrameType | None) -> None:
        stops.append(time.monotonic())
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        children.append(
            subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
                dagster_dev_command(port), cwd=cwd, env=dict(env), start_new_session=True
            )
        )
        if stops:  # a stop signal came before `dagster dev` existed
            forward(signal.SIGINT, None)
        code = _wait(children[0], stops)
    finally:
        for child in children:
            _sweep_group(child.pid)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stops else code


def _wait(child: subprocess.Popen[bytes], stops: list[float]) -> int:
    """`dagster dev`'s exit code; it is killed if it outlives a stop request by STOP_TIMEOUT_SECONDS."""
    while True:
        try:
            return child.wait(timeout=1)
        except subprocess.TimeoutExpired:
            if stops and time.monotonic() - stops[0] > STOP_TIMEOUT_SECONDS:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)


def _sweep_group(pgid: int) -> None:
    """Wait for the rest of the group (webserver, daemon, code server) to end, then kill it."""
    deadline = time.monotonic() + SWEEP_TIMEOUT_SECONDS
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group lives (zombies, which nobody may reap in a container, do not)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
                return True
    return False


_ASSIGNMENT = r"^\s*(?:export\s+)?{name}\s*="


def record_in_env_file(env_file: Path, values: Mapping[str, str], comment: str) -> None:
    """Set ``values`` in a `.env` file, keeping every other line as it was.

    A variable already there is replaced in place; a new one goes at the end under ``comment``.
    """
    lines = env_file.read_text().splitlines() if env_file.exists() else []
    missing = dict(values)
    for index, line in enumerate(lines):
        for name, value in values.items():
            if re.match(_ASSIGNMENT.format(name=re.escape(name)), line):
                lines[index] = f"{name}={value}"
                missing.pop(name, None)
    if missing:
        lines += [f"# {comment}", *(f"{name}={value}" for name, value in missing.items())]
    env_file.write_text("\n".join(lines) + "\n")
