"""One push of a set of tables: deliver them, bring the data model up to date, reload, count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from oe_assets.celonis import ledger
from oe_assets.celonis.api import CelonisApi
from oe_assets.celonis.data_model import model_spec, reload_tables, sync_data_model
from oe_assets.celonis.delivery import DeliveryReport, PushTable, WarehouseOpener, deliver, destination_id
from oe_assets.model.data_model import DataModel


@dataclass
class PushOutcome:
    delivery: DeliveryReport
    model_id: str = ""
    pool_rows: dict[str, int] = field(default_factory=dict)
    """Rows of each table as the data model loaded them (absent: the table is not in the pool)."""


def push_and_reload(
    api: CelonisApi,
    open_warehouse: WarehouseOpener,
    tables: Sequence[PushTable],
    *,
    model: DataModel,
    model_name: str,
    jobs_per_hour: int,
) -> PushOutcome:
    """Deliver ``tables``, then add every table in the pool to the data model and reload ``tables``."""
    delivery = deliver(api, open_warehouse, tables, jobs_per_hour=jobs_per_hour)
    with open_warehouse() as conn:
        in_pool = ledger.delivered_tables(
            conn, destination_id(api.config.url, api.config.pool_id, api.config.connection_id)
        )
    model_id, table_ids = sync_data_model(api, model_spec(model_name, model, in_pool))
    reloaded = [table_ids[t.name] for t in tables if t.name in table_ids]
    pool_rows = reload_tables(api, model_id, reloaded) if reloaded else {}
    return PushOutcome(delivery, model_id, pool_rows)
