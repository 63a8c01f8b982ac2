"""One writer per DuckDB file, across processes.

DuckDB lets a single process open a file for writing; a second process fails with a lock error.
Dagster's pool serialises our own ops, and this advisory lock makes the rule hold for anything else
(CLI, tests, a second `dagster dev`). The kernel drops a flock when its process dies, so a killed
run can never hold the warehouse.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WarehouseBusyError(RuntimeError):
    """Another process kept the warehouse for longer than we were willing to wait."""


def lock_path_for(database: str | Path) -> Path:
    return Path(f"{database}.lock")


_held = threading.local()  # paths this thread already holds: re-entering is free


@contextmanager
def exclusive_file_lock(
    path: Path, *, timeout_seconds: float = 600.0, poll_seconds: float = 0.05
) -> Iterator[None]:
    """Hold `path` exclusively; re-entrant within one thread (a whole run holds it around its ops)."""
    held: dict[str, int] = _held.__dict__.setdefault("paths", {})
    key = str(path.resolve())
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusyError(
                        f"The warehouse lock {path} was held by another process for more than "
                        f"{timeout_seconds:.0f} s; is another oe_assets run writing to it?"
                    ) from None
                time.sleep(poll_seconds)
        held[key] = 1
        try:
            yield
        finally:
            held.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
