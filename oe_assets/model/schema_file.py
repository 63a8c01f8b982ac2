"""`oe-assets schema infer`: the child tables a warehouse has seen, written into the data-model file.

Each declared child table becomes its own asset in the lineage graph; tables that land without
being declared are named by the schema-drift check. A table already declared keeps its asset key.
A new one gets its parent's key, the object keys between the parent row and its array, and the
array's name (``["execution_context", "context", "celonis_postaction_feedback", "quotes"]``): the
lineage graph shows the last part, so when arrays of one parent share a name, each of them puts
the first object key where their paths differ in front (``quote.requested.items`` beside
``fetch_inventory.items``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from oe_assets.flatten.naming import VALUE_COLUMN, ColumnPath, relative_table_path, segment
from oe_assets.model.declaration import MODEL, MODEL_FILE, AssetKeyPath, ModelDeclaration

ChildEntry = dict[str, Any]
"""A child table as the file declares it: ``{"table", "parent", "asset_key"}``."""


def infer_declared_tables(
    conn: duckdb.DuckDBPyConnection, model: ModelDeclaration = MODEL
) -> dict[str, list[ChildEntry]]:
    """Child tables per family as recorded in the warehouse's `_oe_tables`, with their asset keys."""
    rows = conn.execute(
        "SELECT family, table_name, parent_table, json_path FROM _oe_tables "
        "ORDER BY family, length(table_name), table_name"
    ).fetchall()
    paths = {str(table): tuple(json.loads(path)) for _, table, _, path in rows if path is not None}
    known = {t.name: t.asset_key for t in model.declared_tables}
    families: dict[str, list[ChildEntry]] = {}
    for family in model.families:
        relpaths = {
            str(table): relative_table_path(paths[table], paths.get(parent, ()), parent == family.root_table)
            for fam, table, parent, _ in rows
            if fam == family.root_table and parent is not None
        }
        parents = {str(table): str(parent) for fam, table, parent, _ in rows if str(table) in relpaths}
        keys = assign_asset_keys(family.root_table, parents, relpaths, known)
        families[family.root_table] = [
            {"table": table, "parent": parents[table], "asset_key": list(keys[table])} for table in relpaths
        ]
    return families


def assign_asset_keys(
    root_table: str,
    parents: Mapping[str, str],
    relpaths: Mapping[str, ColumnPath],
    known: Mapping[str, AssetKeyPath],
) -> dict[str, AssetKeyPath]:
    """Asset keys of a family's child tables (given parents first), known ones kept as declared."""
    keys: dict[str, AssetKeyPath] = {root_table: (root_table,)}
    for parent in dict.fromkeys(parents.values()):
        siblings = [table for table in parents if parents[table] == parent]
        names = _last_parts(siblings, relpaths, {t: known[t][-1] for t in siblings if t in known})
        for table in siblings:
            hops = tuple(segment(hop) for hop in relpaths[table][:-1])
            keys[table] = known.get(table) or (*keys[parent], *hops, names[table])
    return keys


def _plain_name(relpath: ColumnPath) -> str:
    """The array's own name; an array inside an array is ``value``, as in its table's name."""
    return segment(relpath[-1]) if relpath else VALUE_COLUMN


def _last_parts(
    siblings: Sequence[str], relpaths: Mapping[str, ColumnPath], known: Mapping[str, str]
) -> dict[str, str]:
    """The name each new sibling shows in the lineage: its array's name, unless another sibling's
    array has that name too; then the first object key where their paths differ, a dot, the name."""
    plain = {table: _plain_name(relpaths[table]) for table in siblings}
    names = dict(known)
    for table in siblings:
        if table in known:
            continue
        alike = [relpaths[t][:-1] for t in siblings if t != table and plain[t] == plain[table]]
        hops = relpaths[table][:-1]
        distinct = [i for i in range(len(hops)) if all(other[: i + 1] != hops[: i + 1] for other in alike)]
        name = f"{segment(hops[distinct[0]])}.{plain[table]}" if alike and distinct else plain[table]
        names[table] = table if name in names.values() else name
    return names


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
