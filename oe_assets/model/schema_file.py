"""The checked-in list of expected tables (`oe_assets/schema/tables.json`).

Each declared table becomes its own asset in the lineage graph. `oe-assets schema infer`
regenerates the file from what a warehouse has seen; undeclared tables still land and are
named by the schema-drift check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema" / "tables.json"

ROOT_TABLES = {"execution_context": "context$processid", "execution_templates": "id", "accounts": "id"}
CHILD_ROOT_KEYS = {
    "execution_context": "context$processid",
    "execution_templates": "execution_templates_id",
    "accounts": "accounts_id",
}


@dataclass(frozen=True)
class DeclaredTable:
    name: str
    family: str
    parent: str | None  # None for the family's root table


def load_declared_tables(path: Path = SCHEMA_FILE) -> list[DeclaredTable]:
    """Root tables always; child tables as the file declares them (parents before children)."""
    tables = [DeclaredTable(name, name, None) for name in ROOT_TABLES]
    if path.exists():
        data = json.loads(path.read_text())
        for family, children in data.get("families", {}).items():
            for child in children:
                tables.append(DeclaredTable(child["table"], family, child["parent"]))
    return tables


def infer_declared_tables(conn: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, str]]]:
    """Child tables per family as recorded in the warehouse's `_oe_tables`."""
    rows = conn.execute(
        "SELECT family, table_name, parent_table FROM _oe_tables WHERE parent_table IS NOT NULL "
        "ORDER BY family, length(table_name), table_name"
    ).fetchall()
    families: dict[str, list[dict[str, str]]] = {name: [] for name in ROOT_TABLES}
    for family, table, parent in rows:
        families.setdefault(str(family), []).append({"table": str(table), "parent": str(parent)})
    return families


def write_schema_file(families: dict[str, list[dict[str, str]]], path: Path = SCHEMA_FILE) -> None:
    payload = {
        "about": "Expected child tables per family; regenerate with `oe-assets schema infer`.",
        "families": families,
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
