"""Asset checks generated from the data model: foreign keys, primary keys, schema drift."""

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_spec import AssetCheckSpec

from oe_assets.model.data_model import DataModel, ModelTable, Relation
from oe_assets.model.integrity import IntegrityResult, check_primary_key, check_relation, table_exists
from oe_assets.model.schema_file import DeclaredTable
from oe_assets.orchestration.resources import DUCKDB_POOL, WarehouseResource

_SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}
TABLE_REF_LOADER = "duckdb_table_ref"


@dg.input_manager(description="Gives a check the DuckDB table name of an upstream asset, loading no data.")
def duckdb_table_ref(context: dg.InputContext) -> str:
    return context.asset_key.path[-1]


class TableCheckSpec(AssetCheckSpec):
    """Table names keep `$`, `&` and `.`; Dagster's op output names may not, so those are replaced."""

    def get_python_identifier(self) -> str:
        return _safe(super().get_python_identifier())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _check_name(prefix: str, table: str) -> str:
    return f"{prefix}_" + _safe(table)


def _relation_check_name(relation: Relation) -> str:
    return _check_name("fk", relation.name)


def _result(
    key: dg.AssetCheckKey, outcome: IntegrityResult, severity: dg.AssetCheckSeverity, about: str
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=outcome.passed,
        severity=severity,
        metadata={
            "offending_rows": dg.MetadataValue.int(outcome.offending_rows),
            "sample_offending_keys": dg.MetadataValue.json(outcome.sample),
            "checks": dg.MetadataValue.text(about),
            "detail": dg.MetadataValue.text(outcome.detail or ("ok" if outcome.passed else "")),
        },
    )


def build_checks(model: DataModel, declared: Sequence[DeclaredTable]) -> list[dg.AssetChecksDefinition]:
    """One multi-asset check per guarded asset, so each runs right after its asset."""
    specs: dict[str, list[tuple[dg.AssetCheckSpec, object]]] = defaultdict(list)
    asset_tables = {t.name for t in model.tables if t.role != "raw"} | {
        "raw_process_contexts",
        "raw_execution_templates",
        "raw_accounts",
    }
    for table in model.tables:
        if table.name not in asset_tables:
            continue
        spec = TableCheckSpec(
            name=_check_name("pk", table.name),
            asset=table.name,
            description=f"Primary key ({', '.join(table.primary_key)}) of {table.name} is unique and not null.",
            blocking=table.role != "fact",
        )
        specs[table.name].append((spec, table))
    for relation in model.relations:
        spec = TableCheckSpec(
            name=_relation_check_name(relation),
            asset=relation.child_table,
            description=(
                f"[{relation.level}, {relation.severity}] {relation.child_table}.{', '.join(relation.child_columns)} -> "
                f"{relation.parent_table}.{', '.join(relation.parent_columns)}"
                + (" (1:1 both ways)" if relation.one_to_one else "")
                + (f". {relation.description}" if relation.description else "")
            ),
            blocking=relation.blocking,
            additional_deps=[relation.parent_table] if relation.parent_table != relation.child_table else [],
        )
        specs[relation.child_table].append((spec, relation))
    declared_names = {t.name for t in declared}
    drift_spec = TableCheckSpec(
        name="schema_drift",
        asset="execution_context",
        description="Every child table seen in the data is declared in oe_assets/schema/tables.json (WARN).",
    )
    specs["execution_context"].append((drift_spec, "drift"))

    checks = []
    for asset_name, items in specs.items():
        checks.append(_build_check_group(asset_name, items, declared_names))
    return checks


def _build_check_group(
    asset_name: str, items: list[tuple[dg.AssetCheckSpec, object]], declared_names: set[str]
) -> dg.AssetChecksDefinition:
    by_name = {spec.name: (spec, subject) for spec, subject in items}
    parents = {s.parent_table for _, s in items if isinstance(s, Relation) and s.parent_table != asset_name}
    tables = [asset_name, *sorted(parents)]
    # Inputs instead of deps: Dagster derives dep input names from asset keys, which `$`/`&` break.
    ins = {
        f"table_{i}": dg.AssetIn(key=dg.AssetKey([t]), input_manager_key=TABLE_REF_LOADER)
        for i, t in enumerate(tables)
    }

    @dg.multi_asset_check(
        name=_check_name("checks", asset_name),
        specs=[spec for spec, _ in items],
        can_subset=True,
        pool=DUCKDB_POOL,
        ins=ins,
    )
    def check_group(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, **table_names: str
    ) -> Iterator[dg.AssetCheckResult]:
        with warehouse.get_connection() as conn:
            for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
                spec, subject = by_name[check_key.name]
                if isinstance(subject, ModelTable):
                    outcome = check_primary_key(conn, subject.name, subject.primary_key)
                    yield _result(check_key, outcome, dg.AssetCheckSeverity.ERROR, spec.description or "")
                elif isinstance(subject, Relation):
                    outcome = check_relation(conn, subject)
                    yield _result(check_key, outcome, _SEVERITY[subject.severity], spec.description or "")
                else:
                    seen: list[str] = []
                    if table_exists(conn, "_oe_tables"):
                        seen = [
                            str(r[0])
                            for r in conn.execute("SELECT table_name FROM _oe_tables ORDER BY 1").fetchall()
                        ]
                    undeclared = [t for t in seen if t not in declared_names]
                    outcome = IntegrityResult(
                        not undeclared,
                        len(undeclared),
                        undeclared[:10],
                        detail="undeclared tables: " + ", ".join(undeclared) if undeclared else "",
                    )
                    yield _result(check_key, outcome, dg.AssetCheckSeverity.WARN, spec.description or "")

    return check_group
