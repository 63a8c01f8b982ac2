"""`oe-assets bench`: generate, load with ours and with dlt (each in its own process), compare, print.

For each size N (``--contexts`` and every ``--scale`` size):

1. ``oe_assets.bench.generate`` writes N contexts as JSONL,
2. ``oe_assets.bench.ours`` loads the file into a fresh DuckDB with the assets' write path,
3. ``oe_assets.bench.dlt_peer`` loads the same file with dlt (parquet loader), for N up to
   ``--dlt-max-contexts`` and unless ``--skip-dlt``,
4. the rows of every table of both warehouses are counted and matched by JSON path.

Then the incremental and extraction measurements run against simulators served by this process.
Everything is printed as one plain-text report and written as JSON (``--out``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from oe_assets.bench.counts import compare, count_dlt, count_ours
from oe_assets.bench.dlt_peer import DATASET, INSTALL_HINT, dlt_available
from oe_assets.bench.measure import Measured, run_measured
from oe_assets.config import settings

SCHEMA_VERSION = 1
THROUGHPUT_TARGET = 10.0  # ours/dlt contexts/s at the comparison size
RSS_LIMIT_1M = 2 * 1024**3  # peak RSS of ours at 1M contexts
INCREMENTAL_TARGET = 1.5  # refresh of one day: long (30-day) history / 1-day history
EXTRACTION_TARGET = 1.25  # our client's time / a bare httpx loop's time
INCREMENTAL_NOW = datetime(2025, 3, 2, tzinfo=UTC)  # the refreshed day is the one before


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


Echo = Callable[[str], None]


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**2:,.0f} MB"


def _num(n: float | int | None, digits: int = 0) -> str:
    if n is None:
        return "-"
    return f"{n:,.{digits}f}"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    memory = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
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


def _fail(what: str, measured: Measured) -> RuntimeError:
    return RuntimeError(
        f"{what} failed (exit {measured.returncode}): {' '.join(measured.command)}\n{measured.stderr_tail}"
    )


def _loader_result(measured: Measured, contexts: int) -> dict[str, Any]:
    summary = dict(measured.summary)
    summary.pop("rows_per_table", None)
    return {
        "wall_seconds": measured.wall_seconds,
        "contexts_per_second": round(contexts / measured.wall_seconds) if measured.wall_seconds else None,
        "peak_rss_bytes": measured.peak_rss_bytes,
        "in_process": summary,
    }


def run_size(
    config: BenchConfig,
    n: int,
    with_dlt: bool,
    echo: Echo,
    with_probe: bool = False,
    with_writer_alone: bool = False,
) -> dict[str, Any]:
    """Generate N contexts, load them with ours (and dlt, the probe, our writer alone), compare the rows."""
    work = config.work_dir / f"n{n}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    jsonl = work / "contexts.jsonl"
    echo(f"[{n:,}] generating {n:,} contexts ...")
    gen = run_measured(
        _python_module(
            "oe_assets.bench.generate",
            *(
                "--out",
                str(jsonl),
                "--contexts",
                str(n),
                "--seed",
                str(config.seed),
                "--days",
                str(config.days),
            ),
        )
    )
    if not gen.ok:
        raise _fail("generating contexts", gen)
    result: dict[str, Any] = {"contexts": n, "jsonl_bytes": gen.summary.get("bytes"), "days": config.days}
    result["generate_seconds"] = gen.wall_seconds

    echo(f"[{n:,}] ours: loading {jsonl.stat().st_size / 1024**2:,.0f} MB of JSONL ...")
    ours_db = work / "ours.duckdb"
    ours = run_measured(_python_module("oe_assets.bench.ours", "--input", str(jsonl), "--db", str(ours_db)))
    if not ours.ok:
        raise _fail("our loader", ours)
    result["ours"] = _loader_result(ours, n)
    echo(f"[{n:,}] ours: {ours.wall_seconds:,.1f} s, peak RSS {_mb(ours.peak_rss_bytes)}")
    ours_counts = count_ours(ours_db)

    dlt_counts = None
    result["dlt"] = None
    if with_dlt:
        echo(f"[{n:,}] dlt: loading the same file ...")
        dlt_db = work / "dlt.duckdb"
        peer = run_measured(
            _python_module(
                "oe_assets.bench.dlt_peer",
                "--input",
                str(jsonl),
                "--db",
                str(dlt_db),
                "--work",
                str(work / "dlt"),
            ),
            env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
        )
        if not peer.ok:
            raise _fail("the dlt loader", peer)
        result["dlt"] = _loader_result(peer, n)
        echo(f"[{n:,}] dlt: {peer.wall_seconds:,.1f} s, peak RSS {_mb(peer.peak_rss_bytes)}")
        dlt_counts = count_dlt(dlt_db, DATASET)
    result["rows"] = compare(ours_counts, dlt_counts)
    result["native_probe"] = _run_probe(jsonl, work, n, ours.summary, echo) if with_probe else None
    result["writer_alone"] = (
        _run_writer_alone(jsonl, work, n, ours.summary, echo) if with_writer_alone else None
    )
    if result["dlt"] is not None:
        o, d = result["ours"], result["dlt"]
        result["ratios"] = {
            "contexts_per_second": round(o["contexts_per_second"] / d["contexts_per_second"], 2),
            "wall_seconds": round(o["wall_seconds"] / d["wall_seconds"], 3),
            "peak_rss": round(o["peak_rss_bytes"] / d["peak_rss_bytes"], 3),
            **_ceilings(d["wall_seconds"], result["writer_alone"], result["native_probe"]),
        }
    if not config.keep_files:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _serve(days: int, contexts_per_day: int, seed: int, now: datetime) -> Any:
    from oe_assets.simulator import SimulatorServer

    return SimulatorServer(seed=seed, days=days, contexts_per_day=contexts_per_day, now=now).start()


def _api_env(server: Any) -> dict[str, str]:
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


def run_incremental(config: BenchConfig, echo: Echo) -> dict[str, Any]:
    """Refresh the same day against a 1-day and a 30-day (``incremental_history_days``) history."""
    day = (INCREMENTAL_NOW - timedelta(days=1)).date()
    runs = {}
    long = config.incremental_history_days
    for history in (1, long):
        echo(f"[incremental] {history}-day history, {config.incremental_contexts_per_day:,} contexts/day ...")
        server = _serve(history, config.incremental_contexts_per_day, config.seed, INCREMENTAL_NOW)
        db = config.work_dir / f"incremental-{history}.duckdb"
        db.unlink(missing_ok=True)
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            measured = run_measured(
                _python_module(
                    "oe_assets.bench.incremental",
                    *("--day", day.isoformat(), "--history-days", str(history), "--db", str(db)),
                    *("--repeat", str(config.repeat)),
                ),
                env=_api_env(server),
            )
        finally:
            server.stop()
            if not config.keep_files:
                db.unlink(missing_ok=True)
        if not measured.ok:
            raise _fail("the incremental benchmark", measured)
        runs[history] = {**measured.summary, "peak_rss_bytes": measured.peak_rss_bytes}
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
    now = INCREMENTAL_NOW
    echo(
        f"[extraction] {config.extraction_days} days x {config.extraction_contexts_per_day:,} contexts/day "
        "over HTTP ..."
    )
    server = _serve(config.extraction_days, config.extraction_contexts_per_day, config.seed, now)
    try:
        since = (now - timedelta(days=config.extraction_days)).date()
        measured = run_measured(
            _python_module(
                "oe_assets.bench.extraction",
                *("--since", since.isoformat(), "--until", now.date().isoformat()),
                *("--repeat", str(config.repeat)),
            ),
            env=_api_env(server),
        )
    finally:
        server.stop()
    if not measured.ok:
        raise _fail("the extraction benchmark", measured)
    return {**measured.summary, "peak_rss_bytes": measured.peak_rss_bytes}


def _run_on_file(module: str, jsonl: Path, db: Path, what: str) -> Measured:
    """``python -m oe_assets.bench.<module> --input JSONL --db DB`` in its own process, measured."""
    measured = run_measured(
        _python_module(f"oe_assets.bench.{module}", "--input", str(jsonl), "--db", str(db))
    )
    if not measured.ok:
        raise _fail(what, measured)
    return measured


def _run_probe(jsonl: Path, work: Path, n: int, ours_summary: dict[str, Any], echo: Echo) -> dict[str, Any]:
    """The DuckDB-only probe on the same file; its rows must equal ours, table by table."""
    echo(f"[{n:,}] DuckDB-only probe: the same file ...")
    probe = _run_on_file("native_probe", jsonl, work / "probe.duckdb", "the DuckDB-only probe")
    echo(f"[{n:,}] DuckDB-only probe: {probe.wall_seconds:,.1f} s, peak RSS {_mb(probe.peak_rss_bytes)}")
    ours_rows = {t: r for t, r in ours_summary.get("rows_per_table", {}).items() if r}
    probe_rows = {t: r for t, r in probe.summary.get("rows_per_table", {}).items() if r}
    return {**_loader_result(probe, n), "rows_equal_to_ours": probe_rows == ours_rows}


def _run_writer_alone(
    jsonl: Path, work: Path, n: int, ours_summary: dict[str, Any], echo: Echo
) -> dict[str, Any]:
    """Our writer with batches flattened beforehand; it must write exactly the loader's rows."""
    echo(f"[{n:,}] ours, writer alone: flattening beforehand, then timing the writes ...")
    measured = _run_on_file("writer_alone", jsonl, work / "writer.duckdb", "the writer-alone measurement")
    summary = dict(measured.summary)
    rows = summary.pop("rows_per_table", {})
    echo(f"[{n:,}] ours, writer alone: {summary['seconds_write']:,.1f} s of writes")
    return {
        "seconds_write": summary["seconds_write"],
        "in_process": summary,
        "rows_equal_to_ours": rows == ours_summary.get("rows_per_table"),
    }


def _target(name: str, goal: str, value: str, met: bool | None, note: str = "") -> dict[str, Any]:
    return {"target": name, "goal": goal, "value": value, "met": met, "note": note}


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


def _ceilings_note(ratios: dict[str, Any]) -> str:
    parts = []
    if "writer_alone_at_most" in ratios:
        parts.append(f"our writer alone allows at most {ratios['writer_alone_at_most']:.2f}x")
    if "native_probe" in ratios:
        parts.append(f"the DuckDB-only probe reaches {ratios['native_probe']:.2f}x")
    return "; ".join(parts)


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    main = report.get("comparison")
    if main and main.get("dlt"):
        ratio = main["ratios"]["contexts_per_second"]
        targets.append(
            _target(
                f"flatten + load throughput at {main['contexts']:,} contexts",
                f">= {THROUGHPUT_TARGET:g}x dlt",
                f"{ratio:g}x ({main['ours']['contexts_per_second']:,} vs {main['dlt']['contexts_per_second']:,} contexts/s)",
                ratio >= THROUGHPUT_TARGET,
                _ceilings_note(main["ratios"]),
            )
        )
        o, d = main["ours"]["peak_rss_bytes"], main["dlt"]["peak_rss_bytes"]
        targets.append(
            _target(
                f"peak RSS at {main['contexts']:,} contexts",
                "<= dlt (parquet)",
                f"{_mb(o)} vs {_mb(d)} ({o / d:.2f}x)",
                o <= d,
            )
        )
        rows = main["rows"]
        targets.append(
            _target(
                "row counts per table equal to dlt's",
                "all tables",
                f"{rows['tables_equal']}/{rows['tables_compared']} tables, "
                f"{rows['ours_total_rows']:,} vs {rows['dlt_total_rows']:,} rows",
                bool(rows["all_equal"]),
            )
        )
    big = next((s for s in report.get("scale", []) if s["contexts"] >= 1_000_000), None)
    if big is not None:
        rss = big["ours"]["peak_rss_bytes"]
        targets.append(
            _target(
                f"{big['contexts']:,} contexts complete, peak RSS",
                "< 2 GB",
                f"{_mb(rss)} in {big['ours']['wall_seconds']:,.1f} s",
                rss < RSS_LIMIT_1M,
            )
        )
    inc = report.get("incremental")
    if inc:
        targets.append(
            _target(
                f"refresh one day: {inc['history_long']['history_days']}-day / 1-day history",
                f"<= {INCREMENTAL_TARGET:g}",
                f"{inc['ratio']:g} ({inc['history_long']['refresh_seconds_best']:.2f} s vs "
                f"{inc['history_1_day']['refresh_seconds_best']:.2f} s)",
                inc["ratio"] is not None and inc["ratio"] <= INCREMENTAL_TARGET,
            )
        )
    ext = report.get("extraction")
    if ext:
        targets.append(
            _target(
                "client overhead vs a bare httpx loop",
                f"<= {EXTRACTION_TARGET:g}x",
                f"{ext['overhead_ratio']:g}x ({ext['ours_contexts_per_second']:,} vs "
                f"{ext['bare_contexts_per_second']:,} contexts/s, concurrency {ext['concurrency']})",
                ext["overhead_ratio"] <= EXTRACTION_TARGET,
            )
        )
    return targets


def format_report(report: dict[str, Any]) -> str:
    lines: list[str] = []
    m = report["machine"]
    lines.append(
        f"oe-assets bench  {report['date']}  {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{_mb(m['memory_bytes'])} RAM, load avg at start {m['load_average_at_start']}"
    )
    v = report["versions"]
    lines.append(
        f"python {v['python']}, duckdb {v['duckdb']}, pyarrow {v['pyarrow']}, dlt {v['dlt'] or 'not installed'}"
    )
    main = report.get("comparison")
    if main:
        lines.append("")
        dlt = main.get("dlt")
        lines.append(
            f"{main['contexts']:,} process contexts ({(main['jsonl_bytes'] or 0) / 1024**2:,.0f} MB JSONL, "
            f"{main['days']} daily partitions), each loader in its own process"
        )
        w = 48
        lines.append(f"{'':<{w}} {'ours':>14} {'dlt (parquet)':>14} {'ours/dlt':>10}")
        lines.append("-" * (w + 41))
        o = main["ours"]

        def row(label: str, a: Any, b: Any, ratio: str = "") -> None:
            lines.append(f"{label:<{w}} {a:>14} {b:>14} {ratio:>10}")

        ratios = main.get("ratios") or {}
        row(
            "wall seconds (whole process)",
            _num(o["wall_seconds"], 1),
            _num(dlt["wall_seconds"], 1) if dlt else "-",
            f"{ratios['wall_seconds']:.2f}" if dlt else "",
        )
        row(
            "contexts/s",
            _num(o["contexts_per_second"]),
            _num(dlt["contexts_per_second"]) if dlt else "-",
            f"{ratios['contexts_per_second']:.2f}x" if dlt else "",
        )
        row(
            "peak RSS",
            _mb(o["peak_rss_bytes"]),
            _mb(dlt["peak_rss_bytes"]) if dlt else "-",
            f"{ratios['peak_rss']:.2f}" if dlt else "",
        )
        ip = o["in_process"]
        row(
            f"  ours: parse/flatten/write s (in a {ip.get('flatten_in', 'thread')})",
            f"{ip['seconds_parse']:.1f}/{ip['seconds_flatten']:.1f}/{ip['seconds_write']:.1f}",
            "",
        )
        if dlt:
            dp = dlt["in_process"]
            row(
                "  dlt: extract / normalize / load seconds",
                "",
                f"{dp['seconds_extract']:.1f}/{dp['seconds_normalize']:.1f}/{dp['seconds_load']:.1f}",
            )
        rows = main["rows"]
        lines.append("rows per table family (a first-level array and the arrays in it; [tables]):")
        for fam in rows["families"]:
            label = fam["label"] if fam["family"] != "(root)" else "execution_context (root)"
            tables = f" [{fam['tables_ours']}]" if fam["tables_ours"] > 1 else ""
            if len(label) + len(tables) > w - 2:
                label = label[: w - 3 - len(tables)] + "~"
            same = "" if fam["equal"] is None else ("equal" if fam["equal"] else "DIFFERENT")
            row(f"  {label}{tables}", _num(fam["ours_rows"]), _num(fam["dlt_rows"]), same)
        same = "" if rows["all_equal"] is None else f"{rows['tables_equal']}/{rows['tables_compared']} eq"
        row("  all tables", _num(rows["ours_total_rows"]), _num(rows["dlt_total_rows"]), same)
        probe = main.get("native_probe")
        if probe:
            vs_dlt = (
                f", {probe['contexts_per_second'] / dlt['contexts_per_second']:.2f}x dlt"
                if dlt and probe["contexts_per_second"]
                else ""
            )
            lines.append(
                f"DuckDB-only probe: {probe['wall_seconds']:,.1f} s, {_num(probe['contexts_per_second'])} "
                f"contexts/s{vs_dlt}, rows {'equal to' if probe['rows_equal_to_ours'] else 'DIFFERENT from'} ours"
            )
            lines.append(
                "  (read_json + unnest, without our registry, type rules, quarantine or partitions: a ceiling "
                "for moving flattening into DuckDB, not a loader)"
            )
        alone = main.get("writer_alone")
        if alone:
            ceiling = (
                f"; dlt's wall time / this = {ratios['writer_alone_at_most']:.2f}x"
                if "writer_alone_at_most" in ratios
                else ""
            )
            lines.append(
                f"ours, writer alone: {alone['seconds_write']:,.1f} s to write the batches flattened beforehand "
                f"({alone['in_process']['seconds_close']:.1f} s of it the closing checkpoint){ceiling}, rows "
                f"{'equal to' if alone['rows_equal_to_ours'] else 'DIFFERENT from'} the loader's"
            )
            lines.append(
                "  (one transaction per day, as the loader writes: no flattener, however fast, takes ours below this)"
            )
    scale = report.get("scale") or []
    if scale:
        lines.append("")
        lines.append("scale (each size generated, then loaded into a fresh warehouse):")
        lines.append(
            f"{'contexts':>12} {'ours s':>9} {'ours ctx/s':>11} {'ours RSS':>10} "
            f"{'dlt s':>9} {'dlt ctx/s':>10} {'dlt RSS':>10} {'ours/dlt':>9}"
        )
        for s in scale:
            o, d = s["ours"], s.get("dlt")
            lines.append(
                f"{s['contexts']:>12,} {o['wall_seconds']:>9,.1f} {o['contexts_per_second']:>11,} "
                f"{_mb(o['peak_rss_bytes']):>10} "
                + (
                    f"{d['wall_seconds']:>9,.1f} {d['contexts_per_second']:>10,} {_mb(d['peak_rss_bytes']):>10} "
                    f"{s['ratios']['contexts_per_second']:>8.2f}x"
                    if d
                    else f"{'-':>9} {'-':>10} {'-':>10} {'-':>9}"
                )
            )
    inc = report.get("incremental")
    if inc:
        lines.append("")
        a, b = inc["history_1_day"], inc["history_long"]
        lines.append(
            f"incremental: refresh {inc['day']} (land + flatten, {a['day_contexts']:,} contexts), best of "
            f"{a['repeat']}: {a['refresh_seconds_best']:.2f} s with 1 day of history, "
            f"{b['refresh_seconds_best']:.2f} s with {b['history_days']} days ({b['history_contexts']:,} contexts); "
            f"ratio {inc['ratio']:.2f}"
        )
    ext = report.get("extraction")
    if ext:
        lines.append(
            f"extraction: {ext['contexts']:,} contexts in {ext['pages']} pages of <= {ext['page_size']}, "
            f"concurrency {ext['concurrency']}: ours {ext['ours_contexts_per_second']:,}/s, bare httpx "
            f"{ext['bare_contexts_per_second']:,}/s; ratio {ext['overhead_ratio']:.2f} (best of {ext['repeat']})"
        )
    targets = report.get("targets") or []
    if targets:
        lines.append("")
        lines.append("targets:")
        for t in targets:
            mark = "met " if t["met"] else "MISS"
            lines.append(f"  [{mark}] {t['target']}: {t['value']} (goal {t['goal']})")
            if t.get("note"):
                lines.append(f"         {t['note']}")
    if report.get("notes"):
        lines.append("")
        lines.extend(report["notes"])
    return "\n".join(line.rstrip() for line in lines)


def run_bench(config: BenchConfig, echo: Echo = print) -> dict[str, Any]:
    have_dlt = dlt_available()
    notes: list[str] = []
    if not config.skip_dlt and not have_dlt:
        notes.append(f"dlt is not installed, so only ours ran. Install the benchmark extra: {INSTALL_HINT}")
        echo(notes[-1])
    sizes = sorted({config.contexts, *config.scale})
    report: dict[str, Any] = {
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
            "seed": config.seed,
            "days": config.days,
            "repeat": config.repeat,
        },
    }
    config.work_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        with_dlt = have_dlt and not config.skip_dlt and n <= config.dlt_max_contexts
        comparison = n == config.contexts
        results.append(
            run_size(
                config,
                n,
                with_dlt,
                echo,
                with_probe=config.probe and comparison,
                with_writer_alone=config.writer_alone and comparison,
            )
        )
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
