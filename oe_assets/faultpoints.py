"""Opt-in crash points for the reliability tests: die at a named point of a warehouse write.

Production code calls :func:`checkpoint` at a few points inside its write transactions (raw
landing before COMMIT, the flattening write after the partition delete and after the first
batch, the event-log merge before COMMIT). Nothing happens unless the environment variable
``OE_ASSETS_CRASH_AT`` names that point: then the process prints a marker line to stderr and
kills itself with SIGKILL, exactly as an operator's ``kill -9`` or the OOM killer would, so a
test can prove that the warehouse keeps the partition's previous content and that a re-run
completes it.
"""

from __future__ import annotations

import os
import signal
import sys

CRASH_AT_ENV = "OE_ASSETS_CRASH_AT"
MARKER = "oe-assets crash point reached:"

RAW_BEFORE_COMMIT = "raw_process_contexts.before_commit"
EVENT_LOG_BEFORE_COMMIT = "event_log.before_commit"


def after_delete(family: str) -> str:
    """Name of the point in a table family's write right after the partition's rows were deleted."""
    return f"{family}.after_delete"


def after_first_batch(family: str) -> str:
    """Name of the point in a table family's write right after its first batch was inserted."""
    return f"{family}.after_first_batch"


_reached: dict[str, int] = {}


def checkpoint(name: str) -> None:
    """SIGKILL this process when ``OE_ASSETS_CRASH_AT`` names this point; otherwise do nothing.

    ``OE_ASSETS_CRASH_AT=<name>`` kills at the first time the point is reached, ``<name>#<n>`` at
    the n-th (e.g. the second day of a range run, after the first day's write committed).
    """
    wanted = os.environ.get(CRASH_AT_ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition("#")
    if target != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] < (int(nth) if nth.isdigit() else 1):
        return
    sys.stderr.write(f"{MARKER} {wanted}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
