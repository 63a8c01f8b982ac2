"""A ready Celonis data model over the pushed tables: tables, keys, foreign keys, process configuration.

The model is found by name and created when missing; tables and foreign keys missing from it are
added (nothing a user added by hand is removed). Its foreign keys are the relations of
``oe-assets model export`` whose two tables are in the pool; in each, the source is the table on
the "many" side (a child table, the event log) and the target the table on the "one" side. The
process configuration names ``execution_context`` as the case table and ``activity_log`` as the
activity table (``event_log`` while no activity log was pushed).

After each push the pushed tables are reloaded (a partial reload); the load is awaited and a
failed load raises :class:`CelonisLoadFailed` with Celonis's message. The rows each table holds
after the load are what the row-count checks compare with the warehouse.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from oe_assets.celonis.api import CelonisApi, current_load
from oe_assets.celonis.errors import CelonisLoadFailed
from oe_assets.config.secret import get_logger
from oe_assets.model.data_model import DataModel

logger = get_logger("oe_assets.celonis")

CASE_TABLE = "execution_context"


@dataclass(frozen=True)
class ForeignKey:
    source: str  # the "many" side
    target: str  # the "one" side
    columns: tuple[tuple[str, str], ...]  # (source column, target column)


@dataclass(frozen=True)
class ProcessConfiguration:
    activity_table: str
    case_id_column: str
    activity_column: str
    timestamp_column: str
    sorting_column: str | None = None


ACTIVITY_LOG_PROCESS = ProcessConfiguration("activity_log", "case_id", "activity", "event_time", "sort_order")
EVENT_LOG_PROCESS = ProcessConfiguration("event_log", "instance_id", "status", "last_modified")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    primary_keys: Mapping[str, tuple[str, ...]]  # table -> primary key, for every table in the pool
    foreign_keys: tuple[ForeignKey, ...]
    process: ProcessConfiguration | None


def model_spec(name: str, model: DataModel, in_pool: Collection[str]) -> ModelSpec:
    """The data model over the tables ``in_pool``, as ``oe-assets model export`` defines it."""
    keys = {t.name: t.primary_key for t in model.tables if t.name in in_pool}
    foreign = tuple(
        ForeignKey(r.child_table, r.parent_table, tuple(zip(r.child_columns, r.parent_columns, strict=True)))
        for r in model.relations
        if r.child_table in keys and r.parent_table in keys
    )
    process = next(
        (
            p
            for p in (ACTIVITY_LOG_PROCESS, EVENT_LOG_PROCESS)
            if p.activity_table in keys and CASE_TABLE in keys
        ),
        None,
    )
    return ModelSpec(name, keys, foreign, process)


def sync_data_model(api: CelonisApi, spec: ModelSpec) -> tuple[str, dict[str, str]]:
    """The model's id and its table ids by name, after adding what ``spec`` has and it lacks."""
    model = next((m for m in api.list_data_models() if m.get("name") == spec.name), None)
    if model is None:
        model = api.create_data_model(spec.name)
        logger.info("created the Celonis data model %r", spec.name)
    model_id = str(model["id"])
    table_ids = _ensure_tables(api, model_id, spec)
    _ensure_foreign_keys(api, model_id, spec, table_ids)
    if spec.process is not None:
        _ensure_process(api, model, spec.process, table_ids)
    return model_id, table_ids


def _ensure_tables(api: CelonisApi, model_id: str, spec: ModelSpec) -> dict[str, str]:
    present = {str(t.get("name")).lower(): t for t in api.list_model_tables(model_id)}
    missing = [
        {
            "name": name,
            "alias": name,
            "dataSourceId": api.config.connection_id or None,
            "primaryKeys": list(keys),
        }
        for name, keys in spec.primary_keys.items()
        if name.lower() not in present
    ]
    if missing:
        api.add_model_tables(model_id, missing)
        present = {str(t.get("name")).lower(): t for t in api.list_model_tables(model_id)}
    return {name: str(present[name.lower()]["id"]) for name in spec.primary_keys if name.lower() in present}


def _ensure_foreign_keys(
    api: CelonisApi, model_id: str, spec: ModelSpec, table_ids: Mapping[str, str]
) -> None:
    existing = {_fk_signature(fk) for fk in api.list_foreign_keys(model_id)}
    for key in spec.foreign_keys:
        body = {
            "sourceTableId": table_ids[key.source],
            "targetTableId": table_ids[key.target],
            "columns": [{"sourceColumnName": s, "targetColumnName": t} for s, t in key.columns],
        }
        if _fk_signature(body) not in existing:
            api.add_foreign_key(model_id, body)


def _fk_signature(fk: Mapping[str, Any]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    columns = tuple(
        (str(c.get("sourceColumnName")), str(c.get("targetColumnName")))
        for c in fk.get("columns") or []
        if isinstance(c, Mapping)
    )
    return str(fk.get("sourceTableId")), str(fk.get("targetTableId")), columns


def _ensure_process(
    api: CelonisApi, model: dict[str, Any], process: ProcessConfiguration, table_ids: Mapping[str, str]
) -> None:
    wanted = {
        "caseTableId": table_ids[CASE_TABLE],
        "activityTableId": table_ids[process.activity_table],
        "caseIdColumn": process.case_id_column,
        "activityColumn": process.activity_column,
        "timestampColumn": process.timestamp_column,
        "sortingColumn": process.sorting_column,
        "defaultConfiguration": True,
    }
    current = [c for c in model.get("processConfigurations") or [] if isinstance(c, Mapping)]
    if any(all(c.get(k) == v for k, v in wanted.items()) for c in current):
        return
    api.update_data_model({**model, "processConfigurations": [wanted]})


def reload_tables(api: CelonisApi, model_id: str, table_ids: Collection[str]) -> dict[str, int]:
    """Reload ``table_ids`` (a partial reload), wait for it, and return every table's row count."""
    before = current_load(api.load_info(model_id)).get("dataLoadId")
    api.start_partial_reload(model_id, sorted(table_ids))
    info = api.wait_for_load(model_id, before)
    load = current_load(info)
    status = load.get("loadStatus")
    if status == "WARNING":
        logger.warning("the Celonis data model loaded with a warning: %s", load.get("message"))
    elif status != "SUCCESS":
        raise CelonisLoadFailed(
            f"The Celonis data model's load ended in {status}: {load.get('message') or 'Celonis gave no message'}."
        )
    live = (info.get("loadInfo") or {}).get("liveDataModel") or {}
    return {
        str(t.get("tableName")): int(t.get("tableRowCount") or 0)
        for t in live.get("tableLoads") or []
        if isinstance(t, Mapping)
    }
