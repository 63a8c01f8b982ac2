"""The `celonis` layer: each warehouse table delivered into a Celonis data pool, and the data model.

Two push steps, one per refresh job: the process contexts' tables with the event and activity
logs (daily partitions, like their tables), and the catalog (digital processes, accounts). Each
asset is one table in the pool, downstream of its warehouse table, with a check that the pool
holds as many rows as the warehouse. While ``CELONIS_URL`` is unset the assets are in no job and
their description says so. From a PostgreSQL warehouse, the step holds the push locks of its
tables (:mod:`oe_assets.celonis.service_pg`): runs on other machines pushing them wait.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from oe_assets.celonis import CelonisHourlyLimit, PushOutcome, PushTable, push_and_reload
from oe_assets.celonis.delivery import TableDelivery
from oe_assets.celonis.service_pg import push_and_reload_pg
from oe_assets.config import settings
from oe_assets.model.data_model import DataModel
from oe_assets.orchestration.metadata import OWNERS
from oe_assets.orchestration.partitions import CATALOG_REFRESH, CONTEXTS_REFRESH, REFRESH_TAG
from oe_assets.orchestration.resources import DUCKDB_POOL, CelonisResource, WarehouseResource

CELONIS_GROUP = "celonis"
POOL_ROWS_CHECK = "pool_rows_equal_warehouse"
AUTOMATION_TAGS = ("dagster/sensor_name", "dagster/schedule_name")
IDLE_NOTE = (
    f"Idle: {settings.CELONIS_URL} is not set, so no job pushes this table. Set {settings.CELONIS_URL}, "
    f"{settings.CELONIS_POOL_ID} and a credential (README, section Celonis) to deliver it."
)


def push_key(table_key: tuple[str, ...]) -> dg.AssetKey:
    """``celonis``, the table's key, its last part prefixed ``pool_``: the lineage graph shows the
    last part (cut to 18 characters), so `pool_quotes` tells the data pool's table from the
    warehouse's `quotes`, and stays distinct when cut."""
    return dg.AssetKey(["celonis", *table_key[:-1], f"pool_{table_key[-1]}"])


def _spec(table: str, table_key: tuple[str, ...], refresh: str, enabled: bool) -> dg.AssetSpec:
    about = (
        f"Celonis table `{table}` in the data pool: the warehouse table pushed with the Data Push API "
        "(only the rows that changed since Celonis last confirmed, rows gone from the warehouse deleted), "
        "then reloaded in the data model."
    )
    return dg.AssetSpec(
        key=push_key(table_key),
        deps=[dg.AssetKey(list(table_key))],
        description=about if enabled else f"{IDLE_NOTE} {about}",
        group_name=CELONIS_GROUP,
        kinds={"celonis"},
        owners=OWNERS,
        tags={"layer": "celonis", **({REFRESH_TAG: refresh} if enabled else {})},
        metadata={"dagster/table_name": table},
        skippable=True,
    )


def _check(table: str, table_key: tuple[str, ...]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        POOL_ROWS_CHECK,
        asset=push_key(table_key),
        description=f"The data pool's `{table}` holds as many rows as the warehouse's, after the data model's reload.",
    )


def build_push_asset(
    name: str,
    tables: list[tuple[PushTable, tuple[str, ...]]],
    refresh: str,
    model: DataModel,
    enabled: bool,
    **more: Any,
) -> dg.AssetsDefinition:
    """One step pushing ``tables`` (with their asset keys), then reloading them in the data model."""

    @dg.multi_asset(
        name=name,
        specs=[_spec(t.name, key, refresh, enabled) for t, key in tables],
        check_specs=[_check(t.name, key) for t, key in tables],
        can_subset=False,
        pool=DUCKDB_POOL,
        description="Pushes the tables into the Celonis data pool and reloads them in the data model.",
        **more,
    )
    def push(
        context: dg.AssetExecutionContext, celonis: CelonisResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        pushed = [t for t, _ in tables]
        options: dict[str, Any] = {
            "model": model,
            "model_name": celonis.data_model,
            "jobs_per_hour": celonis.jobs_per_hour,
        }
        try:
            with celonis.open_api() as api:
                if warehouse.on_postgres:
                    with warehouse.postgres() as pg:
                        timeout = warehouse.lock_timeout_seconds
                        outcome = push_and_reload_pg(api, pg, pushed, lock_timeout_seconds=timeout, **options)
                else:
                    outcome = push_and_reload(api, warehouse.get_connection, pushed, **options)
        except CelonisHourlyLimit as limit:
            if not any(tag in context.run.tags for tag in AUTOMATION_TAGS):
                raise
            context.log.warning(f"Deferred: {limit} The hourly `celonis_catch_up` schedule pushes them.")
            yield from _deferred(tables, str(limit))
            return
        yield from _results(tables, outcome)

    return push


def _results(
    tables: list[tuple[PushTable, tuple[str, ...]]], outcome: PushOutcome
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    for table, key in tables:
        delivered = outcome.delivery.tables[table.name]
        pool = outcome.pool_rows.get(table.name, 0)
        yield dg.MaterializeResult(asset_key=push_key(key), metadata=_metadata(delivered, pool))
        yield dg.AssetCheckResult(
            asset_key=push_key(key),
            check_name=POOL_ROWS_CHECK,
            passed=pool == delivered.warehouse_rows,
            metadata={"pool_rows": pool, "warehouse_rows": delivered.warehouse_rows},
            description=None
            if pool == delivered.warehouse_rows
            else (f"The pool holds {pool} rows of {table.name}, the warehouse {delivered.warehouse_rows}."),
        )


def _deferred(tables: list[tuple[PushTable, tuple[str, ...]]], reason: str) -> Iterator[dg.AssetCheckResult]:
    """No table was pushed: each check says so (a warning), no materialization claims a push."""
    for _, key in tables:
        yield dg.AssetCheckResult(
            asset_key=push_key(key),
            check_name=POOL_ROWS_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"Push deferred: {reason}",
        )


def _metadata(delivered: TableDelivery, pool_rows: int) -> dict[str, Any]:
    return {
        "outcome": delivered.outcome,
        "job_type": delivered.mode or "none",
        "rows_upserted": delivered.upserts,
        "rows_deleted": delivered.deletes,
        "parquet_bytes": delivered.parquet_bytes,
        "pool_rows": pool_rows,
        "dagster/row_count": pool_rows,
        "celonis_job_id": delivered.job_id or "none",
    }


def push_assets(
    model: DataModel, partitions: dg.DailyPartitionsDefinition, enabled: bool
) -> list[dg.AssetsDefinition]:
    """The process contexts' push (by day, one run for a range) and the catalog's push."""
    declaration = model.declaration
    keys = {t.name: t.primary_key for t in model.tables}

    def entry(name: str) -> tuple[PushTable, tuple[str, ...]]:
        return PushTable(name, keys[name]), declaration.asset_key(name)

    contexts = [
        entry(t.name) for f in declaration.families if f.root_table == "execution_context" for t in f.tables
    ]
    contexts += [entry(name) for name in declaration.activity_tables]
    catalog = [
        entry(t.name) for f in declaration.families if f.root_table != "execution_context" for t in f.tables
    ]
    return [
        build_push_asset(
            "celonis_push_process_contexts",
            contexts,
            CONTEXTS_REFRESH,
            model,
            enabled,
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
        ),
        build_push_asset("celonis_push_catalog", catalog, CATALOG_REFRESH, model, enabled),
    ]
