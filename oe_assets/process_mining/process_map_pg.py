"""The process map of a PostgreSQL warehouse's activity log: DuckDB's picture
(:mod:`oe_assets.process_mining.process_map`), drawn by its own code from the rows pulled into a
local DuckDB, so the same activity log gives the same file byte for byte.

Runs on several machines may draw at once into one exports folder (a shared volume); the drawing
holds the map's lock (``oe_assets.partition.process_map.all``) from the read to the rename, so two
never write the side file together, and the map drawn last is from the log read last.
"""

from __future__ import annotations

from pathlib import Path

from oe_assets.process_mining.activity_log import ACTIVITY_LOG
from oe_assets.process_mining.process_map import Graph, write_process_map
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.family import scratch_warehouse
from oe_assets.warehouse.postgres.locks import WHOLE, partition_locks
from oe_assets.warehouse.postgres.pull import pull_table

PROCESS_MAP_SCOPE = "process_map"
MAP_COLUMNS = ("case_id", "activity", "event_time", "sort_order")
"""The activity log's columns :func:`~oe_assets.process_mining.process_map.read_graph` reads."""


def write_process_map_pg(conn: PgConnection, folder: Path) -> tuple[Path, Graph]:
    """Draw the whole activity log's map into ``folder``, as DuckDB's
    :func:`~oe_assets.process_mining.process_map.write_process_map` (an empty map before the
    activity log exists)."""
    with partition_locks(conn, PROCESS_MAP_SCOPE, [WHOLE]), scratch_warehouse() as scratch:
        pull_table(conn, scratch, ACTIVITY_LOG, MAP_COLUMNS)
        return write_process_map(scratch, folder)
