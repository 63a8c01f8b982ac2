"""Who may write what at the same time, on any machine: PostgreSQL advisory locks.

On DuckDB one file lock serializes every writer. On PostgreSQL, runs on different machines write
at once, so the locks are finer and live in the server (a run that dies loses its connection and,
with it, its locks):

- a **partition lock** per table family and partition, held for a whole step: two runs for the
  same day wait for each other, runs for different days do not;
- a **family lock** per table family, held by a transaction that publishes rows: shared while
  it only deletes and copies rows, exclusive while it changes the family's tables (new tables or
  columns, wider types), so no transaction reads a schema that another one is changing;
- the **DDL lock**, held while the bookkeeping tables are created, so that two first runs do not
  race on ``CREATE TABLE IF NOT EXISTS`` (PostgreSQL lets both try and fails one).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from oe_assets.warehouse.postgres.connect import PgConnection, PostgresWarehouseError

DDL_LOCK = "oe_assets.ddl"
WHOLE = "all"
"""The partition key of a write that replaces a whole table or family."""
POLL_SECONDS = 0.1


class PartitionBusyError(PostgresWarehouseError):
    """Another run kept the partition for longer than this one was willing to wait."""


def partition_lock_name(scope: str, partition_key: str) -> str:
    return f"oe_assets.partition.{scope}.{partition_key}"


def family_lock_name(family: str) -> str:
    return f"oe_assets.family.{family}"


@contextmanager
def partition_locks(
    conn: PgConnection, scope: str, partition_keys: list[str], *, timeout_seconds: float = 900.0
) -> Iterator[None]:
    """Holds the partition locks of ``partition_keys`` of ``scope`` (a family or a table) for the
    block, taken in sorted order so that two runs over overlapping ranges cannot deadlock."""
    held: list[str] = []
    try:
        for key in sorted(set(partition_keys)):
            name = partition_lock_name(scope, key)
            _wait_for(conn, name, timeout_seconds)
            held.append(name)
        yield
    finally:
        for name in reversed(held):
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])


def _wait_for(conn: PgConnection, name: str, timeout_seconds: float) -> None:
    """A session lock on ``name``, polled (no statement waits unbounded inside the server)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [name]).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise PartitionBusyError(
                f"{name.removeprefix('oe_assets.partition.')} was being written by another run for more "
                f"than {timeout_seconds:g} s"
            )
        time.sleep(POLL_SECONDS)


def transaction_lock(conn: PgConnection, name: str, *, shared: bool = False) -> None:
    """Waits for ``name`` and holds it until the current transaction ends."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(f"SELECT {function}(hashtextextended(%s, 0))", [name])


def missing_tables(conn: PgConnection, names: list[str]) -> list[str]:
    """The ``names`` no table of the current schema has."""
    rows = conn.execute(
        "SELECT n FROM unnest(%s::text[]) n WHERE to_regclass(quote_ident(n)) IS NULL", [names]
    ).fetchall()
    return [str(n) for (n,) in rows]


def create_missing_tables(conn: PgConnection, ddl: Mapping[str, str]) -> None:
    """Runs each table's ``CREATE TABLE IF NOT EXISTS`` (``ddl``: table -> statement) when a table
    is missing, under the DDL lock; inside a transaction (the lock ends with it)."""
    if not missing_tables(conn, list(ddl)):
        return
    transaction_lock(conn, DDL_LOCK)
    for table in missing_tables(conn, list(ddl)):
        conn.execute(ddl[table])
