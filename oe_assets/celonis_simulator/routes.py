"""The stand-in's API routes: which method and path run which handler, and the handlers themselves.

Paths follow pycelonis and the Celonis docs (the contract reference, celonis-push-api.md): the Data
Push API under both ``/integration/api/v1/data-push`` and ``/data-ingestion/api/v1/data-push`` (older
and newer clients use different ones), the pool and data-model API under ``/integration/api``. A
trailing slash never matters. A handler gets the server and the request and returns (status, JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Any

import orjson

from oe_assets.celonis_simulator.common import Reply, bad_request
from oe_assets.celonis_simulator.jobs import new_job
from oe_assets.celonis_simulator.pool import GLOBAL_SCHEMA, schema_for
from oe_assets.celonis_simulator.schema import POOL_COLUMN_TYPES, Column

if TYPE_CHECKING:
    from oe_assets.celonis_simulator.server import CelonisSimulatorServer

PUSH = "push"  # needs integration.data-pools or integration.data-pools:data_push
POOL = "pool"  # needs integration.data-pools (GET also :read)
_BYTE_WIDTHS = {"INTEGER": 8, "FLOAT": 8, "DATE": 8, "DATETIME": 8, "TIME": 8, "BOOLEAN": 1}


@dataclass(frozen=True, slots=True)
class Request:
    """One API request, its path parameters matched."""

    method: str
    params: dict[str, str]
    query: dict[str, list[str]]
    content_type: str
    body: bytes

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"null")
        except orjson.JSONDecodeError:
            raise bad_request("The body is not valid JSON") from None


Result = tuple[int, Any]
Handler = Callable[["CelonisSimulatorServer", Request], Result]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    handler: Handler
    kind: str
    upload: bool = False  # a chunk upload: its body may be as large as a chunk

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.pattern):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(self.pattern, segments, strict=True):
            if part.startswith("{"):
                if not segment:
                    return None
                params[part[1:-1]] = segment
            elif part != segment:
                return None
        return params


def find_route(method: str, segments: list[str]) -> tuple[Route, dict[str, str]]:
    """The route for a request; Reply(404) for an unknown path, Reply(405) for a wrong method."""
    allowed = []
    for route in ROUTES:
        params = route.match(segments)
        if params is not None:
            if route.method == method:
                return route, params
            allowed.append(route.method)
    if allowed:
        raise Reply(
            405,
            f"{method} is not allowed here; use {', '.join(sorted(set(allowed)))}",
            {"Allow": ", ".join(sorted(set(allowed)))},
        )
    raise Reply(404, f"No resource at /{'/'.join(segments)}")


# ---------------------------------------------------------------- multipart


def file_part(content_type: str, body: bytes) -> bytes:
    """The content of the multipart part named ``file``; 400 when the body has none."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise bad_request("A chunk is uploaded as multipart/form-data with a part named file")
    for name, data in multipart_parts(boundary, body):
        if name == "file":
            return data
    raise bad_request("The multipart body has no part named file")


def multipart_parts(boundary: str, body: bytes) -> list[tuple[str | None, bytes]]:
    """(form-field name, content) of each part of a multipart/form-data body."""
    parts: list[tuple[str | None, bytes]] = []
    for raw in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if raw.startswith(b"--"):
            break
        head, _, data = raw.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition["content-disposition"] = value.strip()
        name = disposition.get_param("name", header="content-disposition")
        parts.append((name if isinstance(name, str) else None, data.removesuffix(b"\r\n")))
    return parts


# ---------------------------------------------------------------- push jobs


def create_job(sim: CelonisSimulatorServer, req: Request) -> Result:
    job = new_job(req.json(), req.params["pool"], sim.connection_ids)
    sim.jobs.add(job)
    return 200, job.to_json()


def list_jobs(sim: CelonisSimulatorServer, req: Request) -> Result:
    with sim.jobs.lock:
        return 200, [job.to_json() for job in sim.jobs.of_pool(req.params["pool"])]


def get_job(sim: CelonisSimulatorServer, req: Request) -> Result:
    with sim.jobs.lock:
        return 200, sim.jobs.get(req.params["pool"], req.params["job"]).to_json()


def execute_job(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.execute(sim.jobs.get(req.params["pool"], req.params["job"]))


def delete_job(sim: CelonisSimulatorServer, req: Request) -> Result:
    sim.jobs.delete(req.params["pool"], req.params["job"])
    return 204, None


def _add_chunk(kind: str) -> Handler:
    def handler(sim: CelonisSimulatorServer, req: Request) -> Result:
        job = sim.jobs.get(req.params["pool"], req.params["job"])
        data = file_part(req.content_type, req.body)
        return 200, sim.jobs.add_chunk(job, kind, data).to_json()

    return handler


def list_chunks(sim: CelonisSimulatorServer, req: Request) -> Result:
    with sim.jobs.lock:
        job = sim.jobs.get(req.params["pool"], req.params["job"])
        return 200, [chunk.to_json() for chunk in job.chunks]


# ---------------------------------------------------------------- pools, connections, tables


def _pool_json(sim: CelonisSimulatorServer) -> dict[str, Any]:
    return {
        "id": sim.pool_id,
        "name": sim.pool_id,
        "configurationStatus": "CONFIGURED",
        "locked": False,
        "permissions": ["EDIT", "VIEW", "DATA_PUSH_API"],
    }


def get_pool(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, _pool_json(sim)


def list_pools(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, [_pool_json(sim)]


def _connection_json(sim: CelonisSimulatorServer, connection_id: str) -> dict[str, Any]:
    return {
        "id": connection_id,
        "name": connection_id,
        "poolId": sim.pool_id,
        "type": "PUSH",  # undocumented for push connections; a stand-in choice
        "connected": True,
        "configured": True,
        "locked": False,
        "exported": False,
        "targetSchemaName": connection_id,
    }


def list_connections(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, [_connection_json(sim, c) for c in sim.connection_ids]


def get_connection(sim: CelonisSimulatorServer, req: Request) -> Result:
    connection = req.params["source"]
    if connection not in sim.connection_ids:
        raise Reply(404, f"Data connection {connection} not found in data pool {sim.pool_id}")
    return 200, _connection_json(sim, connection)


def pool_column_json(column: Column) -> dict[str, Any]:
    """A ``PoolColumn``: Celonis reports string lengths in bytes (characters x 4, per pycelonis)."""
    length = (column.length or 0) * 4 if column.ctype == "STRING" else _BYTE_WIDTHS[column.ctype]
    return {"name": column.name, "length": length, "type": POOL_COLUMN_TYPES[column.ctype]}


def list_tables(sim: CelonisSimulatorServer, req: Request) -> Result:
    tables = []
    for schema, name, columns in sim.pool.tables():
        source = None if schema == GLOBAL_SCHEMA else schema
        tables.append(
            {
                "name": name,
                "loaderSource": None,
                "available": True,
                "dataSourceId": source,
                "dataSourceName": source,
                "columns": [pool_column_json(c) for c in columns],
                "type": "TABLE",
                "schemaName": schema,
            }
        )
    return 200, tables


def list_columns(sim: CelonisSimulatorServer, req: Request) -> Result:
    table = req.arg("tableName")
    if not table:
        raise bad_request("tableName is required")
    schema = schema_for(req.arg("schemaName") or None)
    try:
        columns = sim.pool.columns(table, schema)
    except KeyError:
        raise Reply(404, f"Table {table} not found in data pool {sim.pool_id}") from None
    return 200, [pool_column_json(c) for c in columns]


# ---------------------------------------------------------------- data models


def create_model(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.create(req.json())


def list_models(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.all()


def get_model(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.get(req.params["dm"])


def update_model(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.update(req.params["dm"], req.json())


def delete_model(sim: CelonisSimulatorServer, req: Request) -> Result:
    sim.models.delete(req.params["dm"])
    return 204, None


def add_model_tables(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.add_tables(req.params["dm"], req.json())


def list_model_tables(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.tables(req.params["dm"])


def get_model_table(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.table(req.params["dm"], req.params["table"])


def delete_model_table(sim: CelonisSimulatorServer, req: Request) -> Result:
    sim.models.delete_table(req.params["dm"], req.params["table"])
    return 204, None


def add_foreign_key(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.add_foreign_key(req.params["dm"], req.json())


def list_foreign_keys(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.foreign_keys(req.params["dm"])


def get_foreign_key(sim: CelonisSimulatorServer, req: Request) -> Result:
    for fk in sim.models.foreign_keys(req.params["dm"]):
        if fk["id"] == req.params["fk"]:
            return 200, fk
    raise Reply(404, f"Foreign key {req.params['fk']} not found")


def delete_foreign_key(sim: CelonisSimulatorServer, req: Request) -> Result:
    sim.models.delete_foreign_key(req.params["dm"], req.params["fk"])
    return 204, None


def reload_model(sim: CelonisSimulatorServer, req: Request) -> Result:
    complete = (req.arg("forceComplete") or "true").lower() != "false"
    return 200, sim.start_load(req.params["dm"], "COMPLETE" if complete else "FROM_CACHE", None)


def load_model(sim: CelonisSimulatorServer, req: Request) -> Result:
    complete = (req.arg("fullReload") or "true").lower() != "false"
    return 200, sim.start_load(req.params["dm"], "COMPLETE" if complete else "FROM_CACHE", None)


def partial_load(sim: CelonisSimulatorServer, req: Request) -> Result:
    ids = req.json()
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise bad_request("The body must be a non-empty JSON array of data-model table ids")
    return 200, sim.start_load(req.params["dm"], "PARTIAL", ids)


def load_info(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.load_info(req.params["dm"])


def last_load(sim: CelonisSimulatorServer, req: Request) -> Result:
    return 200, sim.models.load_info(req.params["dm"])["loadInfo"]["currentComputeLoad"]


# ---------------------------------------------------------------- the table


def _routes() -> list[Route]:
    routes: list[Route] = []
    for prefix in (("integration", "api", "v1", "data-push"), ("data-ingestion", "api", "v1", "data-push")):
        jobs, job = (*prefix, "{pool}", "jobs"), (*prefix, "{pool}", "jobs", "{job}")
        routes += [
            Route("POST", jobs, create_job, PUSH),
            Route("GET", jobs, list_jobs, PUSH),
            Route("GET", job, get_job, PUSH),
            Route("POST", job, execute_job, PUSH),
            Route("DELETE", job, delete_job, PUSH),
            Route("POST", (*job, "chunks", "upserted"), _add_chunk("UPSERT"), PUSH, upload=True),
            Route("POST", (*job, "chunks", "deleted"), _add_chunk("DELETE"), PUSH, upload=True),
            Route("GET", (*job, "chunks"), list_chunks, PUSH),
        ]
    pool = ("integration", "api", "pools", "{pool}")
    model, dm_tables = (*pool, "data-models", "{dm}"), (*pool, "data-model", "{dm}", "tables")
    v1_model = ("integration", "api", "v1", "data-pools", "{pool}", "data-models", "{dm}")
    routes += [
        Route("GET", ("integration", "api", "pools"), list_pools, POOL),
        Route("GET", pool, get_pool, POOL),
        Route("GET", (*pool, "data-sources"), list_connections, POOL),
        Route("GET", (*pool, "data-sources", "{source}"), get_connection, POOL),
        Route("GET", (*pool, "tables"), list_tables, POOL),
        Route("GET", (*pool, "columns"), list_columns, POOL),
        Route("POST", (*pool, "data-models"), create_model, POOL),
        Route("GET", (*pool, "data-models"), list_models, POOL),
        Route("GET", model, get_model, POOL),
        Route("PUT", model, update_model, POOL),
        Route("DELETE", model, delete_model, POOL),
        Route("POST", dm_tables, add_model_tables, POOL),
        Route("GET", dm_tables, list_model_tables, POOL),
        Route("GET", (*dm_tables, "{table}"), get_model_table, POOL),
        Route("DELETE", (*dm_tables, "{table}"), delete_model_table, POOL),
        Route("POST", (*model, "foreign-keys"), add_foreign_key, POOL),
        Route("GET", (*model, "foreign-keys"), list_foreign_keys, POOL),
        Route("GET", (*model, "foreign-keys", "{fk}"), get_foreign_key, POOL),
        Route("DELETE", (*model, "foreign-keys", "{fk}"), delete_foreign_key, POOL),
        Route("POST", (*model, "reload"), reload_model, POOL),
        Route("GET", (*model, "load-history", "load-info-sync"), load_info, POOL),
        Route("GET", (*v1_model, "tables"), list_model_tables, POOL),
        Route("POST", (*v1_model, "load"), load_model, POOL),
        Route("POST", (*v1_model, "load", "partial-sync"), partial_load, POOL),
        Route("GET", (*v1_model, "last-load"), last_load, POOL),
    ]
    return routes


ROUTES = _routes()
