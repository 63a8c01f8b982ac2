"""Tables, primary keys and foreign keys of the Celonis-shaped model (seed section 11).

Declared once here; the Dagster checks and `oe-assets model export` are both generated from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from oe_assets.model.schema_file import CHILD_ROOT_KEYS, ROOT_TABLES, DeclaredTable

Level = Literal["mandatory", "recommended", "optional"]
Severity = Literal["ERROR", "WARN"]

ROW_ID = "_oe_row_id"
PARENT_ROW_ID = "_oe_parent_row_id"


@dataclass(frozen=True)
class ModelTable:
    name: str
    primary_key: tuple[str, ...]
    role: Literal["dimension", "fact", "activity", "raw"]
    family: str | None = None
    parent: str | None = None
    description: str = ""


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
class DataModel:
    tables: tuple[ModelTable, ...]
    relations: tuple[Relation, ...]
    activity_tables: tuple[str, ...] = ("event_log", "activity_log")
    notes: dict[str, str] = field(default_factory=dict)

    def table(self, name: str) -> ModelTable:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def relations_guarding(self, table: str) -> list[Relation]:
        return [r for r in self.relations if r.child_table == table]

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
            "notes": self.notes,
        }


def build_data_model(declared: list[DeclaredTable]) -> DataModel:
    tables: list[ModelTable] = [
        ModelTable(
            "execution_context",
            ("context$processid",),
            "dimension",
            "execution_context",
            description="One row per process context (a run of a digital process).",
        ),
        ModelTable(
            "execution_templates",
            ("id",),
            "dimension",
            "execution_templates",
            description="One row per digital process (execution template).",
        ),
        ModelTable("accounts", ("id",), "dimension", "accounts", description="One row per OE tenant."),
        ModelTable(
            "event_log",
            ("instance_id",),
            "activity",
            description="The seed's event log: one event per process context.",
        ),
        ModelTable(
            "activity_log",
            ("case_id", "activity", "event_time"),
            "activity",
            description="One row per (case, activity, timestamp).",
        ),
        ModelTable(
            "raw_process_contexts", ("process_id",), "raw", description="Process contexts as received."
        ),
        ModelTable("raw_execution_templates", ("id",), "raw", description="Digital processes as received."),
        ModelTable("raw_accounts", ("id",), "raw", description="Tenants as received."),
    ]
    relations: list[Relation] = [
        Relation(
            "event_log_instance_to_context",
            "event_log",
            ("instance_id",),
            "execution_context",
            ("context$processid",),
            "mandatory",
            "ERROR",
            blocking=True,
            one_to_one=True,
            description="Seed: link Process Context with Event Log (1:1).",
        ),
        Relation(
            "context_to_template",
            "execution_context",
            ("context$executionTemplateID",),
            "execution_templates",
            ("id",),
            "mandatory",
            "ERROR",
            blocking=True,
            description="Seed: a process context belongs to one digital process.",
        ),
        Relation(
            "activity_case_to_context",
            "activity_log",
            ("case_id",),
            "execution_context",
            ("context$processid",),
            "recommended",
            "ERROR",
            description="Every activity belongs to a process context.",
        ),
        Relation(
            "template_tenant_to_account",
            "execution_templates",
            ("tenant",),
            "accounts",
            ("id",),
            "optional",
            "WARN",
            description="Seed: multi-tenant separation (Account -> Execution Template).",
        ),
    ]
    for item in declared:
        if item.parent is None:
            continue
        root_key = CHILD_ROOT_KEYS[item.family]
        tables.append(ModelTable(item.name, (root_key, ROW_ID), "fact", item.family, item.parent))
        is_trigger = item.name == "execution_templates$trigger"
        relations.append(
            Relation(
                f"{item.name}__to_root",
                item.name,
                (root_key,),
                item.family,
                (ROOT_TABLES[item.family],),
                "optional" if is_trigger or item.family != "execution_context" else "recommended",
                "WARN" if is_trigger or item.family != "execution_context" else "ERROR",
                description=f"Child table -> {item.family} via {root_key}.",
            )
        )
        # Row ids are paths inside one document: a parent row is found by (root key, its path).
        if item.parent == item.family:
            child_columns: tuple[str, ...] = (root_key,)
            parent_columns: tuple[str, ...] = (ROOT_TABLES[item.family],)
        else:
            child_columns, parent_columns = (root_key, PARENT_ROW_ID), (root_key, ROW_ID)
        relations.append(
            Relation(
                f"{item.name}__to_parent_row",
                item.name,
                child_columns,
                item.parent,
                parent_columns,
                "recommended",
                "ERROR" if item.family == "execution_context" else "WARN",
                description="Each child row's parent link resolves.",
            )
        )
    return DataModel(
        tables=tuple(tables),
        relations=tuple(relations),
        notes={
            "activity_table": "event_log is the seed's activity table; activity_log is the activity-level log.",
            "retention": (
                "contexts the API no longer returns stay in every table, marked: raw_process_contexts.deleted_at, "
                "execution_context._oe_deleted_at and event_log._oe_deleted_at (when first missed); "
                "`oe-assets prune --deleted` removes them."
            ),
            "child_keys": (
                f"child rows are keyed by (root key, {ROW_ID}): {ROW_ID} is the row's position path inside "
                f"its document ('2', '2/0'), {PARENT_ROW_ID} its parent row's path ('' for the document's "
                "root row), _oe_position its index in the array."
            ),
        },
    )
