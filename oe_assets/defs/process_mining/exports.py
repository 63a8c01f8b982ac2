"""The process-mining exports as assets: OCEL 2.0 (JSON and SQLite) and XES files under OE_EXPORT_DIR.

They follow the activity log (same daily partitions, refreshed with the contexts), but a file is
the whole warehouse, so each run rewrites it whole; the core is :mod:`oe_assets.exports`. On a
PostgreSQL warehouse what they read is pulled into a DuckDB scratch first
(:mod:`oe_assets.exports.source_pg`), so the files are the bytes a DuckDB warehouse gives.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from oe_assets.defs.process_mining.assets import _partitioned_asset
from oe_assets.exports.ocel import ExportReport, write_ocel
from oe_assets.exports.ocel_model import OcelData, build_ocel
from oe_assets.exports.source import MissingTablesError
from oe_assets.exports.source_pg import build_ocel_pg, export_xes_pg
from oe_assets.exports.xes import export_xes
from oe_assets.orchestration.metadata import markdown_table
from oe_assets.orchestration.resources import WarehouseResource, warehouse_kind
from oe_assets.process_mining.activity_log import ACTIVITY_LOG

OCEL_EXPORT = "ocel_export"
XES_EXPORT = "xes_export"
OCEL_FILES = ("oe_process_contexts.jsonocel", "oe_process_contexts.sqlite")
XES_FILE = "oe_activity_log.xes"

OCEL_DESCRIPTION = (
    "The process contexts as an object-centric event log (OCEL 2.0), for pm4py, Ocel Standard tools and "
    "other object-centric process mining: `oe_process_contexts.jsonocel` and `.sqlite` in OE_EXPORT_DIR "
    "(default: `exports` beside the warehouse, data/exports/). Events are the activity log's rows; objects are the process contexts, their "
    "digital processes and accounts, and the business objects their payloads name by id (quotes, orders, "
    "shipments, customers, …), each related to the events of the step that named it. Rewritten whole on "
    "every run; `oe-assets export ocel --out FILE` writes one on demand (also .xmlocel)."
)
XES_DESCRIPTION = (
    "The activity log as XES, for ProM, Apromore, pm4py: `oe_activity_log.xes` in OE_EXPORT_DIR (default: "
    "`exports` beside the warehouse, data/exports/), one trace per process context (with its digital process, status and account), one event "
    "per activity. Rewritten whole on every run; `oe-assets export xes --out FILE.xes` writes one on demand."
)


def _deps() -> list[dg.AssetKey]:
    """The activity log and the family roots: a context's child tables are written in the same
    step as `execution_context`, so depending on it is depending on them (and keeps the lineage
    graph readable)."""
    return [
        dg.AssetKey([ACTIVITY_LOG]),
        *(dg.AssetKey([name]) for name in ("execution_context", "execution_templates", "accounts")),
    ]


def _nothing_yet(context: dg.AssetExecutionContext, missing: MissingTablesError) -> dg.MaterializeResult:
    """Days without contexts on a fresh warehouse are no error: there is nothing to export yet."""
    context.log.info(f"Nothing to export yet: {missing}")
    return dg.MaterializeResult(
        metadata={"events": dg.MetadataValue.int(0), "note": "no process contexts yet"}
    )


def _ocel_data(warehouse: WarehouseResource) -> OcelData:
    """The OCEL 2.0 content of the warehouse, whichever kind it is."""
    if warehouse.on_postgres:
        with warehouse.postgres() as pg:
            return build_ocel_pg(pg)
    with warehouse.get_connection() as conn:
        return build_ocel(conn)


def _xes_file(warehouse: WarehouseResource, path: Path) -> ExportReport:
    """The activity log written as XES to ``path``, whichever kind of warehouse it is."""
    if warehouse.on_postgres:
        with warehouse.postgres() as pg:
            return export_xes_pg(pg, path)
    with warehouse.get_connection() as conn:
        return export_xes(conn, path)


def report_metadata(reports: list[ExportReport]) -> dict[str, Any]:
    """What a user checks after a run: where the files are, how much went in, what could not."""
    first = reports[0]
    dropped = {k: v for r in reports for k, v in r.dropped.items()}
    return {
        "path": dg.MetadataValue.path(str(first.path)),
        "files": dg.MetadataValue.md("\n".join(f"- `{r.path}` ({r.bytes} bytes)" for r in reports)),
        "events": dg.MetadataValue.int(first.events),
        "objects_per_type": markdown_table(
            sorted(first.objects_per_type.items()), ("object type", "objects")
        ),
        "objects": dg.MetadataValue.int(sum(first.objects_per_type.values())),
        "bytes": dg.MetadataValue.int(sum(r.bytes for r in reports)),
        "dropped_values": dg.MetadataValue.int(sum(dropped.values())),
        "dropped_by_reason": markdown_table(sorted(dropped.items()), ("reason", "values")),
    }


def ocel_export_asset(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    @_partitioned_asset(
        partitions,
        OCEL_EXPORT,
        _deps(),
        OCEL_DESCRIPTION,
        kinds=frozenset({warehouse_kind(), "json", "sqlite"}),
    )
    def ocel_export(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        folder = warehouse.exports_folder()
        try:
            data = _ocel_data(warehouse)
        except MissingTablesError as missing:
            return _nothing_yet(context, missing)
        reports = [
            write_ocel(data, folder / name, "json" if name.endswith("ocel") else "sqlite")
            for name in OCEL_FILES
        ]
        return dg.MaterializeResult(metadata=report_metadata(reports))

    return ocel_export


def xes_export_asset(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    @_partitioned_asset(
        partitions, XES_EXPORT, _deps(), XES_DESCRIPTION, kinds=frozenset({warehouse_kind(), "xml"})
    )
    def xes_export(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        try:
            report = _xes_file(warehouse, warehouse.exports_folder() / XES_FILE)
        except MissingTablesError as missing:
            return _nothing_yet(context, missing)
        return dg.MaterializeResult(metadata=report_metadata([report]))

    return xes_export
