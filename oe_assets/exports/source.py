"""What the exports read from the warehouse, and the one sentence when it is not there yet."""

from __future__ import annotations

from collections.abc import Iterable

import duckdb


class MissingTablesError(ValueError):
    """The warehouse lacks tables an export reads: says which, and which command builds them."""


def table_columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The columns of ``table`` in the main schema (empty when there is no such table)."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchall()
    return {str(r[0]) for r in rows}


def require_tables(conn: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> None:
    """Raise one sentence naming the missing tables, so a user on an empty warehouse knows what to run."""
    missing = [t for t in tables if not table_columns(conn, t)]
    if missing:
        raise MissingTablesError(
            f"the warehouse has no {', '.join(missing)} yet: build it with `oe-assets materialize` "
            "(or `make demo` for the simulated data), then export again"
        )
