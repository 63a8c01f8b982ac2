"""Run a command in its own process and measure it: wall seconds and peak RSS.

Peak RSS is the larger of the kernel's high-water mark for the child (``os.wait4`` ->
``ru_maxrss``) and the largest sum of RSS over the child's process tree seen by polling every
:data:`POLL_SECONDS` (psutil when installed, ``/proc`` otherwise), so helper processes a loader
starts count too.

The measured side of the protocol is here too: every ``python -m oe_assets.bench.<module>`` ends
with :func:`print_summary`, one JSON line on stdout that :func:`run_measured` reads back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.05


@dataclass
class Measured:
    """One measured process: its last JSON line on stdout, wall seconds, peak RSS."""

    command: list[str]
    returncode: int
    wall_seconds: float
    peak_rss_bytes: int
    summary: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.summary)


def _rss_linux(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children_linux(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        return []
    return found


def _tree_rss(pid: int) -> int:
    try:
        import psutil
    except ImportError:
        total, todo = 0, [pid]
        while todo:
            p = todo.pop()
            total += _rss_linux(p)
            todo.extend(_children_linux(p))
        return total
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _maxrss_bytes(value: int) -> int:
    return value if sys.platform == "darwin" else value * 1024  # Linux reports KiB


def _last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
    return {}


def run_measured(command: list[str], *, env: dict[str, str] | None = None) -> Measured:
    """Run ``command`` to completion; stdout's last JSON object line is its summary."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)  # noqa: S603
        peak = 0
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                stop.wait(POLL_SECONDS)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            wall = time.perf_counter() - began
            stop.set()
            watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return Measured(
        command=command,
        returncode=proc.returncode,
        wall_seconds=round(wall, 3),
        peak_rss_bytes=max(peak, _maxrss_bytes(usage.ru_maxrss)),
        summary=_last_json_line(stdout),
        stderr_tail=stderr[-4000:],
    )


def loader_arguments(
    module: str, description: str | None, *, profile: bool = False
) -> argparse.ArgumentParser:
    """``--input FILE --db OUT.duckdb`` (and ``--profile DUMP``): the arguments of every loader
    the runner measures on the generated file."""
    parser = argparse.ArgumentParser(prog=f"python -m oe_assets.bench.{module}", description=description)
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--db", required=True, type=Path)
    if profile:
        parser.add_argument("--profile", type=Path, default=None, help="write a cProfile dump here")
    return parser


def print_summary(run: Callable[[], dict[str, Any]], profile: Path | None = None) -> int:
    """Run ``run`` (under cProfile, dumped to ``profile``, when given) and print what it returns as
    the one JSON line :func:`run_measured` reads back; the process's exit code."""
    if profile is None:
        summary = run()
    else:
        import cProfile

        profiler = cProfile.Profile()
        summary = profiler.runcall(run)
        profiler.dump_stats(str(profile))
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
