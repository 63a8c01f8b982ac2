"""The data model as declared in ``oe_assets/model/model.json``, and the one loader that reads it.

The file declares, once, everything the code would otherwise repeat: the table families (root
table, where each document keeps its key, the raw table it is flattened from, how strictly its
child tables are checked), the child tables expected in each family with their asset keys, the
other tables the checks guard (raw landing, process mining) and the relations between tables.
The flattener's families (:mod:`oe_assets.flatten.naming`), the Celonis-model assets, the checks,
``oe-assets model export`` and ``oe-assets schema infer`` all read it through :func:`load_model`.

This module imports nothing from the package, so that every layer can read the declaration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

MODEL_FILE = Path(__file__).resolve().parent / "model.json"

Level = Literal["mandatory", "recommended", "optional"]
Severity = Literal["ERROR", "WARN"]
Role = Literal["dimension", "fact", "activity", "raw"]
AssetKeyPath = tuple[str, ...]
"""An asset key as the parts of its path: ``("execution_context", "context", …, "quotes")``."""


@dataclass(frozen=True)
class CheckLevel:
    """How a broken relation counts: its modelling level and the check's severity."""

    level: Level
    severity: Severity


@dataclass(frozen=True)
class Relation:
    """`child.child_columns` -> `parent.parent_columns` (many-to-one unless one_to_one)."""

    name: str
    child_table: str
    child_columns: tuple[str, ...]
    parent_table: str
    parent_columns: tuple[str, ...]
    level: Level
    severity: Severity
    blocking: bool = False
    one_to_one: bool = False
    description: str = ""


@dataclass(frozen=True)
class ModelTable:
    """A table of the model with its primary key (what ``oe-assets model export`` lists)."""

    name: str
    primary_key: tuple[str, ...]
    role: Role
    family: str | None = None
    parent: str | None = None
    description: str = ""


@dataclass(frozen=True)
class DeclaredTable:
    """A table of a family: its root table (``parent`` None) or a child table (an array in the JSON).

    ``asset_key`` is the table's Dagster asset key: its parent's key, the object keys between the
    parent row and the array, and the array's name; the file records it, so that declaring a new
    table never renames another.
    """

    name: str
    family: str
    parent: str | None
    asset_key: AssetKeyPath


@dataclass(frozen=True)
class FamilyDeclaration:
    """A root table and the child tables built from its documents' arrays.

    Each document keeps its key at ``root_key_path``; the root table holds it in the column that
    path names (``context$processid``, ``id``), every child table in ``root_key_column``.
    """

    root_table: str
    root_key_path: tuple[str, ...]
    root_key_column: str
    raw_table: str
    description: str
    child_to_root: CheckLevel
    child_to_parent_row: CheckLevel
    tables: tuple[DeclaredTable, ...]
    """The root table first, then the child tables, each after its parent."""


@dataclass(frozen=True)
class ModelDeclaration:
    families: tuple[FamilyDeclaration, ...]
    other_tables: tuple[ModelTable, ...]
    """Tables outside the families that the checks guard: raw landing and process mining."""
    relations: tuple[Relation, ...]
    activity_tables: tuple[str, ...]
    schema_drift_table: str
    """The asset that carries the check naming child tables seen in the data but not declared."""
    notes: Mapping[str, str]

    @property
    def declared_tables(self) -> list[DeclaredTable]:
        return [table for family in self.families for table in family.tables]

    def asset_key(self, table: str) -> AssetKeyPath:
        """A family table's declared key; any other table's key is its name."""
        return next((t.asset_key for t in self.declared_tables if t.name == table), (table,))


def load_model(path: Path = MODEL_FILE) -> ModelDeclaration:
    """Reads and checks a data-model file (the package's own unless told otherwise)."""
    data = json.loads(path.read_text())
    model = ModelDeclaration(
        families=tuple(_family(name, spec) for name, spec in data["families"].items()),
        other_tables=tuple(
            ModelTable(name, tuple(spec["primary_key"]), spec["role"], description=spec["description"])
            for name, spec in data["tables"].items()
        ),
        relations=tuple(_relation(name, spec) for name, spec in data["relations"].items()),
        activity_tables=tuple(data["activity_tables"]),
        schema_drift_table=data["schema_drift_table"],
        notes=dict(data["notes"]),
    )
    problems = list(_key_problems(model))
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return model


def _family(root_table: str, spec: dict[str, Any]) -> FamilyDeclaration:
    children = tuple(
        DeclaredTable(child["table"], root_table, child["parent"], tuple(child["asset_key"]))
        for child in spec["children"]
    )
    return FamilyDeclaration(
        root_table=root_table,
        root_key_path=tuple(spec["root_key"]["json_path"]),
        root_key_column=spec["root_key"]["child_column"],
        raw_table=spec["raw_table"],
        description=spec["description"],
        child_to_root=CheckLevel(**spec["child_relations"]["to_root"]),
        child_to_parent_row=CheckLevel(**spec["child_relations"]["to_parent_row"]),
        tables=(DeclaredTable(root_table, root_table, None, (root_table,)), *children),
    )


def _relation(name: str, spec: dict[str, Any]) -> Relation:
    columns = {key: tuple(spec[key]) for key in ("child_columns", "parent_columns")}
    return Relation(name=name, **{**spec, **columns})


def _key_problems(model: ModelDeclaration) -> Iterator[str]:
    """Keys must be unique, extend their parent's key (the catalog's folders follow the lineage),
    and differ from every other table's in the last part (the name the lineage graph shows)."""
    keys: dict[str, AssetKeyPath] = {}
    last_parts: set[str] = set()
    for table in model.declared_tables:
        parent_key = keys.get(table.parent) if table.parent else ()
        if parent_key is None:
            yield f"{table.name} is declared before its parent {table.parent}"
        elif table.asset_key[: len(parent_key)] != parent_key or len(table.asset_key) <= len(parent_key):
            yield f"the asset key of {table.name} does not extend its parent's {list(parent_key)}"
        if table.asset_key in keys.values():
            yield f"{table.name} has the asset key {list(table.asset_key)} of another table"
        if table.asset_key[-1] in last_parts:
            yield f"{table.name} shows the same name in the lineage as another table: {table.asset_key[-1]!r}"
        keys[table.name] = table.asset_key
        last_parts.add(table.asset_key[-1])


MODEL = load_model()
"""The package's data model."""
