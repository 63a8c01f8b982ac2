"""Rows of a PostgreSQL query into a DuckDB table, in bulk: for work whose SQL is DuckDB's.

Some steps compute in DuckDB what they then write (JSON paths in documents, list functions,
polars frames). On a PostgreSQL warehouse they read their inputs with :func:`pull`: PostgreSQL
writes the query's rows with ``COPY ... TO STDOUT`` as CSV, DuckDB reads the CSV with the types
the columns have in PostgreSQL (read back as DuckDB types), never a row at a time. NULL and the
empty string stay apart (an unquoted empty field is NULL, a quoted one an empty string).

A model table is pulled with :func:`pull_table`, the one way to bring a warehouse table (or some
of its columns and rows) into a scratch under the model's names: PostgreSQL holds a table or
column whose name is over 63 bytes under a shorter one (the catalog's ``physical_name``), and
cuts a longer alias as it cuts any identifier, so the columns are renamed back in DuckDB.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from oe_assets.warehouse.postgres.catalog import physical_table_name, postgres_columns
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.types import duckdb_type_of
from oe_assets.warehouse.sql import quote_ident, quote_literal


def pull(
    pg: PgConnection, query: str, params: list[object], scratch: duckdb.DuckDBPyConnection, table: str
) -> int:
    """Creates (or replaces) ``table`` in ``scratch`` with the rows of PostgreSQL's ``query``;
    returns the rows pulled. With ``params``, ``%s`` in ``query`` are bound to them and a ``%``
    of the query itself (in a quoted name: ``discount%``) is written ``%%``, as psycopg wants;
    without, the query is taken as it is."""
    bound = psycopg.ClientCursor(pg).mogrify(query, params) if params else query
    columns = _columns(pg, bound)
    with tempfile.TemporaryDirectory(prefix="oe_pull_") as folder:
        csv = Path(folder) / "rows.csv"
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(sql.SQL(bound))
        with csv.open("wb") as out, pg.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in copy:
                out.write(chunk)
        types = (
            "{" + ", ".join(f"{quote_literal(name)}: {quote_literal(dtype)}" for name, dtype in columns) + "}"
        )
        scratch.execute(
            f"CREATE OR REPLACE TABLE {quote_ident(table)} AS SELECT * FROM read_csv({quote_literal(str(csv))}, "
            f"header = false, columns = {types}, allow_quoted_nulls = false, auto_detect = false)"
        )
    counted = scratch.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()
    return int(counted[0]) if counted else 0


def pull_table(
    pg: PgConnection,
    scratch: duckdb.DuckDBPyConnection,
    table: str,
    columns: Collection[str] | None = None,
    condition: str = "",
    params: Sequence[object] = (),
    into: str | None = None,
) -> bool:
    """The model's ``table`` of PostgreSQL into ``scratch`` as ``into`` (default ``table``), under
    the model's column names, typed and with NULLs as :func:`pull` gives them: only the ``columns``
    the table has (all when None), in the table's order, so a scratch table reads as the
    warehouse's own; only the rows ``condition`` keeps (``WHERE ...`` with ``%s`` for ``params``,
    in PostgreSQL's names: a name over 63 bytes is the catalog's ``physical_name`` there). False,
    and no table made, when PostgreSQL has no such table or none of ``columns``."""
    names = postgres_columns(pg, table)
    keep = None if columns is None else set(columns)
    wanted = [column for column in names if keep is None or column in keep]
    if not wanted:
        return False
    percent = "%%" if params else "%"  # with params, psycopg reads every % of the query: a name's is %%
    select = ", ".join(quote_ident(names[column]).replace("%", percent) for column in wanted)
    source = quote_ident(physical_table_name(pg, table)).replace("%", percent)
    target = into or table
    pull(pg, f"SELECT {select} FROM {source} {condition}", list(params), scratch, target)
    for column in wanted:
        if names[column] != column:  # no clash: a model's name PostgreSQL does not hold is over 63 bytes
            scratch.execute(
                f"ALTER TABLE {quote_ident(target)} RENAME COLUMN {quote_ident(names[column])} "
                f"TO {quote_ident(column)}"
            )
    return True


def _columns(pg: PgConnection, query: str) -> list[tuple[str, str]]:
    """The query's columns as (name, DuckDB type), from PostgreSQL's description of it."""
    with pg.cursor() as cursor:
        # never prepared: the same query text may describe other columns or types next time
        cursor.execute(f"SELECT * FROM ({query}) q LIMIT 0", prepare=False)
        assert cursor.description is not None
        names = [d.name for d in cursor.description]
        oids = [d.type_code for d in cursor.description]
    typed = pg.execute(
        "SELECT oid, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(%s)", [oids]
    ).fetchall()
    type_of = {int(str(oid)): str(name) for oid, name in typed}
    return [
        (name, duckdb_type_of("query", name, type_of[oid])) for name, oid in zip(names, oids, strict=True)
    ]
