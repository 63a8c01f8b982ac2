"""One push from a PostgreSQL warehouse: :func:`~oe_assets.celonis.service.push_and_reload` with
the ledger kept in PostgreSQL, and the pushed tables locked for the whole push.

On DuckDB one push runs at a time (one writer of the file, the runs' ``duckdb`` pool). On
PostgreSQL, runs on several machines push at once, so each holds a partition lock per table it
pushes to this destination (:func:`~oe_assets.warehouse.postgres.locks.partition_locks`, taken in
sorted order), from planning until the data model has reloaded. A second run pushing one of those
tables waits, then plans against what the first one confirmed: nothing is pushed twice. Pushes of
other tables, or to other pools, go on side by side.

Session locks live as long as their connection, so the push uses one connection for all its
phases; a run that dies loses the connection, and its locks with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

from oe_assets.celonis.api import CelonisApi
from oe_assets.celonis.delivery import PushTable, destination_id
from oe_assets.celonis.service import PushOutcome, push_and_reload
from oe_assets.model.data_model import DataModel
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.locks import partition_locks


def push_lock_scope(destination: str) -> str:
    """The scope of the push locks: one lock per table and destination."""
    return f"celonis_push.{destination}"


def push_and_reload_pg(
    api: CelonisApi,
    pg: PgConnection,
    tables: Sequence[PushTable],
    *,
    model: DataModel,
    model_name: str,
    jobs_per_hour: int,
    lock_timeout_seconds: float = 900.0,
) -> PushOutcome:
    """:func:`~oe_assets.celonis.service.push_and_reload` from PostgreSQL, the tables' push locks
    held on ``pg`` throughout (see the module's doc)."""
    destination = destination_id(api.config.url, api.config.pool_id, api.config.connection_id)
    scope = push_lock_scope(destination)
    with partition_locks(pg, scope, [t.name for t in tables], timeout_seconds=lock_timeout_seconds):
        return push_and_reload(
            api,
            lambda: nullcontext(pg),
            tables,
            model=model,
            model_name=model_name,
            jobs_per_hour=jobs_per_hour,
        )
