"""Shared machinery of the reliability suite: runs, sensor ticks, warehouse snapshots and figures.

The suite drives real Dagster runs of the project's own assets against the simulator over HTTP.
To keep it to a few minutes, most runs use *light* jobs: the same assets as the project's jobs
(raw landing, flattening, event log; catalog landing and its tables) without their asset checks.
Checks only read the warehouse, so API faults cannot change them; the runs that must prove the
checks still pass use the project's own jobs (``run_whole_graph``, the CLI).

Figures (records checked, faults injected per kind, records lost) accumulate in
:data:`~oe_assets_tests.support.figures.FIGURES`.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import orjson

from oe_assets.defs.automation.jobs import CATALOG_JOB, CONTEXTS_JOB
from oe_assets.defs.automation.sensors import SENSOR_NAME
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.orchestration.runner import QUIET_LOGS, RANGE_END_TAG, RANGE_START_TAG
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.figures import FIGURES
from oe_assets_tests.support.helpers import REPO, created_day, doc_hash

ROOT = REPO

LIGHT_CONTEXTS_JOB = "reliability_contexts_without_checks"
LIGHT_CATALOG_JOB = "reliability_catalog_without_checks"
LIGHT_JOBS = {CONTEXTS_JOB: LIGHT_CONTEXTS_JOB, CATALOG_JOB: LIGHT_CATALOG_JOB}


# ------------------------------------------------------------------------------------ worlds
def morning() -> datetime:
    """Today (wall clock, UTC) at 06:00: a simulated clock that can move hours without leaving today.

    The partitions end at today's partial day (wall clock), so no context may be created later.
    """
    today = datetime.now(UTC).date()
    return datetime(today.year, today.month, today.day, 6, 0, tzinfo=UTC)


def new_simulator(seed: int, *, days: int = 2, contexts_per_day: int = 15, **kwargs: Any) -> SimulatorServer:
    return SimulatorServer(seed=seed, days=days, contexts_per_day=contexts_per_day, now=morning(), **kwargs)


def world_days(server: SimulatorServer) -> list[date]:
    """Every creation day from the oldest context to the simulated today."""
    first = min(created_day(c) for c in server.world.contexts())
    last = server.world.now.date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def api_resource(server: SimulatorServer, **overrides: Any) -> OeApiResource:
    values: dict[str, Any] = {
        "api_url": server.url,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "page_size": 3,
        "timeout_seconds": 5.0,
        "retry_budget_seconds": 20.0,
        "backoff_base_seconds": 0.05,
    }
    values.update(overrides)
    return OeApiResource(**values)


def resources_for(server: SimulatorServer, warehouse: Path | str, **api: Any) -> dict[str, Any]:
    return {"oe_api": api_resource(server, **api), "warehouse": WarehouseResource(database=str(warehouse))}


# -------------------------------------------------------------------------------------- runs
def with_light_jobs(defs: dg.Definitions) -> dg.Definitions:
    """The project's definitions plus its two jobs' assets without their checks (see module doc)."""
    contexts = dg.define_asset_job(
        LIGHT_CONTEXTS_JOB,
        selection=dg.AssetSelection.assets("raw_process_contexts", "execution_context", "event_log")
        .required_multi_asset_neighbors()
        .without_checks(),
    )
    catalog = dg.define_asset_job(
        LIGHT_CATALOG_JOB,
        selection=dg.AssetSelection.assets(
            "raw_execution_templates", "raw_accounts", "execution_templates", "accounts"
        )
        .required_multi_asset_neighbors()
        .without_checks(),
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[contexts, catalog]))


def light_definitions(resources: Mapping[str, Any]) -> dg.Definitions:
    from oe_assets.definitions import build_definitions

    return with_light_jobs(build_definitions(dict(resources)))


def run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    partition_key: str | None = None,
    days: Sequence[date] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """One in-process run; ``days`` makes it a single-run range (the way a backfill runs)."""
    all_tags = dict(tags or {})
    if days:
        all_tags.update({RANGE_START_TAG: min(days).isoformat(), RANGE_END_TAG: max(days).isoformat()})
    FIGURES.runs += 1
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=partition_key,
        tags=all_tags,
        run_config=QUIET_LOGS,
        raise_on_error=False,
    )


def light_full_load(
    defs: dg.Definitions, instance: dg.DagsterInstance, days: Sequence[date]
) -> list[dg.ExecuteInProcessResult]:
    """Catalog, then every day as one run: what run_whole_graph does, without the checks."""
    catalog = run_job(defs, instance, LIGHT_CATALOG_JOB)
    if not catalog.success:
        return [catalog]
    return [catalog, run_job(defs, instance, LIGHT_CONTEXTS_JOB, days=days)]


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = defs.get_sensor_def(SENSOR_NAME)
    resources = defs.resources or {}
    context = dg.build_sensor_context(
        cursor=cursor, instance=instance, definitions=defs, resources={"oe_api": resources["oe_api"]}
    )
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def run_requests(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    requests: Sequence[dg.RunRequest],
    *,
    light: bool = True,
) -> list[dg.ExecuteInProcessResult]:
    """Runs what a sensor tick requested, one run per request (as the daemon would launch them)."""
    results = []
    for request in requests:
        job = request.job_name or CONTEXTS_JOB
        results.append(
            run_job(
                defs,
                instance,
                LIGHT_JOBS[job] if light else job,
                partition_key=request.partition_key,
                tags=request.tags,
            )
        )
    return results


def sensor_refresh(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    cursor: str | None = None,
    light: bool = True,
    max_ticks: int = 3,
) -> tuple[set[str], str | None]:
    """Ticks the sensor and runs what it asks for, until a tick asks for nothing or ``max_ticks``.

    Returns the partitions it asked for and its last cursor. (The first tick from no cursor asks
    for the catalog only; the partitions come on the next tick.)
    """
    requested: set[str] = set()
    for _ in range(max_ticks):
        result = tick(defs, instance, cursor)
        cursor = result.cursor
        if not result.run_requests:
            break
        for run in run_requests(defs, instance, result.run_requests, light=light):
            assert run.success, failure_text(run)
        requested |= {r.partition_key for r in result.run_requests if r.partition_key}
    return requested, cursor


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """The messages of a run's step failures (cause chains included)."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error: Any = event.step_failure_data.error
            while error is not None:
                texts.append(error.message.strip())
                error = error.cause
    return "\n".join(texts)


# --------------------------------------------------------------------------------- snapshots
def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=True)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def all_tables(conn: duckdb.DuckDBPyConnection) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def warehouse_snapshot(path: Path) -> dict[str, list[str]]:
    """Every table's rows (every column), sorted: equal snapshots mean byte-for-byte equal content."""
    if not path.exists():
        return {}
    conn = _connect(path)
    try:
        return {
            table: sorted(repr(row) for row in conn.execute(f"SELECT * FROM {quote(table)}").fetchall())
            for table in all_tables(conn)
        }
    finally:
        conn.close()


@dataclass
class Comparison:
    expected: int
    checked: int
    lost: list[str]
    changed: list[str]
    extra: list[str]
    duplicates: dict[str, list[str]]
    event_log_only: list[str] = field(default_factory=list)
    """event_log instances without a landed context"""
    marked_deleted: list[str] = field(default_factory=list)
    """landed contexts the API no longer returns: kept in every table, marked deleted"""
    wrongly_marked: list[str] = field(default_factory=list)
    """contexts marked deleted that the API still returns, or marked differently across tables"""

    @property
    def exact(self) -> bool:
        return not (
            self.lost
            or self.changed
            or self.extra
            or self.event_log_only
            or self.wrongly_marked
            or any(self.duplicates.values())
        )


def _duplicates(values: Sequence[str]) -> list[str]:
    return sorted(k for k, n in Counter(values).items() if n > 1)


def compare_with_simulator(
    path: Path, contexts: Sequence[dict[str, Any]], days: Sequence[date] | None = None, *, record: bool = True
) -> Comparison:
    """The warehouse's raw documents (hashed), execution_context and event_log ids vs ``contexts``.

    What was landed stays landed: a landed context the API no longer returns must still be in
    the three tables, marked deleted with the same time in each (``deleted_at`` /
    ``_oe_deleted_at``); the contexts not marked must be exactly ``contexts``. With ``days``,
    only those creation days are compared (both sides).
    """
    wanted = {
        c["context"]["processid"]: doc_hash(c) for c in contexts if days is None or created_day(c) in days
    }
    conn = _connect(path)
    try:
        where, params = "", []
        if days is not None:
            where, params = "WHERE partition_date IN (SELECT unnest(?::DATE[]))", [list(days)]
        raw = conn.execute(
            f"SELECT process_id, document, deleted_at FROM raw_process_contexts {where}", params
        ).fetchall()
        cwhere = where.replace("partition_date", "_oe_partition")
        flat = conn.execute(
            f'SELECT "context$processid", _oe_deleted_at FROM execution_context {cwhere}', params
        ).fetchall()
        lwhere = where.replace("partition_date", "CAST(created_at AS DATE)")
        logged = conn.execute(
            f"SELECT instance_id, _oe_deleted_at FROM event_log {lwhere}", params
        ).fetchall()
    finally:
        conn.close()
    landed = {str(pid): doc_hash(orjson.loads(document)) for pid, document, at in raw if at is None}
    marks = {str(pid): at for pid, _, at in raw}
    lost = sorted(set(wanted) - set(landed))
    changed = sorted(p for p in set(wanted) & set(landed) if wanted[p] != landed[p])
    extra = sorted(set(landed) - set(wanted))
    duplicates = {
        "raw_process_contexts": _duplicates([str(r[0]) for r in raw]),
        "execution_context": _duplicates([str(r[0]) for r in flat]),
        "event_log": _duplicates([str(r[0]) for r in logged]),
    }
    # the flattened table and the event log hold exactly the landed ids, with the same marks
    flat_ids, logged_ids = {str(r[0]) for r in flat}, {str(r[0]) for r in logged}
    if flat_ids != set(marks):
        extra += sorted({f"execution_context:{p}" for p in flat_ids ^ set(marks)})
    if set(marks) - logged_ids:
        extra += sorted({f"not in event_log:{p}" for p in set(marks) - logged_ids})
    marked = sorted(p for p, at in marks.items() if at is not None)
    wrongly_marked = sorted(set(marked) & set(wanted))
    for table, rows in (("execution_context", flat), ("event_log", logged)):
        wrongly_marked += sorted(
            f"{table}:{pid}" for pid, at in rows if str(pid) in marks and at != marks[str(pid)]
        )
    event_log_only = sorted(logged_ids - set(marks))
    result = Comparison(
        len(wanted), len(wanted), lost, changed, extra, duplicates, event_log_only, marked, wrongly_marked
    )
    if record:
        FIGURES.records_checked += len(wanted)
        FIGURES.records_lost += len(lost) + len(changed)
        FIGURES.records_duplicated += sum(len(v) for v in duplicates.values())
    return result


def landed_documents(path: Path) -> dict[str, str]:
    """process id -> document hash of the raw layer."""
    conn = _connect(path)
    try:
        rows = conn.execute("SELECT process_id, document FROM raw_process_contexts").fetchall()
    finally:
        conn.close()
    return {str(pid): doc_hash(orjson.loads(doc)) for pid, doc in rows}


# ------------------------------------------------------------------------------ subprocesses
def subprocess_env(
    server: SimulatorServer, warehouse: Path | str, home: Path, **extra: str
) -> dict[str, str]:
    """The environment of a pipeline process pointed at ``server`` (no OE_* variable inherited);
    ``warehouse``: a DuckDB file, or a PostgreSQL URL (its password in ``extra``'s PGPASSWORD)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OE_")}
    env.update(
        DAGSTER_HOME=str(home),
        OE_API_URL=server.url,
        OE_CLIENT_ID=server.client_id,
        OE_CLIENT_SECRET=server.client_secret,
        OE_WAREHOUSE=str(warehouse),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def victim_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "oe_assets_tests.support.reliability_victim", *args]
