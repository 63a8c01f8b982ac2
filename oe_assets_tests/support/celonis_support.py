"""The Celonis side of the tests: the stand-in over HTTP, definitions that push to it, and the
comparison of the pool with the warehouse, table by table, value by value."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg

from oe_assets.celonis.schema import push_columns
from oe_assets.celonis_simulator import CelonisSimulatorServer
from oe_assets.config import settings
from oe_assets.definitions import build_definitions
from oe_assets.model.data_model import build_data_model
from oe_assets.model.declaration import MODEL
from oe_assets.model.integrity import table_exists
from oe_assets.orchestration.resources import CelonisResource, OeApiResource, WarehouseResource
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.reading import reading
from oe_assets.warehouse.sql import quote_ident

POOL_ID = "oe-test-pool"
PUSHED_TABLES = tuple(t.name for t in build_data_model(MODEL).tables if t.role != "raw")
"""Every table the push assets deliver (the Celonis-model tables and both logs)."""


def stand_in(tmp_path: Path, **options: Any) -> CelonisSimulatorServer:
    values: dict[str, Any] = {
        "pool_db": tmp_path / "celonis_pool.duckdb",
        "pool_id": POOL_ID,
        "job_delay": 0.05,
    }
    values.update(options)
    return CelonisSimulatorServer(**values)


def celonis_settings(celonis: CelonisSimulatorServer, start_day: Any, **more: Any) -> settings.Settings:
    destination = settings.CelonisSettings(url=celonis.url, pool_id=POOL_ID, auth="oauth", **more)
    return settings.Settings(start_date=start_day, celonis=destination)


def celonis_resource(celonis: CelonisSimulatorServer, **overrides: Any) -> CelonisResource:
    values: dict[str, Any] = {
        "url": celonis.url,
        "pool_id": POOL_ID,
        "client_id": celonis.client_id,
        "client_secret": celonis.client_secret,
    }
    values.update(overrides)
    return CelonisResource(**values)


def pushing_definitions(
    oe: SimulatorServer,
    celonis: CelonisSimulatorServer,
    warehouse: Path,
    start_day: Any,
    *,
    resource: CelonisResource | None = None,
    **more: Any,
) -> dg.Definitions:
    """The project's definitions with Celonis delivery on, against both simulators."""
    resources = {
        "oe_api": OeApiResource(
            api_url=oe.url, client_id=oe.client_id, client_secret=oe.client_secret, page_size=100
        ),
        "warehouse": WarehouseResource(database=str(warehouse)),
        "celonis": resource or celonis_resource(celonis),
    }
    return build_definitions(resources, config=celonis_settings(celonis, start_day, **more))


def _normal(value: Any) -> Any:
    """Values as both sides hold them: floats compared to 12 digits, times without zone."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return value


def warehouse_rows(warehouse: Path, table: str) -> list[tuple[Any, ...]] | None:
    """The table's rows as they are written to Parquet (sorted), None when there is no table."""
    with reading(warehouse) as conn:
        if not table_exists(conn, table):
            return None
        columns = push_columns(conn, table)
        select = ", ".join(c.select_sql for c in columns)
        rows = conn.execute(f"SELECT {select} FROM {quote_ident(table)}").fetchall()
        names = [c.name for c in columns]
    return sorted((tuple(_normal(v) for v in row) for row in rows), key=repr), names  # type: ignore[return-value]


def pool_rows(celonis: CelonisSimulatorServer, table: str, names: list[str]) -> list[tuple[Any, ...]]:
    return sorted(
        (tuple(_normal(row.get(name)) for name in names) for row in celonis.pool_rows(table)), key=repr
    )


def differences(celonis: CelonisSimulatorServer, warehouse: Path) -> Iterator[str]:
    """Every table where the pool and the warehouse differ, with a sample of the difference."""
    for table in PUSHED_TABLES:
        found = warehouse_rows(warehouse, table)
        if found is None:
            continue
        expected, names = found  # type: ignore[misc]
        actual = pool_rows(celonis, table, names)
        if actual != expected:
            missing = [r for r in expected if r not in actual][:2]
            extra = [r for r in actual if r not in expected][:2]
            yield f"{table}: warehouse {len(expected)} rows, pool {len(actual)}; missing {missing}; extra {extra}"
