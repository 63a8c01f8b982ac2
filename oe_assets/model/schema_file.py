"""`oe-assets schema infer`: the child tables a warehouse has seen, written into the data-model file.

Each declared child table becomes its own asset in the lineage graph; tables that land without
being declared are named by the schema-drift check. A table already declared keeps its asset key.
A new one gets its parent's key, the object keys between the parent row and its array, and the
name the lineage graph shows (the key's last part), which no other table of the graph shows:
the array's name (``quotes``); for an array inside an array, the outer array's name too
(``priceBreaks.value``); when arrays elsewhere share the name, the first JSON key where their paths
differ (``quote.requested.items`` beside ``fetch_inventory.items``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from oe_assets.flatten.naming import VALUE_COLUMN, TablePath, relative_table_path, segment
from oe_assets.model.declaration import MODEL, MODEL_FILE, ModelDeclaration

ChildEntry = dict[str, Any]
"""A child table as the file declares it: ``{"table", "parent", "asset_key"}``."""


def infer_declared_tables(
    conn: duckdb.DuckDBPyConnection, model: ModelDeclaration = MODEL
) -> dict[str, list[ChildEntry]]:
    """Child tables per family as recorded in the warehouse's `_oe_tables`, with their asset keys."""
    rows = conn.execute(
        "SELECT family, table_name, parent_table, json_path FROM _oe_tables WHERE parent_table IS NOT NULL "
        "ORDER BY family, length(table_name), table_name"
    ).fetchall()
    tables = {str(t): (str(fam), str(parent), tuple(json.loads(path))) for fam, t, parent, path in rows}
    known = {t.name: t.asset_key for t in model.declared_tables}
    names = shown_names({t: path for t, (_, _, path) in tables.items()}, {t: k[-1] for t, k in known.items()})
    keys: dict[str, tuple[str, ...]] = {f.root_table: (f.root_table,) for f in model.families}
    for table, (_, parent, path) in tables.items():  # parents come first: shorter names
        parent_path = tables[parent][2] if parent in tables else ()
        hops = relative_table_path(path, parent_path, parent not in tables)[:-1]
        keys[table] = known.get(table) or (*keys[parent], *(segment(h) for h in hops), names[table])
    families: dict[str, list[ChildEntry]] = {f.root_table: [] for f in model.families}
    for table, (family, parent, _) in tables.items():
        families[family].append({"table": table, "parent": parent, "asset_key": list(keys[table])})
    return families


def shown_names(paths: Mapping[str, TablePath], known: Mapping[str, str]) -> dict[str, str]:
    """The name each table shows in the lineage graph (see the module's docstring); declared
    tables keep theirs. ``paths`` are the tables' JSON paths (``None`` = each element of an array)."""
    plain = {table: _array_name(path) for table, path in paths.items()}
    repeated = Counter(plain.values())
    names = dict(known)
    for table, path in paths.items():
        if table in known:
            continue
        name = plain[table]
        if name == VALUE_COLUMN:
            name = f"{_outer_array(path)}.{name}"
        elif repeated[name] > 1:
            others = [_hops(p) for t, p in paths.items() if t != table and plain[t] == name]
            qualifier = _first_difference(_hops(path), others)
            name = f"{qualifier}.{name}" if qualifier else name
        names[table] = table if name in names.values() else name
    return names


def _array_name(path: TablePath) -> str:
    """The array's own name; an array inside an array is ``value``, as in its table's name."""
    return segment(path[-1]) if path and path[-1] is not None else VALUE_COLUMN


def _outer_array(path: TablePath) -> str:
    """The name of the array an array-in-an-array sits in (the last key before its elements)."""
    return segment(next(k for k in reversed(path) if k is not None))


def _hops(path: TablePath) -> tuple[str, ...]:
    """The JSON keys before the array's own name."""
    keys = [segment(k) for k in path if k is not None]
    return tuple(keys[:-1])


def _first_difference(hops: tuple[str, ...], others: list[tuple[str, ...]]) -> str:
    """The first key of ``hops`` where it parts from every other path (else its last key)."""
    for i, key in enumerate(hops):
        if all(other[: i + 1] != hops[: i + 1] for other in others):
            return key
    return hops[-1] if hops else ""


def write_schema_file(families: Mapping[str, Sequence[ChildEntry]], path: Path = MODEL_FILE) -> None:
    """The package's data-model file with these child tables, written to ``path``."""
    data = json.loads(MODEL_FILE.read_text())
    for root_table, children in families.items():
        data["families"][root_table]["children"] = list(children)
    path.write_text(json_text(data) + "\n")


def json_text(value: Any, indent: str = "") -> str:
    """JSON with two-space indents; a list of plain values on one line (asset keys stay legible),
    and so a short object of plain values (``{"level": "optional", "severity": "WARN"}``)."""
    plain = json.dumps(value, ensure_ascii=False)
    items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
    nested = any(isinstance(item, dict | list) for item in items)
    if not isinstance(value, dict | list) or (not nested and (isinstance(value, list) or len(plain) <= 80)):
        return plain
    inner = indent + "  "
    if isinstance(value, dict):
        lines = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {json_text(v, inner)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(lines) + "\n" + indent + "}"
    return "[\n" + ",\n".join(inner + json_text(item, inner) for item in value) + "\n" + indent + "]"
