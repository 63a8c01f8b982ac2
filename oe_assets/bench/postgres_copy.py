"""Copy our warehouse into PostgreSQL, in its own process, and time it.

``python -m oe_assets.bench.postgres_copy --db WAREHOUSE.duckdb --to postgresql://user@host:port/db``
(the password in ``PGPASSWORD``, so that it is in no process list) prints one JSON line: the
seconds of :func:`~oe_assets.warehouse.postgres.copy.copy_warehouse` into an empty schema, the
seconds of a second copy (which replaces the first whole), and the rows PostgreSQL counts per
table against the warehouse's.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path
from typing import Any

import psycopg

from oe_assets.bench.measure import print_summary
from oe_assets.warehouse.connection import open_warehouse
from oe_assets.warehouse.postgres.connect import connected
from oe_assets.warehouse.postgres.copy import copy_warehouse
from oe_assets.warehouse.postgres.url import PostgresUrl, parse_postgres_url
from oe_assets.warehouse.sql import quote_ident

SCHEMA = "oe_bench"


def _what_postgres_holds(target: PostgresUrl, tables: dict[str, str]) -> tuple[dict[str, int], str]:
    """Rows per table as PostgreSQL counts them (``tables``: warehouse name -> PostgreSQL name) and
    the server's version; then the benchmark's schema is dropped. One connection for all of it."""
    with connected(target, "--to") as conn:
        counts = {}
        for name, physical in tables.items():
            row = conn.execute(
                f"SELECT count(*) FROM {quote_ident(SCHEMA)}.{quote_ident(physical)}"
            ).fetchone()
            counts[name] = int(str(row[0])) if row else -1
        version = conn.execute("SHOW server_version").fetchone()
        _drop_schema(conn)
    return counts, str(version[0]) if version else "?"


def _drop_schema(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(SCHEMA)} CASCADE")
    conn.commit()


def measure(db: Path, target: PostgresUrl) -> dict[str, Any]:
    with connected(target, "--to") as conn:
        _drop_schema(conn)  # a schema an interrupted run left: the first copy starts empty
    with open_warehouse(db, read_only=True) as conn:
        first = copy_warehouse(conn, target, schema=SCHEMA)
        second = copy_warehouse(conn, target, schema=SCHEMA)
        names = {name: first.physical_names.get(name, name) for name in first.rows}
        in_warehouse = {
            name: int(conn.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0])  # type: ignore[index]
            for name in names
        }
    in_postgres, version = _what_postgres_holds(target, names)
    return {
        "seconds_copy": round(first.seconds, 3),
        "seconds_second_copy": round(second.seconds, 3),
        "tables": len(first.rows),
        "rows": sum(first.rows.values()),
        "tables_renamed": len(first.physical_names),
        "tables_rows_equal": sum(in_postgres[n] == in_warehouse[n] for n in names),
        "tables_rows_different": sorted(n for n in names if in_postgres[n] != in_warehouse[n]),
        "server_version": version,
        "peak_rss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oe_assets.bench.postgres_copy", description=__doc__)
    parser.add_argument("--db", required=True, type=Path, help="the warehouse to copy")
    parser.add_argument(
        "--to", required=True, help="postgresql://user@host:port/database (password: PGPASSWORD)"
    )
    args = parser.parse_args(argv)
    target = parse_postgres_url(args.to, "--to")
    try:
        return print_summary(lambda: measure(args.db, target))
    except psycopg.Error as error:
        raise SystemExit(
            f"the copy benchmark failed against {target.shown}: {type(error).__name__}"
        ) from None


if __name__ == "__main__":
    raise SystemExit(main())
