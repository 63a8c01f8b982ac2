"""Crash points for the reliability tests: die at a named point inside a warehouse write.

The production code knows nothing of them. The victim process (``reliability_victim``) calls
:func:`install_from_env` before it runs anything: when ``OE_ASSETS_CRASH_AT`` names a point, the
function around that point is wrapped so that the process prints a marker line to stderr and kills
itself with SIGKILL there, with the write's transaction open, exactly as an operator's ``kill -9``
or the OOM killer would.

``OE_ASSETS_CRASH_AT=<point>`` kills the first time the point is reached, ``<point>#<n>`` the n-th
(e.g. the second day of a range run, after the first day committed). ``OE_ASSETS_PAUSE_AT=<point>``
instead holds the process there for ``OE_ASSETS_PAUSE_SECONDS`` (its transaction and locks open),
so that a test can show what other runs do meanwhile.

The points exist on both warehouses: on PostgreSQL, a family's write reaches ``after_delete`` once
the partition's previous rows are deleted in the publishing transaction, and ``after_first_batch``
once the first table's new rows are copied in.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import duckdb

CRASH_AT_ENV = "OE_ASSETS_CRASH_AT"
PAUSE_AT_ENV = "OE_ASSETS_PAUSE_AT"
PAUSE_SECONDS_ENV = "OE_ASSETS_PAUSE_SECONDS"
MARKER = "oe-assets crash point reached:"
PAUSE_MARKER = "oe-assets pause point reached:"

RAW_BEFORE_COMMIT = "raw_process_contexts.before_commit"
RAW_MID_STAGE = "raw_process_contexts.mid_stage"
"""After the API's first page was staged, before the warehouse is opened."""
EVENT_LOG_BEFORE_COMMIT = "event_log.before_commit"


def after_delete(family: str) -> str:
    """The point in a table family's write right after the partition's previous rows were deleted."""
    return f"{family}.after_delete"


def after_first_batch(family: str) -> str:
    """The point in a table family's write right after its first batch was inserted."""
    return f"{family}.after_first_batch"


class _Point:
    """One named point and how often it was reached."""

    def __init__(self, wanted: str, pause_seconds: float | None = None) -> None:
        self.name, _, nth = wanted.partition("#")
        self.wanted = wanted
        self.nth = int(nth) if nth.isdigit() else 1
        self.reached = 0
        self.pause_seconds = pause_seconds

    def reach(self, name: str) -> None:
        if name != self.name:
            return
        self.reached += 1
        if self.reached != self.nth:
            return
        if self.pause_seconds is not None:
            sys.stderr.write(f"{PAUSE_MARKER} {self.wanted}\n")
            sys.stderr.flush()
            time.sleep(self.pause_seconds)
            return
        sys.stderr.write(f"{MARKER} {self.wanted}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def install_from_env() -> None:
    """Wraps the functions around the point ``OE_ASSETS_CRASH_AT`` names (nothing when unset)."""
    crash, pause = os.environ.get(CRASH_AT_ENV), os.environ.get(PAUSE_AT_ENV)
    if not crash and not pause:
        return
    from oe_assets.landing import raw_contexts, stage
    from oe_assets.process_mining import event_log
    from oe_assets.warehouse import writer

    if crash:
        point = _Point(crash)
    else:
        assert pause is not None
        point = _Point(pause, float(os.environ.get(PAUSE_SECONDS_ENV, "20")))
    _postgres_points(point)
    add_page = stage._StageWriter.add_page

    @functools.wraps(add_page)
    def crashing_add_page(self: Any, page: Any) -> None:
        add_page(self, page)
        point.reach(RAW_MID_STAGE)

    stage._StageWriter.add_page = crashing_add_page  # type: ignore[method-assign]
    _before_commit(raw_contexts, RAW_BEFORE_COMMIT, point)
    _before_commit(event_log, EVENT_LOG_BEFORE_COMMIT, point)
    family_writer = writer._FamilyWriter
    write_batch, delete_previous = family_writer._write_batch, family_writer._delete_previous

    @functools.wraps(write_batch)
    def crashing_write_batch(self: Any, batch: Any) -> None:
        write_batch(self, batch)
        if self.report.batches == 1:
            point.reach(after_first_batch(self.family.root_table))

    @functools.wraps(delete_previous)
    def crashing_delete_previous(self: Any, bounds: Any) -> None:
        delete_previous(self, bounds)
        point.reach(after_delete(self.family.root_table))

    family_writer._write_batch = crashing_write_batch  # type: ignore[method-assign]
    family_writer._delete_previous = crashing_delete_previous  # type: ignore[method-assign]


def _postgres_points(point: _Point) -> None:
    """The points in PostgreSQL's transactions (see the module's doc): the raw landing's and the
    event log's last statement before COMMIT, and the family's publish."""
    from oe_assets.landing import raw_contexts_pg
    from oe_assets.process_mining import event_log_pg
    from oe_assets.warehouse.postgres import family

    replace_quarantine = raw_contexts_pg._replace_quarantine

    @functools.wraps(replace_quarantine)
    def crashing_replace_quarantine(*args: Any) -> None:
        replace_quarantine(*args)
        point.reach(RAW_BEFORE_COMMIT)

    raw_contexts_pg._replace_quarantine = crashing_replace_quarantine  # type: ignore[assignment]
    take_turn, count = event_log_pg._take_turn, event_log_pg._count
    counted = [0]  # the event log's counts in this merge: the second one follows the MERGE

    @functools.wraps(take_turn)
    def counting_take_turn(*args: Any, **kwargs: Any) -> None:
        counted[0] = 0
        take_turn(*args, **kwargs)

    @functools.wraps(count)
    def crashing_count(conn: Any, table: str) -> int:
        rows = count(conn, table)
        if table == event_log_pg.EVENT_LOG:
            counted[0] += 1
            if counted[0] == 2:
                point.reach(EVENT_LOG_BEFORE_COMMIT)
        return rows

    event_log_pg._take_turn = counting_take_turn  # type: ignore[assignment]
    event_log_pg._count = crashing_count  # type: ignore[assignment]

    delete_previous, copy_rows = family._delete_previous, family._copy_rows

    @functools.wraps(delete_previous)
    def crashing_delete_previous(pg: Any, catalog: Any, partition: Any) -> dict[str, int]:
        deleted = delete_previous(pg, catalog, partition)
        point.reach(after_delete(partition.family.root_table))
        return deleted

    copied_first: set[int] = set()

    @functools.wraps(copy_rows)
    def crashing_copy_rows(scratch: Any, pg: Any, catalog: Any, table: Any, plan: Any) -> None:
        copy_rows(scratch, pg, catalog, table, plan)
        if table.rows and id(catalog) not in copied_first:
            copied_first.add(id(catalog))
            point.reach(after_first_batch(table.name))  # the family's root table comes first

    family._delete_previous = crashing_delete_previous  # type: ignore[assignment]
    family._copy_rows = crashing_copy_rows  # type: ignore[assignment]


def _before_commit(module: ModuleType, name: str, point: _Point) -> None:
    """The module's outermost transactions reach ``name`` after their body, before COMMIT."""
    transaction: Callable[[duckdb.DuckDBPyConnection], Any] = module.transaction

    @contextmanager
    def crashing(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
        with transaction(conn) as inner:
            yield inner
            point.reach(name)

    module.transaction = crashing
