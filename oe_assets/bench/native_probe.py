"""How fast could DuckDB alone flatten the benchmark's file? A probe for the next step, not a loader.

``python -m oe_assets.bench.native_probe --input FILE --db OUT.duckdb`` prints one JSON line.

It reads the JSONL with ``read_json`` (schema inferred over every line), then builds the same
tables as our loader with one ``CREATE TABLE AS`` per array path (``unnest`` with
``generate_subscripts`` for positions, the same table names and position-path row keys), all
in DuckDB's vectorised engine with no Python per row. It ignores what makes our loader a
loader (the naming registry and its collisions, our type rules, quarantine, daily partitions
replaced in their own transactions, schema evolution), so its time is a ceiling on what moving
flattening into DuckDB could give, and its row counts are a check that it did the same work.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from duckdb.sqltypes import DuckDBPyType

from oe_assets.bench.measure import loader_arguments, print_summary
from oe_assets.flatten.naming import COLUMN_SEP, HOP_SEP, VALUE_COLUMN
from oe_assets.warehouse.sql import quote_ident, quote_literal

ROOT = "execution_context"


@dataclass
class _Plan:
    """``(table name, SELECT)`` per table, parents first."""

    queries: list[tuple[str, str]] = field(default_factory=list)


def _columns(
    dtype: DuckDBPyType, expr: str, path: list[str], out: list[tuple[str, str]], lists: list[Any]
) -> None:
    """Scalar leaves -> ``out`` as (column name, SQL); lists -> ``lists`` as (path, SQL, element type)."""
    if dtype.id == "struct":
        fields: list[tuple[str, DuckDBPyType]] = dtype.children  # type: ignore[assignment]
        for name, child in fields:
            _columns(child, f"struct_extract({expr}, {quote_literal(name)})", [*path, name], out, lists)
    elif dtype.id == "list":
        lists.append((path, expr, dtype.child))
    else:
        out.append((COLUMN_SEP.join(path) if path else VALUE_COLUMN, expr))


def _child(plan: _Plan, parent: str, source: str | None, path: list[str], expr: str, element: Any) -> None:
    hops = HOP_SEP.join(path[:-1]) + COLUMN_SEP if len(path) > 1 else ""
    name = parent + COLUMN_SEP + hops + (path[-1] if path else VALUE_COLUMN)
    if source is None:  # an array on the document itself
        rows = (
            "SELECT struct_extract(context, 'processid') AS pid, '' AS prid, "
            f"unnest({expr}) AS el, generate_subscripts({expr}, 1) - 1 AS pos FROM docs"
        )
        rid = "CAST(pos AS VARCHAR)"
    else:
        rows = (
            f"SELECT pid, rid AS prid, unnest({expr}) AS el, generate_subscripts({expr}, 1) - 1 AS pos "
            f"FROM {source}"
        )
        rid = "prid || '/' || CAST(pos AS VARCHAR)"
    table_source = f"(SELECT pid, prid, el, pos, {rid} AS rid FROM ({rows}))"
    out: list[tuple[str, str]] = []
    lists: list[Any] = []
    _columns(element, "el", [], out, lists)
    keys = [
        'pid AS "context$processid"',
        "rid AS _oe_row_id",
        "prid AS _oe_parent_row_id",
        "pos AS _oe_position",
    ]
    select = ", ".join(keys + [f"{sql} AS {quote_ident(col)}" for col, sql in out])
    plan.queries.append((name, f"SELECT {select} FROM {table_source}"))
    for sub_path, sub_expr, sub_element in lists:
        _child(plan, name, table_source, sub_path, sub_expr, sub_element)


def plan_tables(conn: duckdb.DuckDBPyConnection) -> _Plan:
    """The root table and one table per array path of the ``docs`` table's inferred type."""
    plan = _Plan()
    out: list[tuple[str, str]] = []
    lists: list[Any] = []
    relation = conn.sql("SELECT * FROM docs")
    for name, dtype in zip(relation.columns, relation.types, strict=True):
        _columns(dtype, quote_ident(name), [name], out, lists)
    plan.queries.append(
        (ROOT, f"SELECT {', '.join(f'{sql} AS {quote_ident(c)}' for c, sql in out)} FROM docs")
    )
    for path, expr, element in lists:
        _child(plan, ROOT, None, path, expr, element)
    return plan


def probe(path: Path, db: Path) -> dict[str, Any]:
    began = time.perf_counter()
    conn = duckdb.connect(str(db), config={"memory_limit": "1GB"})  # the probe's own file, not a warehouse
    try:
        conn.execute(
            "CREATE TEMP TABLE docs AS SELECT * FROM read_json(?, format = 'newline_delimited', "
            "sample_size = -1, map_inference_threshold = -1, field_appearance_threshold = 0, "
            "maximum_object_size = 100000000)",
            [str(path)],
        )
        read = time.perf_counter()
        plan = plan_tables(conn)
        rows: dict[str, int] = {}
        conn.execute("BEGIN TRANSACTION")
        for table, select in plan.queries:
            conn.execute(f"CREATE TABLE {quote_ident(table)} AS {select}")
            row = conn.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()
            rows[table] = int(row[0]) if row else 0
        conn.execute("COMMIT")
    finally:
        conn.close()
    done = time.perf_counter()
    return {
        "loader": "duckdb-native probe",
        "seconds": round(done - began, 3),
        "seconds_read_json": round(read - began, 3),
        "seconds_unnest_and_write": round(done - read, 3),
        "rows_per_table": rows,
        "peak_rss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    args = loader_arguments("native_probe", __doc__).parse_args(argv)
    return print_summary(lambda: probe(args.input, args.db))


if __name__ == "__main__":
    raise SystemExit(main())
