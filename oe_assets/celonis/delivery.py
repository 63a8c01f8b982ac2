"""Deliver warehouse tables into a Celonis data pool: plan, submit one job per table, confirm.

1. Plan (warehouse open): per table, what differs from the ledger, written as Parquet chunks.
2. Submit (warehouse closed): per table that needs it, one push job: create, upload chunks,
   execute. All jobs run in Celonis at once; each is then polled until it ends.
3. Confirm (warehouse open): the tables whose job ended DONE go into the ledger, in one
   transaction each. A job that ended in ERROR records nothing and fails the run with
   Celonis's log; the next run plans it again.

Before submitting, our own submissions this UTC hour are counted against the hourly limit, so a
busy schedule defers a push (:class:`CelonisHourlyLimit`) instead of having Celonis refuse it
halfway.

The warehouse is DuckDB's or PostgreSQL's (whichever connection the opener gives): a PostgreSQL
table is planned in a DuckDB copy (:mod:`oe_assets.celonis.ledger_pg`), the ledger is kept in the
warehouse itself either way.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import duckdb

from oe_assets.celonis import ledger
from oe_assets.celonis.api import CelonisApi
from oe_assets.celonis.errors import CelonisError, CelonisHourlyLimit, CelonisJobFailed, CelonisRequestError
from oe_assets.celonis.ledger_pg import plan_table_pg
from oe_assets.config.secret import get_logger
from oe_assets.model.integrity import table_exists

logger = get_logger("oe_assets.celonis")

T = TypeVar("T")
WarehouseOpener = Callable[[], AbstractContextManager[ledger.LedgerConnection]]


@dataclass(frozen=True)
class PushTable:
    """A warehouse table to deliver, under the same name, keyed by its primary key."""

    name: str
    keys: tuple[str, ...]


@dataclass
class TableDelivery:
    target: str
    outcome: str  # "pushed", "unchanged" or "absent" (the warehouse has no such table yet)
    mode: str = ""
    upserts: int = 0
    deletes: int = 0
    warehouse_rows: int = 0
    parquet_bytes: int = 0
    job_id: str = ""


@dataclass
class DeliveryReport:
    tables: dict[str, TableDelivery] = field(default_factory=dict)
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    """plan (diff and Parquet, warehouse open), submit (create, upload, execute), wait (until
    Celonis ends every job), confirm (the ledger): where a push spends its time."""

    @property
    def parquet_bytes(self) -> int:
        return sum(t.parquet_bytes for t in self.tables.values())

    @property
    def pushed(self) -> list[str]:
        return [name for name, t in self.tables.items() if t.outcome == "pushed"]


class _Laps:
    """``lap(name, value)``: the seconds since the previous lap go to ``name``; returns ``value``."""

    def __init__(self, into: dict[str, float]) -> None:
        self._into = into
        self._last = time.monotonic()

    def __call__(self, name: str, value: T) -> T:
        now = time.monotonic()
        self._into[name] = round(now - self._last, 3)
        self._last = now
        return value


def destination_id(url: str, pool_id: str, connection_id: str) -> str:
    """Which pool (and connection schema) a ledger entry is about: another pool starts afresh."""
    return f"{url.rstrip('/')}|{pool_id}|{connection_id}"


def deliver(
    api: CelonisApi,
    open_warehouse: WarehouseOpener,
    tables: Sequence[PushTable],
    *,
    jobs_per_hour: int,
) -> DeliveryReport:
    """Make the pool hold exactly the rows of ``tables``; see the module's docstring."""
    started = time.monotonic()
    destination = destination_id(api.config.url, api.config.pool_id, api.config.connection_id)
    report = DeliveryReport()
    lap = _Laps(report.phase_seconds)
    with tempfile.TemporaryDirectory(prefix="oe_celonis_push_") as folder:
        plans = lap("plan", _plan(open_warehouse, destination, tables, Path(folder), report))
        submitted, stopped = lap(
            "submit", _submit_within_limit(api, open_warehouse, destination, plans, jobs_per_hour)
        )
        finished = {plan.target: (plan, job_id, api.wait_for_job(job_id)) for plan, job_id in submitted}
        lap("wait", None)
        _confirm_done(open_warehouse, destination, finished, report)
        lap("confirm", None)
    for _, job_id, _ in finished.values():
        _forget_job(api, job_id)
    report.seconds = time.monotonic() - started
    failed = [(plan, job) for plan, _, job in finished.values() if job.get("status") != "DONE"]
    if failed:
        plan, job = failed[0]
        raise CelonisJobFailed(
            plan.target, str(job.get("status")), [str(line) for line in job.get("logs") or []]
        )
    if stopped is not None:
        raise stopped
    return report


def _plan(
    open_warehouse: WarehouseOpener,
    destination: str,
    tables: Sequence[PushTable],
    folder: Path,
    report: DeliveryReport,
) -> list[ledger.TablePlan]:
    plans = []
    with open_warehouse() as conn:
        for i, table in enumerate(tables):
            plan = _plan_table(conn, destination, table, folder / f"t{i}")
            if plan is None:
                report.tables[table.name] = TableDelivery(table.name, "absent")
                continue
            report.tables[table.name] = TableDelivery(
                table.name,
                "pushed" if plan.needs_job else "unchanged",
                plan.mode if plan.needs_job else "",
                plan.upserts,
                plan.deletes,
                plan.warehouse_rows,
                sum(p.stat().st_size for p in plan.upsert_files + plan.delete_files),
            )
            plans.append(plan)
    return [plan for plan in plans if plan.needs_job]


def _plan_table(
    conn: ledger.LedgerConnection, destination: str, table: PushTable, folder: Path
) -> ledger.TablePlan | None:
    """The table's plan; None when the warehouse has no such table yet."""
    if not isinstance(conn, duckdb.DuckDBPyConnection):
        return plan_table_pg(conn, destination, table.name, table.keys, folder)
    if not table_exists(conn, table.name):
        return None
    return ledger.plan_table(conn, destination, table.name, table.keys, folder)


def _submit_within_limit(
    api: CelonisApi,
    open_warehouse: WarehouseOpener,
    destination: str,
    plans: list[ledger.TablePlan],
    per_hour: int,
) -> tuple[list[tuple[ledger.TablePlan, str]], CelonisError | None]:
    """Submit every plan's job, or none when they would pass the hourly limit."""
    if not plans:
        return [], None
    with open_warehouse() as conn:
        used = ledger.submitted_this_hour(conn, destination)
    if used + len(plans) > per_hour:
        raise CelonisHourlyLimit(
            None, f"; this pool's pushes used {used} of the {per_hour} this hour and need {len(plans)} more"
        )
    submitted: list[tuple[ledger.TablePlan, str]] = []
    stopped: CelonisError | None = None
    for plan in plans:
        try:
            submitted.append((plan, _submit(api, plan)))
        except CelonisHourlyLimit as exc:
            stopped = exc  # the jobs already running still finish and are confirmed
            break
    with open_warehouse() as conn:
        ledger.record_submissions(conn, destination, [(plan.target, job_id) for plan, job_id in submitted])
    return submitted, stopped


def _submit(api: CelonisApi, plan: ledger.TablePlan) -> str:
    """Create the job, upload its chunks and execute it; a job left unexecuted is deleted."""
    job_id = str(api.create_job(plan.job_body())["id"])
    try:
        for kind, files in (("upserted", plan.upsert_files), ("deleted", plan.delete_files)):
            for path in files:
                api.add_chunk(job_id, kind, path.read_bytes())
        _execute(api, job_id)
    except BaseException:
        _forget_job(api, job_id)
        raise
    logger.info("Celonis push of %s: job %s submitted (%s)", plan.target, job_id, plan.mode)
    return job_id


def _execute(api: CelonisApi, job_id: str) -> None:
    try:
        api.execute_job(job_id)
    except CelonisRequestError as exc:
        # 409: the job is no longer NEW, i.e. an earlier attempt of this call reached Celonis
        # and only its answer was lost; the job runs, so it is polled like the others.
        if exc.status != 409:
            raise


def _confirm_done(
    open_warehouse: WarehouseOpener,
    destination: str,
    finished: dict[str, tuple[ledger.TablePlan, str, dict[str, object]]],
    report: DeliveryReport,
) -> None:
    done = [(plan, job_id) for plan, job_id, job in finished.values() if job.get("status") == "DONE"]
    if not done:
        return
    with open_warehouse() as conn:
        for plan, job_id in done:
            ledger.confirm(conn, destination, plan, job_id)
            report.tables[plan.target].job_id = job_id


def _forget_job(api: CelonisApi, job_id: str) -> None:
    """Delete a job after use, as pycelonis does; a failure here loses nothing."""
    try:
        api.delete_job(job_id)
    except CelonisError as exc:
        logger.info("could not delete Celonis push job %s (%s); it does no harm", job_id, exc)
