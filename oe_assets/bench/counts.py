"""Rows per table in each loader's DuckDB, keyed by a normalised JSON path so they can be compared.

Both loaders make a table of every array path, but name it differently:

* ours: ``execution_context$context&celonis_postaction_feedback$quotes$priceBreaks$value``, with
  the table's JSON path in ``_oe_tables.json_path`` (``["context", "celonis_postaction_feedback",
  "quotes", null, "priceBreaks", null]``),
* dlt: ``execution_context__context__celonis_postaction_feedback__quotes__price_breaks__list``
  (keys in snake_case, ``__`` between path steps, ``list`` for an array inside an array).

The normalised key keeps the object keys (lower case, letters and digits only) joined by ``/``
and spells an array inside an array ``list`` on both sides: ``context/celonispostactionfeedback/
quotes/pricebreaks/list``. A *family* is a first-level array with everything nested in it: the
shortest key of the same warehouse that is a prefix of the table's key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from oe_assets.warehouse import open_warehouse
from oe_assets.warehouse.sql import quote_ident

ROOT_KEY = "(root)"
_NOT_ALNUM = re.compile(r"[^0-9a-z]")


@dataclass(frozen=True)
class TableCount:
    key: str
    """normalised JSON path of the table's array (``(root)`` for the root table)"""
    table: str
    rows: int
    label: str
    """a readable JSON path (ours) or the table name (dlt)"""


def _segment(key: str) -> str:
    return _NOT_ALNUM.sub("", key.lower())


def ours_key(path: list[str | None] | tuple[str | None, ...]) -> str:
    """Normalised key of one of our table paths (``None`` = each element of an array)."""
    out: list[str] = []
    for i, step in enumerate(path):
        if step is None:
            if i == len(path) - 1 or path[i + 1] is None:
                out.append("list")  # an array whose elements are arrays
        else:
            out.append(_segment(step))
    return "/".join(out) or ROOT_KEY


def dlt_key(table: str, root: str) -> str:
    """Normalised key of a dlt table name (``<root>__a__b__list``)."""
    if table == root:
        return ROOT_KEY
    rest = table[len(root) + 2 :] if table.startswith(root + "__") else table
    return "/".join(_segment(step) for step in rest.split("__"))


def _dotted(path: list[str | None]) -> str:
    out = ""
    for step in path:
        out += "[*]" if step is None else ("." if out else "") + step
    return out or "(root)"


def _count(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}").fetchone()
    return int(row[0]) if row else 0


def count_ours(db: Path, family: str = "execution_context") -> list[TableCount]:
    """Rows per table of our family in ``db`` (paths from the ``_oe_tables`` bookkeeping)."""
    with open_warehouse(db, read_only=True) as conn:
        registered = conn.execute(
            "SELECT table_name, json_path FROM _oe_tables WHERE family = ? ORDER BY table_name", [family]
        ).fetchall()
        paths: dict[str, list[str | None]] = {
            table: json.loads(path) if path else [] for table, path in registered
        }
        return [
            TableCount(ours_key(path), table, _count(conn, "main", table), _dotted(path))
            for table, path in paths.items()
        ]


def count_dlt(db: Path, dataset: str, root: str = "execution_context") -> list[TableCount]:
    """Rows per data table of dlt's ``dataset`` in ``db`` (its own ``_dlt_*`` tables left out)."""
    with open_warehouse(db, read_only=True) as conn:
        listed = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
            "AND table_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\' ORDER BY table_name",
            [dataset],
        ).fetchall()
        return [TableCount(dlt_key(t, root), t, _count(conn, dataset, t), t) for (t,) in listed]


def family_of(key: str, keys: set[str]) -> str:
    """The shortest key in ``keys`` that is a path prefix of ``key`` (its first-level array)."""
    if key == ROOT_KEY:
        return ROOT_KEY
    steps = key.split("/")
    for n in range(1, len(steps) + 1):
        prefix = "/".join(steps[:n])
        if prefix in keys:
            return prefix
    return key


def _table_row(key: str, o: TableCount | None, d: TableCount | None, with_dlt: bool) -> dict[str, Any]:
    return {
        "key": key,
        "ours_table": o.table if o else None,
        "dlt_table": d.table if d else None,
        "ours_rows": o.rows if o else None,
        "dlt_rows": d.rows if d else None,
        "equal": (o is not None and d is not None and o.rows == d.rows) if with_dlt else None,
    }


def _family_rows(
    keys: list[str], ours_by: dict[str, TableCount], dlt_by: dict[str, TableCount], with_dlt: bool
) -> list[dict[str, Any]]:
    """Tables and rows per family; a table belongs to the family of the warehouse that has it."""
    families: dict[str, dict[str, Any]] = {}
    ours_keys, dlt_keys = set(ours_by), set(dlt_by)
    for key in keys:
        fam = family_of(key, ours_keys if key in ours_by else dlt_keys)
        entry = families.setdefault(
            fam,
            {
                "family": fam,
                "label": (ours_by[fam].label if fam in ours_by else dlt_by[fam].label),
                "tables_ours": 0,
                "tables_dlt": 0,
                "ours_rows": 0,
                "dlt_rows": 0 if with_dlt else None,
            },
        )
        for side, by in (("ours", ours_by), ("dlt", dlt_by)):
            if key in by:
                entry[f"tables_{side}"] += 1
                entry[f"{side}_rows"] += by[key].rows
    for entry in families.values():
        entry["equal"] = entry["ours_rows"] == entry["dlt_rows"] if with_dlt else None
    return list(families.values())


def compare(ours: list[TableCount], dlt: list[TableCount] | None) -> dict[str, Any]:
    """Per table and per family: rows of each loader and whether they agree (None without dlt)."""
    with_dlt = dlt is not None
    ours_by = {c.key: c for c in ours}
    dlt_by = {c.key: c for c in dlt or []}
    keys = sorted(set(ours_by) | set(dlt_by), key=lambda k: (k != ROOT_KEY, k))
    tables = [_table_row(key, ours_by.get(key), dlt_by.get(key), with_dlt) for key in keys]
    equal_tables = sum(1 for t in tables if t["equal"])
    return {
        "tables": tables,
        "families": _family_rows(keys, ours_by, dlt_by, with_dlt),
        "ours_total_rows": sum(c.rows for c in ours),
        "dlt_total_rows": sum(c.rows for c in dlt) if dlt is not None else None,
        "tables_compared": len(tables),
        "tables_equal": equal_tables if with_dlt else None,
        "all_equal": equal_tables == len(tables) if with_dlt else None,
    }
