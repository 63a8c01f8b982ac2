"""Data models of the stand-in: tables, foreign keys, process configurations, and their loads.

Celonis checks a data model when it loads it, not when it is edited: a table that is not in the pool,
a foreign-key column a table lacks or duplicate primary-key values make the load end in ERROR with a
message, while the same definitions are accepted when posted. The stand-in does the same, so a client
learns about a broken model where it would in production: from the load status it polls.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from oe_assets.celonis_simulator.common import Reply, bad_request, iso, new_id, utc_now
from oe_assets.celonis_simulator.pool import (
    Pool,
    count_rows,
    duplicate_keys,
    find_table,
    schema_for,
    table_columns,
)

_PROCESS_FIELDS = (
    "caseIdColumn",
    "activityColumn",
    "timestampColumn",
    "sortingColumn",
    "endTimestampColumn",
    "costColumn",
    "userColumn",
)


@dataclass(slots=True)
class Load:
    """One data-model load: RUNNING until the worker finishes it."""

    id: str
    load_type: str  # COMPLETE | PARTIAL | FROM_CACHE
    started: datetime
    table_ids: list[str] | None  # PARTIAL: the tables reloaded; the others come from the cache
    status: str = "RUNNING"
    message: str | None = None
    ended: datetime | None = None
    table_loads: list[dict[str, Any]] = field(default_factory=list)

    def history_entry(self, model_id: str) -> dict[str, Any]:
        """A ``DataModelDataLoadHistoryTransport``."""
        return {
            "dataLoadId": self.id,
            "dataModelId": model_id,
            "startDate": iso(self.started),
            "endDate": iso(self.ended),
            "loadStatus": self.status,
            "message": self.message,
            "loadType": self.load_type,
            "dataPoolVersion": None,
        }


def _not_found(model_id: str) -> Reply:
    return Reply(404, f"Data model {model_id} not found")


class DataModelStore:
    """The pool's data models (in memory) and their loads."""

    def __init__(self, pool: Pool, pool_id: str) -> None:
        self.pool = pool
        self.pool_id = pool_id
        self._lock = threading.RLock()
        self._models: dict[str, dict[str, Any]] = {}
        self._loads: dict[str, list[Load]] = {}

    # ------------------------------------------------------------ data models

    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip():
            raise bad_request("A data model needs a name", "DATA_MODEL_INVALID")
        now = iso(utc_now())
        model = {
            "id": new_id(),
            "name": body["name"],
            "description": body.get("description"),
            "poolId": self.pool_id,
            "createDate": now,
            "changedDate": now,
            "configurationSkipped": bool(body.get("configurationSkipped", False)),
            "unavailable": False,
            "editable": True,
            "permissions": ["EDIT", "VIEW"],
            "dataModelCalendarType": body.get("dataModelCalendarType") or "NONE",
            "tables": [],
            "foreignKeys": [],
            "processConfigurations": [],
        }
        with self._lock:
            self._models[model["id"]] = model
            return copy.deepcopy(model)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._models.values()))

    def get(self, model_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._model(model_id))

    def update(self, model_id: str, body: Any) -> dict[str, Any]:
        """PUT: replaces name, description and processConfigurations (each only when present)."""
        if not isinstance(body, dict):
            raise bad_request("The body must be a DataModelTransport object", "DATA_MODEL_INVALID")
        with self._lock:
            model = self._model(model_id)
            if "name" in body:
                if not isinstance(body["name"], str) or not body["name"].strip():
                    raise bad_request("A data model needs a name", "DATA_MODEL_INVALID")
                model["name"] = body["name"]
            if "description" in body:
                model["description"] = body["description"]
            if "processConfigurations" in body:
                model["processConfigurations"] = self._process_configurations(
                    model, body["processConfigurations"]
                )
            model["changedDate"] = iso(utc_now())
            return copy.deepcopy(model)

    def delete(self, model_id: str) -> None:
        with self._lock:
            self._model(model_id)
            del self._models[model_id]
            self._loads.pop(model_id, None)

    def _model(self, model_id: str) -> dict[str, Any]:
        model = self._models.get(model_id)
        if model is None:
            raise _not_found(model_id)
        return model

    @staticmethod
    def _process_configurations(model: dict[str, Any], raw: Any) -> list[dict[str, Any]]:
        """Validated process configurations (their table ids must be tables of the model)."""
        if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
            raise bad_request("processConfigurations must be an array of objects", "DATA_MODEL_INVALID")
        table_ids = {t["id"] for t in model["tables"]}
        configs = []
        for entry in raw:
            for name in ("activityTableId", "caseTableId"):
                if entry.get(name) is not None and entry[name] not in table_ids:
                    raise bad_request(
                        f"{name} {entry[name]} is no table of data model {model['id']}", "DATA_MODEL_INVALID"
                    )
            configs.append({**entry, "id": entry.get("id") or new_id(), "dataModelId": model["id"]})
        return configs

    # ------------------------------------------------------------ tables and foreign keys

    def add_tables(self, model_id: str, body: Any) -> list[dict[str, Any]]:
        """Add pool tables by name (a table not in the pool is accepted; its load fails later)."""
        if not isinstance(body, list) or not all(isinstance(t, dict) for t in body):
            raise bad_request("The body must be an array of DataModelTableTransport", "DATA_MODEL_INVALID")
        with self._lock:
            model = self._model(model_id)
            taken = {t["aliasOrName"].lower() for t in model["tables"]}
            added = []
            for entry in body:
                table = _dm_table(model_id, entry)
                if table["aliasOrName"].lower() in taken:
                    raise bad_request(
                        f"Table {table['aliasOrName']} already exists in the data model",
                        "DATA_MODEL_TABLE_EXISTS",
                    )
                taken.add(table["aliasOrName"].lower())
                added.append(table)
            model["tables"].extend(added)
            model["changedDate"] = iso(utc_now())
            return copy.deepcopy(added)

    def tables(self, model_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._model(model_id)["tables"])

    def table(self, model_id: str, table_id: str) -> dict[str, Any]:
        with self._lock:
            for table in self._model(model_id)["tables"]:
                if table["id"] == table_id:
                    return copy.deepcopy(table)
        raise Reply(404, f"Data model table {table_id} not found")

    def delete_table(self, model_id: str, table_id: str) -> None:
        """Remove a table and the foreign keys that use it."""
        with self._lock:
            self.table(model_id, table_id)
            model = self._model(model_id)
            model["tables"] = [t for t in model["tables"] if t["id"] != table_id]
            model["foreignKeys"] = [
                fk
                for fk in model["foreignKeys"]
                if table_id not in (fk["sourceTableId"], fk["targetTableId"])
            ]

    def add_foreign_key(self, model_id: str, body: Any) -> dict[str, Any]:
        """A foreign key between two tables of the model; 400 for unknown table ids or no columns."""
        if not isinstance(body, dict):
            raise bad_request("The body must be a DataModelForeignKeyTransport", "DATA_MODEL_INVALID")
        columns = body.get("columns")
        if (
            not isinstance(columns, list)
            or not columns
            or not all(
                isinstance(c, dict)
                and isinstance(c.get("sourceColumnName"), str)
                and isinstance(c.get("targetColumnName"), str)
                for c in columns
            )
        ):
            raise bad_request(
                "columns must be a non-empty array of {sourceColumnName, targetColumnName}",
                "DATA_MODEL_INVALID",
            )
        with self._lock:
            model = self._model(model_id)
            table_ids = {t["id"] for t in model["tables"]}
            for name in ("sourceTableId", "targetTableId"):
                if body.get(name) not in table_ids:
                    raise bad_request(
                        f"{name} {body.get(name)} is no table of data model {model_id}", "DATA_MODEL_INVALID"
                    )
            fk = {
                "id": new_id(),
                "dataModelId": model_id,
                "sourceTableId": body["sourceTableId"],
                "targetTableId": body["targetTableId"],
                "columns": [
                    {
                        "id": new_id(),
                        "sourceColumnName": c["sourceColumnName"],
                        "targetColumnName": c["targetColumnName"],
                    }
                    for c in columns
                ],
            }
            model["foreignKeys"].append(fk)
            return copy.deepcopy(fk)

    def foreign_keys(self, model_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._model(model_id)["foreignKeys"])

    def delete_foreign_key(self, model_id: str, fk_id: str) -> None:
        with self._lock:
            model = self._model(model_id)
            kept = [fk for fk in model["foreignKeys"] if fk["id"] != fk_id]
            if len(kept) == len(model["foreignKeys"]):
                raise Reply(404, f"Foreign key {fk_id} not found")
            model["foreignKeys"] = kept

    # ------------------------------------------------------------ loads

    def start_load(self, model_id: str, load_type: str, table_ids: list[str] | None = None) -> Load:
        """Start a load (RUNNING); 409 while another runs, 400 for unknown table ids of a partial load."""
        with self._lock:
            model = self._model(model_id)
            known = {t["id"] for t in model["tables"]}
            unknown = [t for t in table_ids or [] if t not in known]
            if unknown:
                raise bad_request(
                    f"No tables {', '.join(unknown)} in data model {model_id}", "DATA_MODEL_INVALID"
                )
            loads = self._loads.setdefault(model_id, [])
            if loads and loads[-1].status == "RUNNING":
                raise Reply(409, f"A load of data model {model_id} is already running")
            load = Load(new_id(), load_type, utc_now(), table_ids)
            loads.append(load)
            return load

    def finish_load(self, model_id: str, load: Load, fail: bool) -> None:
        """Check the model against the pool and end the load in SUCCESS or ERROR."""
        with self._lock:
            model = self._models.get(model_id)
            if model is None:
                return
            model = copy.deepcopy(model)
            previous = self._previous_counts(model_id, load)
        errors, counts = _check_model(self.pool, model)
        if fail:
            errors.insert(0, "Simulated load failure")
        table_loads = []
        for table in model["tables"]:
            count = counts.get(table["id"])
            if load.table_ids is not None and table["id"] not in load.table_ids and table["id"] in previous:
                count = previous[table["id"]]  # a partial load takes the other tables from the cache
            table_loads.append(
                {
                    "tableId": table["id"],
                    "tableName": table["aliasOrName"],
                    "tableRowCount": count or 0,
                    "done": not errors,
                    "invisible": False,
                    "cancel": False,
                }
            )
        with self._lock:
            load.table_loads = table_loads
            load.status = "ERROR" if errors else "SUCCESS"
            load.message = "; ".join(errors) if errors else None
            load.ended = utc_now()

    def _previous_counts(self, model_id: str, load: Load) -> dict[str, int]:
        for earlier in reversed(self._loads.get(model_id, [])):
            if earlier is not load and earlier.status == "SUCCESS":
                return {t["tableId"]: t["tableRowCount"] for t in earlier.table_loads}
        return {}

    def load_info(self, model_id: str) -> dict[str, Any]:
        """``DataModelLoadSyncTransport`` of load-info-sync: the latest load and the history."""
        with self._lock:
            model = self._model(model_id)
            loads = list(self._loads.get(model_id, []))
            current = loads[-1] if loads else None
            last_ok = next((x for x in reversed(loads) if x.status == "SUCCESS"), None)
            return {
                "loadInfo": {
                    "liveDataModel": _live_model(model, current),
                    "currentComputeLoad": current.history_entry(model_id) if current else None,
                },
                "loadHistory": {
                    "lastSuccessfulDataModel": None
                    if last_ok is None
                    else {
                        "dataModelId": model_id,
                        "dataLoadId": last_ok.id,
                        "message": last_ok.message,
                        "loadStatus": last_ok.status,
                        "startDate": iso(last_ok.started),
                        "endDate": iso(last_ok.ended),
                        "warmupDuration": 0,
                        "done": True,
                    },
                    "dataLoadHistory": [x.history_entry(model_id) for x in reversed(loads)],
                    "averageLoadTime": [],
                },
            }


def _dm_table(model_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A DataModelTableTransport from a posted entry; 400 without a name."""
    name, alias = entry.get("name"), entry.get("alias")
    if not isinstance(name, str) or not name:
        raise bad_request("Every data-model table needs the name of a pool table", "DATA_MODEL_INVALID")
    if alias is not None and not isinstance(alias, str):
        raise bad_request("alias must be a string", "DATA_MODEL_INVALID")
    keys = entry.get("primaryKeys")
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
        raise bad_request("primaryKeys must be an array of column names", "DATA_MODEL_INVALID")
    return {
        "id": new_id(),
        "dataModelId": model_id,
        "dataSourceId": entry.get("dataSourceId") or None,
        "name": name,
        "alias": alias or None,
        "aliasOrName": alias or name,
        "primaryKeys": keys or [],
        "columns": [],
        "useDirectStorage": False,
    }


def _live_model(model: dict[str, Any], load: Load | None) -> dict[str, Any]:
    """``DataModelLoadTransport``: the model as the latest load left it."""
    return {
        "dataModelId": model["id"],
        "dataModelName": model["name"],
        "done": load is not None and load.status != "RUNNING",
        "error": load is not None and load.status == "ERROR",
        "tablesLoaded": load is not None and load.status == "SUCCESS",
        "errorMessage": load.message if load is not None and load.status == "ERROR" else None,
        "lastLoad": iso(load.ended) if load is not None else None,
        "numTables": len(model["tables"]),
        "scheduledLoading": False,
        "cancel": False,
        "tableLoads": copy.deepcopy(load.table_loads) if load is not None else [],
        "startTime": iso(load.started) if load is not None else None,
        "endTime": iso(load.ended) if load is not None else None,
        "dataLoadId": load.id if load is not None else None,
    }


def _check_model(pool: Pool, model: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    """What a load of the model would fail on, and the row count of each table that exists."""
    errors: list[str] = []
    counts: dict[str, int] = {}
    columns: dict[str, set[str]] = {}
    with pool.connect() as con:
        for table in model["tables"]:
            schema = schema_for(table["dataSourceId"])
            stored = find_table(con, schema, table["name"])
            if stored is None:
                errors.append(f"Table {table['name']} does not exist in the data pool")
                continue
            counts[table["id"]] = count_rows(con, schema, stored)
            columns[table["id"]] = {c.name.lower() for c in table_columns(con, schema, stored)}
            errors.extend(_primary_key_errors(con, table, schema, stored, columns[table["id"]]))
    errors.extend(_column_errors(model, columns))
    return errors, counts


def _primary_key_errors(
    con: duckdb.DuckDBPyConnection, table: dict[str, Any], schema: str, stored: str, columns: set[str]
) -> list[str]:
    keys: list[str] = table["primaryKeys"]
    missing = [k for k in keys if k.lower() not in columns]
    if missing:
        return [f"Table {table['aliasOrName']}: primary key column {missing[0]} does not exist"]
    if keys and (dupes := duplicate_keys(con, schema, stored, keys)):
        return [f"Table {table['aliasOrName']}: primary key ({', '.join(keys)}) has {dupes} duplicate values"]
    return []


def _column_errors(model: dict[str, Any], columns: dict[str, set[str]]) -> list[str]:
    """Foreign-key and process-configuration columns the (existing) tables lack."""
    by_id = {t["id"]: t for t in model["tables"]}
    errors: list[str] = []

    def need(table_id: str | None, column: Any, what: str) -> None:
        if table_id in columns and isinstance(column, str) and column.lower() not in columns[table_id]:
            errors.append(f"{what}: column {column} does not exist in table {by_id[table_id]['aliasOrName']}")

    for fk in model["foreignKeys"]:
        src, tgt = by_id[fk["sourceTableId"]]["aliasOrName"], by_id[fk["targetTableId"]]["aliasOrName"]
        for pair in fk["columns"]:
            need(fk["sourceTableId"], pair["sourceColumnName"], f"Foreign key {src} -> {tgt}")
            need(fk["targetTableId"], pair["targetColumnName"], f"Foreign key {src} -> {tgt}")
    for config in model["processConfigurations"]:
        for name in _PROCESS_FIELDS:
            need(config.get("activityTableId"), config.get(name), "Process configuration")
    return errors
