"""Asset checks generated from the data model: foreign keys, primary keys, schema drift."""

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_spec import AssetCheckSpec

from oe_assets.model.data_model import DataModel
from oe_assets.model.declaration import MODEL_FILE, ModelTable, Relation
from oe_assets.model.integrity import (
    Checked,
    IntegrityResult,
    check_primary_key,
    check_relation,
    undeclared_tables,
)
from oe_assets.orchestration.partitions import run_dates
from oe_assets.orchestration.resources import DUCKDB_POOL, WarehouseResource
from oe_assets.warehouse.postgres.connect import one_snapshot

_SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}
TABLE_REF_LOADER = "duckdb_table_ref"


@dataclass(frozen=True)
class SchemaDrift:
    """What the schema-drift check compares the warehouse's tables with."""

    declared: frozenset[str]


Subject = ModelTable | Relation | SchemaDrift
"""What one check guards: a table's primary key, a relation, or the declared tables."""


def table_ref_loader(model: DataModel) -> dg.InputManagerDefinition:
    """The input manager that gives a check the table of an upstream asset, loading no data (an
    asset's key is not its table's name: child tables have readable key paths). The name is the
    model's on either warehouse: the checks find a PostgreSQL table under its physical name."""
    tables = {_asset_key(model, t.name): t.name for t in model.tables}

    @dg.input_manager(
        description="Gives a check the warehouse table name of an upstream asset, loading no data."
    )
    def duckdb_table_ref(context: dg.InputContext) -> str:
        return tables[context.asset_key]

    return duckdb_table_ref


class TableCheckSpec(AssetCheckSpec):
    """Table names keep `$`, `&` and `.`; Dagster's op output names may not, so those are replaced."""

    def get_python_identifier(self) -> str:
        return _safe(super().get_python_identifier())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _asset_key(model: DataModel, table: str) -> dg.AssetKey:
    return dg.AssetKey(model.declaration.asset_key(table))


def _check_name(prefix: str, table: str) -> str:
    return f"{prefix}_" + _safe(table)


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


def _primary_key_spec(model: DataModel, table: ModelTable) -> TableCheckSpec:
    return TableCheckSpec(
        name=_check_name("pk", table.name),
        asset=_asset_key(model, table.name),
        description=f"Primary key ({', '.join(table.primary_key)}) of {table.name} is unique and not null.",
        blocking=table.role != "fact",
    )


def _relation_spec(model: DataModel, relation: Relation) -> TableCheckSpec:
    parent = relation.parent_table
    return TableCheckSpec(
        name=_check_name("fk", relation.name),
        asset=_asset_key(model, relation.child_table),
        description=(
            f"[{relation.level}, {relation.severity}] {relation.child_table}.{', '.join(relation.child_columns)} -> "
            f"{parent}.{', '.join(relation.parent_columns)}"
            + (" (1:1 both ways)" if relation.one_to_one else "")
            + (f". {relation.description}" if relation.description else "")
        ),
        blocking=relation.blocking,
        additional_deps=[_asset_key(model, parent)] if parent != relation.child_table else [],
    )


def _drift_spec(model: DataModel) -> TableCheckSpec:
    return TableCheckSpec(
        name="schema_drift",
        asset=_asset_key(model, model.declaration.schema_drift_table),
        description=f"Every child table seen in the data is declared in oe_assets/model/{MODEL_FILE.name} (WARN).",
    )


def build_checks(model: DataModel) -> list[dg.AssetChecksDefinition]:
    """One multi-asset check per table family (one per other guarded table): a family's tables are
    written by one step, so its checks run right after it, in one step of their own."""
    family_of = {t.name: t.family or t.name for t in model.tables}
    specs: dict[str, list[tuple[TableCheckSpec, Subject]]] = defaultdict(list)
    for table in model.tables:
        specs[family_of[table.name]].append((_primary_key_spec(model, table), table))
    for relation in model.relations:
        specs[family_of[relation.child_table]].append((_relation_spec(model, relation), relation))
    drift = SchemaDrift(frozenset(t.name for t in model.declaration.declared_tables))
    specs[family_of[model.declaration.schema_drift_table]].append((_drift_spec(model), drift))
    return [_build_check_group(model, group, items) for group, items in specs.items()]


def _guarded_tables(items: Sequence[tuple[TableCheckSpec, Subject]]) -> list[str]:
    """The tables a group's checks read: each check's own table, then the parents it joins."""
    own = [s.name for _, s in items if isinstance(s, ModelTable)]
    joined = [t for _, s in items if isinstance(s, Relation) for t in (s.child_table, s.parent_table)]
    return list(dict.fromkeys([*own, *joined]))


def _evaluate(
    conn: Checked, subject: Subject, own_days: Sequence[date] | None
) -> tuple[IntegrityResult, dg.AssetCheckSeverity]:
    if isinstance(subject, ModelTable):
        return check_primary_key(conn, subject.name, subject.primary_key), dg.AssetCheckSeverity.ERROR
    if isinstance(subject, Relation):
        return check_relation(conn, subject, own_days), _SEVERITY[subject.severity]
    return undeclared_tables(conn, subject.declared), dg.AssetCheckSeverity.WARN


def _build_check_group(
    model: DataModel, group: str, items: Sequence[tuple[TableCheckSpec, Subject]]
) -> dg.AssetChecksDefinition:
    by_name = {spec.name: (spec, subject) for spec, subject in items}
    # Inputs instead of deps: Dagster derives dep input names from asset keys, which JSON keys break.
    ins = {
        f"table_{i}": dg.AssetIn(key=_asset_key(model, t), input_manager_key=TABLE_REF_LOADER)
        for i, t in enumerate(_guarded_tables(items))
    }

    @dg.multi_asset_check(
        name=_check_name("checks", group),
        specs=[spec for spec, _ in items],
        can_subset=True,
        pool=DUCKDB_POOL,
        ins=ins,
    )
    def check_group(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, **table_names: str
    ) -> Iterator[dg.AssetCheckResult]:
        if warehouse.on_postgres:  # runs write at once: a 1:1 relation's parents only of this run's days
            own_days = run_dates(context.run.tags)
            with warehouse.postgres() as pg, one_snapshot(pg):
                yield from _run_checks(pg, context.selected_asset_check_keys, by_name, own_days)
            return
        with warehouse.get_connection() as conn:
            yield from _run_checks(conn, context.selected_asset_check_keys, by_name, None)

    return check_group


def _run_checks(
    conn: Checked,
    selected: Iterable[dg.AssetCheckKey],
    by_name: Mapping[str, tuple[TableCheckSpec, Subject]],
    own_days: Sequence[date] | None,
) -> Iterator[dg.AssetCheckResult]:
    for check_key in sorted(selected, key=lambda k: k.name):
        spec, subject = by_name[check_key.name]
        outcome, severity = _evaluate(conn, subject, own_days)
        yield _result(check_key, outcome, severity, spec.description or "")
