"""The `celonis_model` layer: the tables the Celonis extractor builds, one asset per table.

The families and their tables come from the data-model file (:mod:`oe_assets.model.declaration`).
A root table's asset key is its name; a child table's is a path (its parent's key, the JSON keys
down to its array, the array's name), so that the lineage graph, which shows a key's last part,
names it readably; the exact table name is its ``dagster/table_name``.
"""

import re
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import dagster as dg

from oe_assets.flatten import CONTEXTS, FAMILIES
from oe_assets.landing.retention import write_partitions_marking_deleted
from oe_assets.load.catalog import rebuild_catalog_family, rebuild_catalog_family_pg
from oe_assets.load.contexts_pg import write_landed_partitions_pg
from oe_assets.model.declaration import DeclaredTable, FamilyDeclaration, ModelDeclaration
from oe_assets.orchestration.metadata import OWNERS, Warehouse, family_tables, has_table, table_metadata
from oe_assets.orchestration.partitions import CATALOG_REFRESH, CONTEXTS_REFRESH, REFRESH_TAG, partition_dates
from oe_assets.orchestration.resources import DUCKDB_POOL, WarehouseResource, warehouse_kind
from oe_assets.warehouse import WriteReport

CELONIS_GROUP = "celonis_model"

_DESCRIPTIONS = {
    "execution_context": (
        "Process Context (Celonis: dimension). One row per process context; objects flattened into "
        "`$`-joined columns (`context$processid`, `metadata$updatedAt`, `context$order.found$orderId`). "
        "Primary key `context$processid`; links to `execution_templates.id` via `context$executionTemplateID`. "
        "`_oe_deleted_at`: when the API first stopped returning the context (kept until `oe-assets prune`)."
    ),
    "execution_templates": (
        "Execution Template (Celonis: dimension): one row per digital process, primary key `id`, "
        "`tenant` links to `accounts.id`."
    ),
    "accounts": "Account (Celonis: dimension): one row per OE tenant, primary key `id`.",
}

_FLATTENS = {
    "execution_context": (
        "Flattens the partition's raw process contexts into execution_context and its child tables, "
        "replacing the day's rows of every table of the family in one transaction. Contexts the API no "
        "longer returns stay, with `_oe_deleted_at` (when they were first missed) on execution_context."
    ),
    "execution_templates": (
        "Flattens every landed digital process into execution_templates, execution_templates$trigger, "
        "execution_templates$steps and the tables nested under steps."
    ),
    "accounts": "Flattens every landed tenant into accounts.",
}


def output_name(table: str, index: int) -> str:
    """Dagster op outputs need Python-ish names; the asset key keeps the table's real name."""
    return f"t{index}_" + re.sub(r"[^A-Za-z0-9_]", "_", table)[:60]


def describe_child(family: FamilyDeclaration, table: DeclaredTable) -> str:
    key = family.root_key_column
    return (
        f"Celonis table `{table.name}`: a child table of `{table.parent}` (an array in the JSON). "
        f"Primary key (`{key}`, `_oe_row_id`): `{key}` links straight to `{family.root_table}`, "
        "`_oe_row_id` is the row's position path inside its document (`2`, `2/0`), `_oe_parent_row_id` its "
        "parent row's (empty when the parent is the document itself) and `_oe_position` its index in the array."
    )


def _outs(family: FamilyDeclaration) -> dict[str, dg.AssetOut]:
    refresh = CONTEXTS_REFRESH if family.root_table == CONTEXTS.root_table else CATALOG_REFRESH
    return {
        output_name(table.name, i): dg.AssetOut(
            key=dg.AssetKey(table.asset_key),
            description=_DESCRIPTIONS.get(table.name) or describe_child(family, table),
            kinds={warehouse_kind()},
            owners=OWNERS,
            tags={"layer": "celonis_model", "family": family.root_table, REFRESH_TAG: refresh},
            is_required=False,
            metadata={"parent_table": table.parent or family.raw_table, "dagster/table_name": table.name},
        )
        for i, table in enumerate(family.tables)
    }


def _internal_deps(family: FamilyDeclaration) -> dict[str, set[dg.AssetKey]]:
    """Lineage that reads like the data model: child tables hang off their parent table."""
    keys = {table.name: dg.AssetKey(table.asset_key) for table in family.tables}
    return {
        output_name(table.name, i): {keys[table.parent]} if table.parent else {dg.AssetKey(family.raw_table)}
        for i, table in enumerate(family.tables)
    }


def _family_tables_asset(family: FamilyDeclaration, **more: Any) -> Any:
    """The decorator every family's asset shares: one multi-asset writing all tables of the family."""
    return dg.multi_asset(
        name=f"{family.root_table}_tables",
        outs=_outs(family),
        internal_asset_deps=_internal_deps(family),
        deps=[dg.AssetKey(family.raw_table)],
        group_name=CELONIS_GROUP,
        pool=DUCKDB_POOL,
        can_subset=False,
        description=_FLATTENS[family.root_table],
        **more,
    )


def _root_metadata(reports: Sequence[WriteReport], undeclared: list[str]) -> dict[str, Any]:
    """What the root table's materialization says about the whole family's write."""
    return {
        "quarantined": dg.MetadataValue.int(sum(r.quarantined for r in reports)),
        "name_collisions": dg.MetadataValue.int(sum(len(r.collisions) for r in reports)),
        "type_conflicts": dg.MetadataValue.int(sum(len(r.type_conflicts) for r in reports)),
        "schema_changes": dg.MetadataValue.int(sum(len(r.schema_changes) for r in reports)),
        "duplicates_merged": dg.MetadataValue.int(sum(len(r.duplicates) for r in reports)),
        "undeclared_tables": dg.MetadataValue.json(undeclared),
    }


def _results(
    conn: Warehouse,
    family: FamilyDeclaration,
    reports: Sequence[WriteReport],
    where_partitions: Sequence[date] | None,
) -> Iterator[dg.MaterializeResult]:
    rows: dict[str, int] = {}
    for report in reports:
        for name, n in report.rows_per_table.items():
            rows[name] = rows.get(name, 0) + n
    written = family_tables(conn, family.root_table)
    for table in family.tables:
        extra: dict[str, Any] = {}
        if table.parent is None:
            extra = _root_metadata(reports, sorted(set(written) - {t.name for t in family.tables}))
            if where_partitions:
                extra["partitions"] = dg.MetadataValue.text(
                    f"{min(where_partitions)} .. {max(where_partitions)}"
                )
        # The root table is missing while no record of the family has ever landed (empty days only).
        if table.name in written or (table.parent is None and has_table(conn, table.name)):
            partition_rows = rows.get(table.name, 0) if where_partitions else None
            meta = table_metadata(conn, table.name, partition_rows=partition_rows, extra=extra)
        else:
            meta = {
                "dagster/row_count": dg.MetadataValue.int(0),
                "note": "no rows of this table seen yet",
                **extra,
            }
        yield dg.MaterializeResult(asset_key=dg.AssetKey(table.asset_key), metadata=meta)


def _logged(
    context: dg.AssetExecutionContext, written: Iterator[tuple[date, WriteReport]]
) -> list[WriteReport]:
    """Each day's report, its quarantined contexts said in the run's log."""
    reports = []
    for day, report in written:
        reports.append(report)
        if report.quarantined:
            context.log.warning(
                f"{day}: {report.quarantined} process contexts quarantined (see _oe_quarantine)"
            )
    return reports


def build_context_tables_asset(
    partitions: dg.DailyPartitionsDefinition, family: FamilyDeclaration
) -> dg.AssetsDefinition:
    @_family_tables_asset(family, partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def execution_context_tables(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        days = partition_dates(context)
        if warehouse.on_postgres:
            with warehouse.postgres() as pg, warehouse.postgres() as reader:
                reports = _logged(context, write_landed_partitions_pg(pg, reader, days))
                yield from _results(pg, family, reports, days)
            return
        with warehouse.get_connection() as conn:
            reports = _logged(context, write_partitions_marking_deleted(conn, days))
            yield from _results(conn, family, reports, days)

    return execution_context_tables


def build_catalog_asset(family: FamilyDeclaration) -> dg.AssetsDefinition:
    @_family_tables_asset(family)
    def catalog_tables(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        if warehouse.on_postgres:
            with warehouse.postgres() as pg:
                report = rebuild_catalog_family_pg(pg, FAMILIES[family.root_table], family.raw_table)
                yield from _results(pg, family, [report], None)
            return
        with warehouse.get_connection() as conn:
            report = rebuild_catalog_family(conn, FAMILIES[family.root_table], family.raw_table)
            yield from _results(conn, family, [report], None)

    return catalog_tables


def build_celonis_assets(
    partitions: dg.DailyPartitionsDefinition, model: ModelDeclaration
) -> list[dg.AssetsDefinition]:
    """The process contexts' family by day; the catalogs (digital processes, tenants) whole."""
    return [
        build_context_tables_asset(partitions, family)
        if family.root_table == CONTEXTS.root_table
        else build_catalog_asset(family)
        for family in model.families
    ]
