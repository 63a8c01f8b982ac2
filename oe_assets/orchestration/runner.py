"""Run the asset graph through Dagster from Python (the CLI's `demo` and `materialize`).

Runs go to the instance in DAGSTER_HOME, so they show in `dagster dev` afterwards.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from oe_assets.orchestration.partitions import RANGE_END_TAG, RANGE_START_TAG
from oe_assets.orchestration.resources import WarehouseResource
from oe_assets.warehouse.locking import exclusive_file_lock, lock_path_for
from oe_assets.warehouse.postgres.locks import WHOLE, partition_locks

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DAGSTER_HOME = PROJECT_ROOT / "dagster_home"
_INSTANCE_TEMPLATE = Path(__file__).resolve().parent / "dagster_instance.yaml"

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def ensure_dagster_home(path: Path | None = None) -> Path:
    """DAGSTER_HOME (or the project's folder) with our dagster.yaml (pools, run monitoring) in it."""
    home = Path(path or os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    # Two commands started together on a new home would both create Dagster's SQLite storage and
    # race its migrations; the first one creates it under a lock, the others find it ready.
    with exclusive_file_lock(home / ".oe_assets_init.lock", timeout_seconds=120):
        config = home / "dagster.yaml"
        if not config.exists():
            shutil.copyfile(_INSTANCE_TEMPLATE, config)
        if not (home / ".oe_assets_initialized").exists():
            dg.DagsterInstance.from_config(str(home)).dispose()
            (home / ".oe_assets_initialized").touch()
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: str
    offending_rows: int | None


@dataclass
class GraphRunReport:
    run_ids: list[str] = field(default_factory=list)
    success: bool = True
    failure: str | None = None  # one sentence for the user
    failure_details: str | None = None  # the whole error with its causes and stacks (`--debug`)
    materialized: int = 0
    checks: list[CheckOutcome] = field(default_factory=list)


def _step_error(result: dg.ExecuteInProcessResult) -> SerializableErrorInfo | None:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            return event.step_failure_data.error
    return None


def _failure_message(error: SerializableErrorInfo | None) -> str:
    """The deepest cause's first line: our errors are written as one sentence naming the setting to
    fix, and DuckDB's put the reason first, then the statement with a caret under the culprit."""
    if error is None:
        return "the run failed; see the run's logs in the Dagster UI"
    if error.cls_name == "DagsterExecutionInterruptedError":
        return "interrupted (Ctrl-C); the days it had not finished are as before"
    while error.cause is not None:
        error = error.cause
    lines = [line.strip() for line in error.message.strip().splitlines() if line.strip()]
    text = lines[0] if lines else error.message
    kind, _, rest = text.partition(": ")
    return rest if rest and kind.endswith(("Error", "Exceeded", "Exception")) else text


def _collect(report: GraphRunReport, result: dg.ExecuteInProcessResult) -> None:
    report.run_ids.append(result.run_id)
    report.materialized += len(result.get_asset_materialization_events())
    for evaluation in result.get_asset_check_evaluations():
        rows = evaluation.metadata.get("offending_rows")
        report.checks.append(
            CheckOutcome(
                asset=evaluation.asset_key.to_user_string(),
                name=evaluation.check_name,
                passed=evaluation.passed,
                severity=evaluation.severity.value,
                offending_rows=int(rows.value) if rows is not None else None,  # type: ignore[arg-type]
            )
        )
    if not result.success:
        report.success = False
        if report.failure is None:
            error = _step_error(result)
            report.failure = _failure_message(error)
            report.failure_details = error.to_string() if error else None


def run_whole_graph(
    defs: dg.Definitions, start: date, end: date, *, instance: dg.DagsterInstance | None = None
) -> GraphRunReport:
    """Catalog first (digital processes, accounts), then the days start..end as one run."""
    report = GraphRunReport()
    instance = instance or dg.DagsterInstance.get()
    # Whole-graph runs take turns, so that another one cannot interleave between our writes and
    # our checks (a check sees the graph as this run left it). The turn is a lock of its own, not
    # the warehouse's: the warehouse is locked only while a step has it open, never while the
    # API is read, so other processes (readers, `oe-assets prune`) get it in between.
    with _graph_turn(defs):
        _run_catalog_then_contexts(defs, start, end, instance, report)
    return report


@contextmanager
def _graph_turn(defs: dg.Definitions) -> Iterator[None]:
    """A whole-graph run's turn: a lock file beside a DuckDB warehouse, an advisory lock in a
    PostgreSQL one (runs on other machines take turns too)."""
    warehouse = (defs.resources or {}).get("warehouse")
    if isinstance(warehouse, WarehouseResource) and warehouse.on_postgres:
        with warehouse.postgres() as pg, partition_locks(pg, "whole_graph", [WHOLE], timeout_seconds=3600):
            yield
        return
    with exclusive_file_lock(graph_lock_path(_warehouse_path(defs))):
        yield


def graph_lock_path(database: str) -> Path:
    """Held by a whole-graph run (CLI ``materialize``/``demo``) from its first step to its last."""
    return lock_path_for(database).with_suffix(".graph.lock")


def _warehouse_path(defs: dg.Definitions) -> str:
    database = getattr((defs.resources or {}).get("warehouse"), "database", None)
    if isinstance(database, dg.EnvVar):
        return database.get_value() or ""
    return str(database)


def _run_catalog_then_contexts(
    defs: dg.Definitions, start: date, end: date, instance: dg.DagsterInstance, report: GraphRunReport
) -> None:
    from oe_assets.defs.automation.jobs import CATALOG_JOB, CONTEXTS_JOB

    catalog = defs.resolve_job_def(CATALOG_JOB).execute_in_process(
        instance=instance, run_config=QUIET_LOGS, raise_on_error=False
    )
    _collect(report, catalog)
    if not catalog.success:
        return
    tags = {RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()}
    contexts = defs.resolve_job_def(CONTEXTS_JOB).execute_in_process(
        instance=instance, tags=tags, run_config=QUIET_LOGS, raise_on_error=False
    )
    _collect(report, contexts)
