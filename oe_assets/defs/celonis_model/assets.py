"""The `celonis_model` layer: the tables the Celonis extractor builds, one asset per table."""

import re
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import dagster as dg
import duckdb

from oe_assets.flatten import ACCOUNTS, CONTEXTS, TEMPLATES, TableFamily
from oe_assets.landing.raw_catalog import RAW_ACCOUNTS, RAW_TEMPLATES
from oe_assets.landing.raw_contexts import RAW_CONTEXTS
from oe_assets.landing.retention import write_partitions_marking_deleted
from oe_assets.load.catalog import rebuild_catalog_family
from oe_assets.model.integrity import table_exists
from oe_assets.model.schema_file import DeclaredTable
from oe_assets.orchestration.metadata import OWNERS, table_metadata
from oe_assets.orchestration.partitions import CATALOG_REFRESH, CONTEXTS_REFRESH, REFRESH_TAG, partition_dates
from oe_assets.orchestration.resources import DUCKDB_POOL, WarehouseResource
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


def output_name(table: str, index: int) -> str:
    """Dagster op outputs need Python-ish names; the asset key keeps the table's real name."""
    return f"t{index}_" + re.sub(r"[^A-Za-z0-9_]", "_", table)[:60]


def describe_child(table: DeclaredTable) -> str:
    root_key = "context$processid" if table.family == "execution_context" else f"{table.family}_id"
    return (
        f"Child table of `{table.parent}` (an array in the JSON). Primary key (`{root_key}`, `_oe_row_id`): "
        f"`{root_key}` links straight to `{table.family}`, `_oe_row_id` is the row's position path inside its "
        "document (`2`, `2/0`), `_oe_parent_row_id` its parent row's (empty when the parent is the document "
        "itself) and `_oe_position` its index in the array."
    )


def _outs(tables: Sequence[DeclaredTable], upstream: str) -> dict[str, dg.AssetOut]:
    outs = {}
    for i, table in enumerate(tables):
        parent_dep = table.parent or upstream
        outs[output_name(table.name, i)] = dg.AssetOut(
            key=dg.AssetKey([table.name]),
            description=_DESCRIPTIONS.get(table.name) or describe_child(table),
            kinds={"duckdb", "polars"} if table.parent is None else {"duckdb"},
            owners=OWNERS,
            tags={
                "layer": "celonis_model",
                "family": table.family,
                REFRESH_TAG: CONTEXTS_REFRESH if table.family == CONTEXTS.root_table else CATALOG_REFRESH,
            },
            is_required=False,
            metadata={"parent_table": parent_dep},
        )
    return outs


def _internal_deps(tables: Sequence[DeclaredTable], upstream: dg.AssetKey) -> dict[str, set[dg.AssetKey]]:
    """Lineage that reads like the data model: child tables hang off their parent table."""
    deps: dict[str, set[dg.AssetKey]] = {}
    for i, table in enumerate(tables):
        deps[output_name(table.name, i)] = {dg.AssetKey([table.parent])} if table.parent else {upstream}
    return deps


def _results(
    conn: duckdb.DuckDBPyConnection,
    tables: Sequence[DeclaredTable],
    family: TableFamily,
    reports: Sequence[WriteReport],
    where_partitions: Sequence[date] | None,
) -> Iterator[dg.MaterializeResult]:
    declared = {t.name for t in tables}
    rows: dict[str, int] = {}
    for report in reports:
        for name, n in report.rows_per_table.items():
            rows[name] = rows.get(name, 0) + n
    all_tables = [
        str(r[0])
        for r in conn.execute(
            "SELECT table_name FROM _oe_tables WHERE family = ?", [family.root_table]
        ).fetchall()
    ]
    undeclared = sorted(set(all_tables) - declared)
    for table in tables:
        extra: dict[str, Any] = {}
        # The root table is missing while no record of the family has ever landed (empty days only).
        exists = table.name in all_tables or (
            table.name == family.root_table and table_exists(conn, table.name)
        )
        if table.parent is None:
            extra = {
                "quarantined": dg.MetadataValue.int(sum(r.quarantined for r in reports)),
                "name_collisions": dg.MetadataValue.int(sum(len(r.collisions) for r in reports)),
                "type_conflicts": dg.MetadataValue.int(sum(len(r.type_conflicts) for r in reports)),
                "schema_changes": dg.MetadataValue.int(sum(len(r.schema_changes) for r in reports)),
                "duplicates_merged": dg.MetadataValue.int(sum(len(r.duplicates) for r in reports)),
                "undeclared_tables": dg.MetadataValue.json(undeclared),
            }
            if where_partitions:
                extra["partitions"] = dg.MetadataValue.text(
                    f"{min(where_partitions)} .. {max(where_partitions)}"
                )
        if exists:
            meta = table_metadata(
                conn,
                table.name,
                partition_rows=rows.get(table.name, 0) if where_partitions else None,
                extra=extra,
            )
        else:
            meta = {
                "dagster/row_count": dg.MetadataValue.int(0),
                "note": "no rows of this table seen yet",
                **extra,
            }
        yield dg.MaterializeResult(asset_key=dg.AssetKey([table.name]), metadata=meta)


def build_context_tables_asset(
    partitions: dg.DailyPartitionsDefinition, tables: Sequence[DeclaredTable]
) -> dg.AssetsDefinition:
    family_tables = [t for t in tables if t.family == CONTEXTS.root_table]
    upstream = dg.AssetKey([RAW_CONTEXTS])

    @dg.multi_asset(
        name="execution_context_tables",
        outs=_outs(family_tables, RAW_CONTEXTS),
        internal_asset_deps=_internal_deps(family_tables, upstream),
        deps=[upstream],
        group_name=CELONIS_GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=DUCKDB_POOL,
        can_subset=False,
        description=(
            "Flattens the partition's raw process contexts into execution_context and its child tables, "
            "replacing the day's rows of every table of the family in one transaction. Contexts the API no "
            "longer returns stay, with `_oe_deleted_at` (when they were first missed) on execution_context."
        ),
    )
    def execution_context_tables(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        days = partition_dates(context)
        reports: list[WriteReport] = []
        with warehouse.get_connection() as conn:
            for day, report in write_partitions_marking_deleted(conn, days):
                reports.append(report)
                if report.quarantined:
                    context.log.warning(
                        f"{day}: {report.quarantined} process contexts quarantined (see _oe_quarantine)"
                    )
            yield from _results(conn, family_tables, CONTEXTS, reports, days)

    return execution_context_tables


def build_catalog_asset(
    family: TableFamily, raw_table: str, tables: Sequence[DeclaredTable], description: str
) -> dg.AssetsDefinition:
    family_tables = [t for t in tables if t.family == family.root_table]
    upstream = dg.AssetKey([raw_table])

    @dg.multi_asset(
        name=f"{family.root_table}_tables",
        outs=_outs(family_tables, raw_table),
        internal_asset_deps=_internal_deps(family_tables, upstream),
        deps=[upstream],
        group_name=CELONIS_GROUP,
        pool=DUCKDB_POOL,
        can_subset=False,
        description=description,
    )
    def catalog_tables(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        with warehouse.get_connection() as conn:
            report = rebuild_catalog_family(conn, family, raw_table)
            yield from _results(conn, family_tables, family, [report], None)

    return catalog_tables


def build_celonis_assets(
    partitions: dg.DailyPartitionsDefinition, tables: Sequence[DeclaredTable]
) -> list[dg.AssetsDefinition]:
    return [
        build_context_tables_asset(partitions, tables),
        build_catalog_asset(
            TEMPLATES,
            RAW_TEMPLATES,
            tables,
            "Flattens every landed digital process into execution_templates, execution_templates$trigger, "
            "execution_templates$steps and the tables nested under steps.",
        ),
        build_catalog_asset(ACCOUNTS, RAW_ACCOUNTS, tables, "Flattens every landed tenant into accounts."),
    ]
