"""`oe-assets bench`: generate, load with ours and with dlt (each in its own process), compare, print.

For each size N (``--contexts`` and every ``--scale`` size):

1. ``oe_assets.bench.generate`` writes N contexts as JSONL,
2. ``oe_assets.bench.ours`` loads the file into a fresh DuckDB with the assets' write path,
3. ``oe_assets.bench.dlt_peer`` loads the same file with dlt (parquet loader), for N up to
   ``--dlt-max-contexts`` and unless ``--skip-dlt``,
4. the rows of every table of both warehouses are counted and matched by JSON path,
5. at the comparison size, ``oe_assets.bench.postgres_copy`` copies our warehouse into PostgreSQL
   (with ``--copy-to URL``), ``oe_assets.bench.postgres_load`` loads the same file into a
   PostgreSQL warehouse (with ``--warehouse URL``: one run over every day, then one run per day
   with 1, 2 and 4 runs at a time), and ``oe_assets.bench.celonis_push`` pushes it into the
   Celonis stand-in (unless ``--skip-push``).

Then the incremental and extraction measurements run against simulators served by this process.
Everything is written as JSON (``--out``); :mod:`oe_assets.bench.report` judges the targets and
prints the report.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oe_assets.bench.counts import compare, count_dlt, count_ours
from oe_assets.bench.dlt_peer import DATASET, INSTALL_HINT, dlt_available
from oe_assets.bench.generate import DEFAULT_START
from oe_assets.bench.measure import Measured, run_measured
from oe_assets.bench.ours import iter_day_chunks
from oe_assets.bench.report import evaluate_targets, format_report, megabytes
from oe_assets.config import settings
from oe_assets.warehouse.postgres.url import PostgresUrl

if TYPE_CHECKING:
    from oe_assets.simulator import SimulatorServer

# format_report stays importable from here: `oe-assets bench` imports what it runs from this module
__all__ = [
    "BenchConfig",
    "format_report",
    "machine_info",
    "run_bench",
    "run_extraction",
    "run_incremental",
    "run_size",
]

SCHEMA_VERSION = 1
SIMULATOR_NOW = datetime(2025, 3, 2, tzinfo=UTC)
"""The clock of the simulators the incremental and extraction measurements read; the refreshed
day is the one before."""


@dataclass
class BenchConfig:
    contexts: int = 100_000
    scale: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    skip_dlt: bool = False
    dlt_max_contexts: int = 100_000
    out: Path = Path("bench_results/latest.json")
    work_dir: Path = Path("bench_results/work")
    keep_files: bool = False
    seed: int = 7
    days: int = 30
    incremental: bool = True
    incremental_contexts_per_day: int = 1000
    incremental_history_days: int = 30
    extraction: bool = True
    extraction_days: int = 30
    extraction_contexts_per_day: int = 1000
    repeat: int = 5
    probe: bool = True
    """also load the comparison size with the DuckDB-only probe (``oe_assets.bench.native_probe``)"""
    writer_alone: bool = True
    """also time our writer alone on the comparison size (``oe_assets.bench.writer_alone``)"""
    skip_push: bool = False
    """do not push the comparison size's warehouse into the Celonis stand-in (``oe_assets.bench.celonis_push``)"""
    skip_exports: bool = False
    """do not time the OCEL 2.0 and XES exports of the comparison size (``oe_assets.bench.exports``)"""
    copy_to: PostgresUrl | None = None
    """also copy the comparison size's warehouse into this PostgreSQL database (``oe_assets.bench.postgres_copy``)"""
    warehouse: PostgresUrl | None = None
    """also load the comparison size into a PostgreSQL warehouse in this database (``oe_assets.bench.postgres_load``)"""


Echo = Callable[[str], None]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _proc_value(path: str, key: str) -> str | None:
    """The value of ``key`` in a ``key: value`` file of ``/proc`` (its first line with that key)."""
    with open(path) as f:
        for line in f:
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    memory = None
    try:
        cpu = _proc_value("/proc/cpuinfo", "model name") or cpu
        total = _proc_value("/proc/meminfo", "MemTotal")
        memory = int(total.split()[0]) * 1024 if total else None
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }


# ------------------------------------------------------------------------- the measured processes


def _run_module(what: str, module: str, *args: str, env: dict[str, str] | None = None) -> Measured:
    """``python -m oe_assets.bench.<module> ARGS`` in its own process, measured; a RuntimeError
    naming ``what``, the command and the end of its stderr when it fails."""
    measured = run_measured([sys.executable, "-m", f"oe_assets.bench.{module}", *args], env=env)
    if not measured.ok:
        raise RuntimeError(
            f"{what} failed (exit {measured.returncode}): {' '.join(measured.command)}\n{measured.stderr_tail}"
        )
    return measured


def _loader_result(measured: Measured, contexts: int) -> dict[str, Any]:
    summary = dict(measured.summary)
    summary.pop("rows_per_table", None)
    return {
        "wall_seconds": measured.wall_seconds,
        "contexts_per_second": round(contexts / measured.wall_seconds) if measured.wall_seconds else None,
        "peak_rss_bytes": measured.peak_rss_bytes,
        "in_process": summary,
    }


def _with_peak_rss(measured: Measured) -> dict[str, Any]:
    return {**measured.summary, "peak_rss_bytes": measured.peak_rss_bytes}


# ------------------------------------------------------------------------- one size


def _empty_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _generate(config: BenchConfig, n: int, jsonl: Path, echo: Echo) -> dict[str, Any]:
    echo(f"[{n:,}] generating {n:,} contexts ...")
    gen = _run_module(
        "generating contexts",
        "generate",
        *("--out", str(jsonl), "--contexts", str(n), "--seed", str(config.seed), "--days", str(config.days)),
    )
    return {
        "contexts": n,
        "jsonl_bytes": gen.summary.get("bytes"),
        "days": config.days,
        "generate_seconds": gen.wall_seconds,
    }


def _load_ours(jsonl: Path, work: Path, n: int, echo: Echo) -> Measured:
    echo(f"[{n:,}] ours: loading {jsonl.stat().st_size / 1024**2:,.0f} MB of JSONL ...")
    ours = _run_module("our loader", "ours", "--input", str(jsonl), "--db", str(work / "ours.duckdb"))
    echo(f"[{n:,}] ours: {ours.wall_seconds:,.1f} s, peak RSS {megabytes(ours.peak_rss_bytes)}")
    return ours


def _load_dlt(jsonl: Path, work: Path, n: int, echo: Echo) -> Measured:
    echo(f"[{n:,}] dlt: loading the same file ...")
    peer = _run_module(
        "the dlt loader",
        "dlt_peer",
        *("--input", str(jsonl), "--db", str(work / "dlt.duckdb"), "--work", str(work / "dlt")),
        env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
    )
    echo(f"[{n:,}] dlt: {peer.wall_seconds:,.1f} s, peak RSS {megabytes(peer.peak_rss_bytes)}")
    return peer


def _run_probe(jsonl: Path, work: Path, n: int, ours_summary: dict[str, Any], echo: Echo) -> dict[str, Any]:
    """The DuckDB-only probe on the same file; its rows must equal ours, table by table."""
    echo(f"[{n:,}] DuckDB-only probe: loading the same file ...")
    probe = _run_module(
        "the DuckDB-only probe", "native_probe", "--input", str(jsonl), "--db", str(work / "probe.duckdb")
    )
    echo(
        f"[{n:,}] DuckDB-only probe: {probe.wall_seconds:,.1f} s, peak RSS {megabytes(probe.peak_rss_bytes)}"
    )
    ours_rows = {t: r for t, r in ours_summary.get("rows_per_table", {}).items() if r}
    probe_rows = {t: r for t, r in probe.summary.get("rows_per_table", {}).items() if r}
    return {**_loader_result(probe, n), "rows_equal_to_ours": probe_rows == ours_rows}


def _run_writer_alone(
    jsonl: Path, work: Path, n: int, ours_summary: dict[str, Any], echo: Echo
) -> dict[str, Any]:
    """Our writer with batches flattened beforehand; it must write exactly the loader's rows."""
    echo(f"[{n:,}] ours, writer alone: flattening beforehand, then timing the writes ...")
    measured = _run_module(
        "the writer-alone measurement",
        "writer_alone",
        *("--input", str(jsonl), "--db", str(work / "writer.duckdb")),
    )
    summary = dict(measured.summary)
    rows = summary.pop("rows_per_table", {})
    echo(f"[{n:,}] ours, writer alone: {summary['seconds_write']:,.1f} s of writes")
    return {
        "seconds_write": summary["seconds_write"],
        "in_process": summary,
        "rows_equal_to_ours": rows == ours_summary.get("rows_per_table"),
    }


def _run_exports(config: BenchConfig, work: Path, n: int, echo: Echo) -> dict[str, Any]:
    """OCEL 2.0 (JSON, SQLite, XML) and XES from our warehouse, completed with catalog and activity log."""
    echo(f"[{n:,}] exports: catalog and activity log into a copy of our warehouse, then OCEL 2.0 and XES ...")
    measured = _run_module(
        "the exports",
        "exports",
        *("--db", str(work / "ours.duckdb"), "--seed", str(config.seed)),
        *("--start", DEFAULT_START.date().isoformat(), "--days", str(config.days)),
    )
    exports = _with_peak_rss(measured)
    figures = ", ".join(f"{name} {e['seconds']:,.1f} s" for name, e in exports["exports"].items())
    echo(f"[{n:,}] exports of {exports['activity_log_rows']:,} events: {figures}")
    return {**exports, "wall_seconds": measured.wall_seconds}


def _run_postgres_copy(
    target: PostgresUrl, work: Path, n: int, result: dict[str, Any], echo: Echo
) -> dict[str, Any]:
    """Copy our warehouse into PostgreSQL; its cost against our flatten + load time. The password
    travels in the child's environment, never on its command line."""
    echo(f"[{n:,}] PostgreSQL copy: every table of our warehouse into {target.shown} ...")
    env = {**os.environ, "PGPASSWORD": target.password.reveal()} if target.password else None
    measured = _run_module(
        "the PostgreSQL copy",
        "postgres_copy",
        *("--db", str(work / "ours.duckdb"), "--to", target.shown),
        env=env,
    )
    copy = _with_peak_rss(measured)
    echo(
        f"[{n:,}] PostgreSQL copy: {copy['rows']:,} rows in {copy['seconds_copy']:,.1f} s, "
        f"rows equal in {copy['tables_rows_equal']}/{copy['tables']} tables"
    )
    return _against_ours(copy, copy["seconds_copy"], measured, result)


PARALLEL_RUNS = (1, 2, 4)


def _run_postgres_load(
    target: PostgresUrl, jsonl: Path, work: Path, n: int, result: dict[str, Any], ours: Measured, echo: Echo
) -> dict[str, Any]:
    """The comparison set into a PostgreSQL warehouse: one run over every day, then one run per
    day, 1, 2 and 4 at a time; each against our DuckDB load of the same file. The password
    travels in the children's environment, never on their command lines."""
    env = {**os.environ, "PGPASSWORD": target.password.reveal()} if target.password else None
    day_files = split_by_day(jsonl, _empty_dir(work / "days"))
    figures: dict[str, Any] = {"target": target.shown, "days": len(day_files)}
    runs = {"single_run": (1, [jsonl]), **{f"daily_runs_{p}_at_once": (p, day_files) for p in PARALLEL_RUNS}}
    for name, (parallel, files) in runs.items():
        echo(
            f"[{n:,}] PostgreSQL warehouse, {name.replace('_', ' ')}: {len(files)} run(s) into {target.shown} ..."
        )
        measured = _run_module(
            "the PostgreSQL load", "postgres_load",
            *("--to", target.shown, "--parallel", str(parallel), *map(str, files)), env=env,
        )  # fmt: skip
        load = _with_peak_rss(measured)
        load["rows_equal_to_ours"] = _nonzero(load.pop("rows_per_table")) == _nonzero(
            ours.summary["rows_per_table"]
        )
        figures[name] = _against_ours(load, load["seconds"], measured, result)
        echo(f"[{n:,}]   {load['seconds']:,.1f} s, {figures[name]['ratio_to_ours']}x ours on DuckDB")
    return figures


def _nonzero(rows: dict[str, int]) -> dict[str, int]:
    return {table: n for table, n in rows.items() if n}


def split_by_day(jsonl: Path, folder: Path) -> list[Path]:
    """The file's lines, one file per creation day (what one day's run reads)."""
    files = []
    for day, chunks in iter_day_chunks(jsonl):
        path = folder / f"{day.isoformat()}.jsonl"
        with path.open("wb") as out:
            for chunk in chunks:
                out.writelines(line if line.endswith(b"\n") else line + b"\n" for line in chunk)
        files.append(path)
    return files


def _against_ours(
    figures: dict[str, Any], seconds: float, measured: Measured, result: dict[str, Any]
) -> dict[str, Any]:
    """``figures`` with the whole process's time, and ``seconds`` over our flatten + load time."""
    ours_seconds = result["ours"]["wall_seconds"]
    return {
        **figures,
        "wall_seconds": measured.wall_seconds,
        "ours_wall_seconds": ours_seconds,
        "ratio_to_ours": round(seconds / ours_seconds, 3) if ours_seconds else None,
    }


def _run_push(work: Path, n: int, result: dict[str, Any], echo: Echo) -> dict[str, Any]:
    """Push our warehouse into the Celonis stand-in; its cost against our flatten + load time."""
    echo(f"[{n:,}] Celonis push: every declared table of our warehouse into the stand-in ...")
    measured = _run_module(
        "the Celonis push",
        "celonis_push",
        *("--db", str(work / "ours.duckdb"), "--pool", str(work / "celonis_pool.duckdb")),
    )
    push = _with_peak_rss(measured)
    echo(
        f"[{n:,}] Celonis push: {push['seconds_push']:,.1f} s, {push['parquet_bytes'] / 1e6:,.1f} MB of Parquet, "
        f"rows equal in {push['tables_rows_equal']}/{push['tables_pushed']} tables"
    )
    return _against_ours(push, push["seconds_push"], measured, result)


def _ceilings(
    dlt_wall: float, alone: dict[str, Any] | None, probe: dict[str, Any] | None
) -> dict[str, float]:
    """What bounds ours/dlt in the same run: dlt's wall time over our writer alone's, and over
    DuckDB alone's (the probe)."""
    ceilings = {}
    if alone and alone["seconds_write"]:
        ceilings["writer_alone_at_most"] = round(dlt_wall / alone["seconds_write"], 2)
    if probe and probe["wall_seconds"]:
        ceilings["native_probe"] = round(dlt_wall / probe["wall_seconds"], 2)
    return ceilings


def _ratios(result: dict[str, Any]) -> dict[str, float]:
    """Ours over dlt for one size, with the ceilings measured beside it."""
    ours, dlt = result["ours"], result["dlt"]
    return {
        "contexts_per_second": round(ours["contexts_per_second"] / dlt["contexts_per_second"], 2),
        "wall_seconds": round(ours["wall_seconds"] / dlt["wall_seconds"], 3),
        "peak_rss": round(ours["peak_rss_bytes"] / dlt["peak_rss_bytes"], 3),
        **_ceilings(dlt["wall_seconds"], result["writer_alone"], result["native_probe"]),
    }


EXTRAS = ("probe", "writer_alone", "exports", "postgres_copy", "postgres_warehouse", "push")
"""What the comparison size adds to the loaders: the DuckDB-only probe, our writer alone, the
process-mining exports, the copy into PostgreSQL and the Celonis push (each in its own process)."""


def run_size(
    config: BenchConfig, n: int, with_dlt: bool, echo: Echo, extras: Collection[str] = ()
) -> dict[str, Any]:
    """Generate N contexts, load them with ours (and dlt), compare the rows, then run ``extras``."""
    work = _empty_dir(config.work_dir / f"n{n}")
    jsonl = work / "contexts.jsonl"
    result = _generate(config, n, jsonl, echo)
    ours = _load_ours(jsonl, work, n, echo)
    result["ours"] = _loader_result(ours, n)
    dlt = _load_dlt(jsonl, work, n, echo) if with_dlt else None
    result["dlt"] = _loader_result(dlt, n) if dlt else None
    result["rows"] = compare(
        count_ours(work / "ours.duckdb"), count_dlt(work / "dlt.duckdb", DATASET) if dlt else None
    )
    result["native_probe"] = _run_probe(jsonl, work, n, ours.summary, echo) if "probe" in extras else None
    result["writer_alone"] = (
        _run_writer_alone(jsonl, work, n, ours.summary, echo) if "writer_alone" in extras else None
    )
    if dlt:
        result["ratios"] = _ratios(result)
    result["exports"] = _run_exports(config, work, n, echo) if "exports" in extras else None
    result["postgres_copy"] = (
        _run_postgres_copy(config.copy_to, work, n, result, echo)
        if "postgres_copy" in extras and config.copy_to
        else None
    )
    result["postgres_warehouse"] = (
        _run_postgres_load(config.warehouse, jsonl, work, n, result, ours, echo)
        if "postgres_warehouse" in extras and config.warehouse
        else None
    )
    # last: the push adds the ledger's tables to our warehouse
    result["celonis_push"] = _run_push(work, n, result, echo) if "push" in extras else None
    if not config.keep_files:
        shutil.rmtree(work, ignore_errors=True)
    return result


# ------------------------------------------------------------------------- against a simulator


def _api_env(server: SimulatorServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OE_")}
    env.update(
        {
            settings.API_URL: server.url,
            settings.AUTH_URL: server.url,
            settings.CLIENT_ID: server.client_id,
            settings.CLIENT_SECRET: server.client_secret,
        }
    )
    return env


def _against_simulator(
    config: BenchConfig, days: int, contexts_per_day: int, what: str, module: str, *args: str
) -> Measured:
    """``module`` (with ``--repeat``) against a simulator this process serves for the time it runs:
    ``days`` of history up to :data:`SIMULATOR_NOW`, ``contexts_per_day`` contexts a day."""
    from oe_assets.simulator import SimulatorServer

    with SimulatorServer(
        seed=config.seed, days=days, contexts_per_day=contexts_per_day, now=SIMULATOR_NOW
    ) as server:
        return _run_module(what, module, *args, "--repeat", str(config.repeat), env=_api_env(server))


def _refresh_with_history(config: BenchConfig, day: date, history: int, echo: Echo) -> dict[str, Any]:
    echo(f"[incremental] {history}-day history, {config.incremental_contexts_per_day:,} contexts/day ...")
    db = config.work_dir / f"incremental-{history}.duckdb"
    db.unlink(missing_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        measured = _against_simulator(
            config,
            history,
            config.incremental_contexts_per_day,
            "the incremental benchmark",
            "incremental",
            *("--day", day.isoformat(), "--history-days", str(history), "--db", str(db)),
        )
    finally:
        if not config.keep_files:
            db.unlink(missing_ok=True)
    return _with_peak_rss(measured)


def run_incremental(config: BenchConfig, echo: Echo) -> dict[str, Any]:
    """Refresh the same day against a 1-day and a 30-day (``incremental_history_days``) history."""
    day = (SIMULATOR_NOW - timedelta(days=1)).date()
    long = config.incremental_history_days
    runs = {history: _refresh_with_history(config, day, history, echo) for history in (1, long)}
    # the fastest repeat is the least disturbed by other work on the machine
    one, other = runs[1]["refresh_seconds_best"], runs[long]["refresh_seconds_best"]
    return {
        "day": day.isoformat(),
        "contexts_per_day": config.incremental_contexts_per_day,
        "history_1_day": runs[1],
        "history_long": runs[long],
        "ratio": round(other / one, 3) if one else None,
    }


def run_extraction(config: BenchConfig, echo: Echo) -> dict[str, Any]:
    """Our client vs a bare httpx loop, reading the same pages from one simulator."""
    echo(
        f"[extraction] {config.extraction_days} days x {config.extraction_contexts_per_day:,} contexts/day "
        "over HTTP ..."
    )
    since = (SIMULATOR_NOW - timedelta(days=config.extraction_days)).date()
    measured = _against_simulator(
        config,
        config.extraction_days,
        config.extraction_contexts_per_day,
        "the extraction benchmark",
        "extraction",
        *("--since", since.isoformat(), "--until", SIMULATOR_NOW.date().isoformat()),
    )
    return _with_peak_rss(measured)


# ------------------------------------------------------------------------- the whole run


def _report_head(config: BenchConfig, have_dlt: bool) -> dict[str, Any]:
    """When, where, with what and how the run was made."""
    return {
        "schema_version": SCHEMA_VERSION,
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": machine_info(),
        "versions": {
            "python": platform.python_version(),
            "oe_assets": _version("oe_assets"),
            "duckdb": _version("duckdb"),
            "pyarrow": _version("pyarrow"),
            "orjson": _version("orjson"),
            "dlt": _version("dlt") if have_dlt else None,
        },
        "config": {
            "contexts": config.contexts,
            "scale": config.scale,
            "dlt_max_contexts": config.dlt_max_contexts,
            "skip_dlt": config.skip_dlt,
            "skip_push": config.skip_push,
            "copy_to": config.copy_to.shown if config.copy_to else None,
            "warehouse": config.warehouse.shown if config.warehouse else None,
            "seed": config.seed,
            "days": config.days,
            "repeat": config.repeat,
        },
    }


def _extras(config: BenchConfig) -> list[str]:
    wanted = {
        "probe": config.probe,
        "writer_alone": config.writer_alone,
        "exports": not config.skip_exports,
        "postgres_copy": config.copy_to is not None,
        "postgres_warehouse": config.warehouse is not None,
        "push": not config.skip_push,
    }
    return [extra for extra in EXTRAS if wanted[extra]]


def _run_sizes(config: BenchConfig, have_dlt: bool, echo: Echo) -> list[dict[str, Any]]:
    """Every size, smallest first; dlt, the probe and the writer alone where the config says."""
    results = []
    for n in sorted({config.contexts, *config.scale}):
        comparison = n == config.contexts
        results.append(
            run_size(
                config,
                n,
                have_dlt and not config.skip_dlt and n <= config.dlt_max_contexts,
                echo,
                _extras(config) if comparison else (),
            )
        )
    return results


def run_bench(config: BenchConfig, echo: Echo = print) -> dict[str, Any]:
    have_dlt = dlt_available()
    notes: list[str] = []
    if not config.skip_dlt and not have_dlt:
        notes.append(f"dlt is not installed, so only ours ran. Install the benchmark extra: {INSTALL_HINT}")
        echo(notes[-1])
    report = _report_head(config, have_dlt)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    results = _run_sizes(config, have_dlt, echo)
    report["comparison"] = next(r for r in results if r["contexts"] == config.contexts)
    report["scale"] = results
    if config.incremental:
        report["incremental"] = run_incremental(config, echo)
    if config.extraction:
        report["extraction"] = run_extraction(config, echo)
    report["targets"] = evaluate_targets(report)
    report["notes"] = notes
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(report, indent=2) + "\n")
    if not config.keep_files and config.work_dir.exists() and not any(config.work_dir.iterdir()):
        config.work_dir.rmdir()
    return report
