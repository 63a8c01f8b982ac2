"""Tables, primary keys and foreign keys of the Celonis-shaped model, derived from its declaration.

The declaration (:mod:`oe_assets.model.declaration`) names the families and their child tables;
this module adds what follows from the naming rules: every child table's key (root key, row id)
and its two relations (to the family's root, to its parent row). The Dagster checks and
``oe-assets model export`` both read the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

from oe_assets.flatten.naming import PARENT_ROW_ID, ROW_ID, table_family
from oe_assets.model.declaration import (
    DeclaredTable,
    FamilyDeclaration,
    ModelDeclaration,
    ModelTable,
    Relation,
)


@dataclass(frozen=True)
class DataModel:
    declaration: ModelDeclaration
    tables: tuple[ModelTable, ...]
    relations: tuple[Relation, ...]

    @property
    def activity_tables(self) -> tuple[str, ...]:
        return self.declaration.activity_tables

    def to_dict(self) -> dict[str, object]:
        """Machine-readable export: recreate the model in Celonis or any BI tool."""
        return {
            "tables": [
                {
                    **asdict(t),
                    "primary_key": list(t.primary_key),
                    "is_activity_table": t.name in self.activity_tables,
                }
                for t in self.tables
            ],
            "relations": [
                {
                    **asdict(r),
                    "child_columns": list(r.child_columns),
                    "parent_columns": list(r.parent_columns),
                    "cardinality": "1:1" if r.one_to_one else "N:1",
                }
                for r in self.relations
            ],
            "activity_tables": list(self.activity_tables),
            "notes": dict(self.declaration.notes),
        }


def build_data_model(declaration: ModelDeclaration) -> DataModel:
    """Root tables, the other declared tables, then every child table; declared relations first."""
    children = [(f, t, t.parent) for f in declaration.families for t in f.tables if t.parent is not None]
    return DataModel(
        declaration=declaration,
        tables=(
            *(_root_table(f) for f in declaration.families),
            *declaration.other_tables,
            *(_child_table(f, t) for f, t, _ in children),
        ),
        relations=(
            *declaration.relations,
            *(r for f, t, parent in children for r in _child_relations(f, t.name, parent)),
        ),
    )


def _root_table(family: FamilyDeclaration) -> ModelTable:
    return ModelTable(
        family.root_table,
        (table_family(family).root_key_natural_column,),
        "dimension",
        family.root_table,
        description=family.description,
    )


def _child_table(family: FamilyDeclaration, table: DeclaredTable) -> ModelTable:
    """A child row is keyed by its document's key and its position path inside the document."""
    return ModelTable(table.name, (family.root_key_column, ROW_ID), "fact", family.root_table, table.parent)


def _child_relations(family: FamilyDeclaration, table: str, parent: str) -> Iterator[Relation]:
    """To the family's root table by the root key, and to the parent row: a parent row is found by
    (root key, its row id), the root row by the root key alone."""
    key, root_key = family.root_key_column, table_family(family).root_key_natural_column
    yield Relation(
        f"{table}__to_root",
        table,
        (key,),
        family.root_table,
        (root_key,),
        family.child_to_root.level,
        family.child_to_root.severity,
        description=f"Child table -> {family.root_table} via {key}.",
    )
    child_columns: tuple[str, ...] = (key,) if parent == family.root_table else (key, PARENT_ROW_ID)
    parent_columns: tuple[str, ...] = (root_key,) if parent == family.root_table else (key, ROW_ID)
    yield Relation(
        f"{table}__to_parent_row",
        table,
        child_columns,
        parent,
        parent_columns,
        family.child_to_parent_row.level,
        family.child_to_parent_row.severity,
        description="Each child row's parent link resolves.",
    )
