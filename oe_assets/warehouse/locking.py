"""One writer per DuckDB file, across processes.

DuckDB lets a single process open a file for writing; a second process fails with a lock error.
Dagster's pool serialises our own ops, and this advisory lock makes the rule hold for anything else
(CLI, tests, a second `dagster dev`). The kernel drops a flock when its process dies, so a killed
run can never hold the warehouse. The lock file exists only while someone holds it: the holder
removes it before letting go, so no run, failed or not, leaves an empty ``.lock`` file behind.
"""

from __future__ import annotations

import contextlib
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
    fd = _acquire(path, timeout_seconds, poll_seconds)
    held[key] = 1
    try:
        yield
    finally:
        held.pop(key, None)
        # Removed while still held: whoever waits on this file finds it gone and opens a new one.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(path: Path, timeout_seconds: float, poll_seconds: float) -> int:
    """An open descriptor of ``path`` holding its flock. A holder removes the file before it lets
    go, so a lock won on a file no longer at ``path`` is worthless: open the new one and go on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            locked = _lock_until(fd, deadline, poll_seconds)
            if locked and _is_at(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if not locked:
            raise WarehouseBusyError(
                f"The warehouse lock {path} was held by another process for more than "
                f"{timeout_seconds:.0f} s; is another oe_assets run writing to it?"
            )


def _lock_until(fd: int, deadline: float, poll_seconds: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_seconds)


def _is_at(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)
