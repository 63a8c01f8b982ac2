"""The benchmark's verdict and its plain-text report.

:func:`evaluate_targets` judges a report (as :func:`oe_assets.bench.runner.run_bench` builds it)
against the goals below, one table row per goal; :func:`format_report` prints the report, one
section after another. Both read the report only, so a saved ``latest.json`` prints again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

THROUGHPUT_TARGET = 10.0  # ours/dlt contexts/s at the comparison size
RSS_LIMIT_1M = 2 * 1024**3  # peak RSS of ours at 1M contexts
INCREMENTAL_TARGET = 1.5  # refresh of one day: long (30-day) history / 1-day history
EXTRACTION_TARGET = 1.25  # our client's time / a bare httpx loop's time
PUSH_TARGET = 0.5  # Celonis push of the comparison size's warehouse / our flatten + load (wall) time

Report = dict[str, Any]


def megabytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**2:,.0f} MB"


def _num(n: float | int | None, digits: int = 0) -> str:
    if n is None:
        return "-"
    return f"{n:,.{digits}f}"


# ---------------------------------------------------------------------------------------- targets


def _target(name: str, goal: str, value: str, met: bool | None, note: str = "") -> dict[str, Any]:
    return {"target": name, "goal": goal, "value": value, "met": met, "note": note}


def _ceilings_note(ratios: dict[str, Any]) -> str:
    parts = []
    if "writer_alone_at_most" in ratios:
        parts.append(f"our writer alone allows at most {ratios['writer_alone_at_most']:.2f}x")
    if "native_probe" in ratios:
        parts.append(f"the DuckDB-only probe reaches {ratios['native_probe']:.2f}x")
    return "; ".join(parts)


def _throughput(main: Report) -> dict[str, Any]:
    ratio = main["ratios"]["contexts_per_second"]
    ours, dlt = main["ours"]["contexts_per_second"], main["dlt"]["contexts_per_second"]
    return _target(
        f"flatten + load throughput at {main['contexts']:,} contexts",
        f">= {THROUGHPUT_TARGET:g}x dlt",
        f"{ratio:g}x ({ours:,} vs {dlt:,} contexts/s)",
        ratio >= THROUGHPUT_TARGET,
        _ceilings_note(main["ratios"]),
    )


def _peak_rss(main: Report) -> dict[str, Any]:
    ours, dlt = main["ours"]["peak_rss_bytes"], main["dlt"]["peak_rss_bytes"]
    return _target(
        f"peak RSS at {main['contexts']:,} contexts",
        "<= dlt (parquet)",
        f"{megabytes(ours)} vs {megabytes(dlt)} ({ours / dlt:.2f}x)",
        ours <= dlt,
    )


def _rows_equal(main: Report) -> dict[str, Any]:
    rows = main["rows"]
    return _target(
        "row counts per table equal to dlt's",
        "all tables",
        f"{rows['tables_equal']}/{rows['tables_compared']} tables, "
        f"{rows['ours_total_rows']:,} vs {rows['dlt_total_rows']:,} rows",
        bool(rows["all_equal"]),
    )


def _million(big: Report) -> dict[str, Any]:
    rss = big["ours"]["peak_rss_bytes"]
    return _target(
        f"{big['contexts']:,} contexts complete, peak RSS",
        "< 2 GB",
        f"{megabytes(rss)} in {big['ours']['wall_seconds']:,.1f} s",
        rss < RSS_LIMIT_1M,
    )


def _refresh(inc: Report) -> dict[str, Any]:
    one, long = inc["history_1_day"], inc["history_long"]
    return _target(
        f"refresh one day: {long['history_days']}-day / 1-day history",
        f"<= {INCREMENTAL_TARGET:g}",
        f"{inc['ratio']:g} ({long['refresh_seconds_best']:.2f} s vs {one['refresh_seconds_best']:.2f} s)",
        inc["ratio"] is not None and inc["ratio"] <= INCREMENTAL_TARGET,
    )


def _client_overhead(ext: Report) -> dict[str, Any]:
    return _target(
        "client overhead vs a bare httpx loop",
        f"<= {EXTRACTION_TARGET:g}x",
        f"{ext['overhead_ratio']:g}x ({ext['ours_contexts_per_second']:,} vs "
        f"{ext['bare_contexts_per_second']:,} contexts/s, concurrency {ext['concurrency']})",
        ext["overhead_ratio"] <= EXTRACTION_TARGET,
    )


def _push_cost(main: Report) -> dict[str, Any]:
    push = main["celonis_push"]
    ratio = push["ratio_to_ours"]
    return _target(
        f"Celonis push of the {main['contexts']:,} contexts' warehouse / our flatten + load",
        f"<= {PUSH_TARGET:g}",
        f"{_num(ratio, 2)} ({push['seconds_push']:,.1f} s vs {push['ours_wall_seconds']:,.1f} s)",
        ratio is not None and ratio <= PUSH_TARGET,
    )


def _push_rows(main: Report) -> dict[str, Any]:
    push = main["celonis_push"]
    return _target(
        "row counts of the stand-in's pool equal to the warehouse's",
        "all pushed tables",
        f"{push['tables_rows_equal']}/{push['tables_pushed']} tables, {push['rows_pushed']:,} rows pushed",
        push["tables_rows_equal"] == push["tables_pushed"] and not push["tables_rows_different"],
    )


def _compared_with_dlt(report: Report) -> Report | None:
    main = report.get("comparison")
    return main if main and main.get("dlt") else None


def _pushed(report: Report) -> Report | None:
    main = report.get("comparison")
    return main if main and main.get("celonis_push") else None


def _million_run(report: Report) -> Report | None:
    return next((s for s in report.get("scale", []) if s["contexts"] >= 1_000_000), None)


_TARGETS: tuple[tuple[Callable[[Report], Report | None], Callable[[Report], dict[str, Any]]], ...] = (
    (_compared_with_dlt, _throughput),
    (_compared_with_dlt, _peak_rss),
    (_compared_with_dlt, _rows_equal),
    (_pushed, _push_cost),
    (_pushed, _push_rows),
    (_million_run, _million),
    (lambda report: report.get("incremental"), _refresh),
    (lambda report: report.get("extraction"), _client_overhead),
)
"""(the part of the report a goal reads, the goal's verdict on it), in the order they print; a
goal whose part did not run (no dlt, no 1M size, a skipped measurement) is left out."""


def evaluate_targets(report: Report) -> list[dict[str, Any]]:
    return [judge(part) for select, judge in _TARGETS if (part := select(report))]


# ---------------------------------------------------------------------------------------- the text

_LABEL_WIDTH = 48


def _row(label: str, ours: str, dlt: str, ratio: str = "") -> str:
    """One row of the comparison table: a label, then the ours, dlt and ours/dlt columns."""
    return f"{label:<{_LABEL_WIDTH}} {ours:>14} {dlt:>14} {ratio:>10}"


def _header(report: Report) -> list[str]:
    m, v = report["machine"], report["versions"]
    return [
        f"oe-assets bench  {report['date']}  {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{megabytes(m['memory_bytes'])} RAM, load average at start {m['load_average_at_start']}",
        f"python {v['python']}, duckdb {v['duckdb']}, pyarrow {v['pyarrow']}, dlt {v['dlt'] or 'not installed'}",
    ]


_LOADER_ROWS: tuple[tuple[str, str, Callable[[Any], str], str, str], ...] = (
    ("wall seconds (whole process)", "wall_seconds", lambda v: _num(v, 1), "wall_seconds", "{:.2f}"),
    ("contexts/s", "contexts_per_second", _num, "contexts_per_second", "{:.2f}x"),
    ("peak memory (RSS, process tree)", "peak_rss_bytes", megabytes, "peak_rss", "{:.2f}"),
)
"""(label, loader field, its format, ratio field, the ratio's format) per row of the table."""


def _loader_rows(main: Report) -> list[str]:
    ours, dlt, ratios = main["ours"], main.get("dlt"), main.get("ratios") or {}
    lines = [
        _row(
            label, show(ours[key]), show(dlt[key]) if dlt else "-", shape.format(ratios[ratio]) if dlt else ""
        )
        for label, key, show, ratio, shape in _LOADER_ROWS
    ]
    steps = ours["in_process"]
    lines.append(
        _row(
            f"  ours: parse/flatten/write s (in a {steps.get('flatten_in', 'thread')})",
            f"{steps['seconds_parse']:.1f}/{steps['seconds_flatten']:.1f}/{steps['seconds_write']:.1f}",
            "",
        )
    )
    if dlt:
        steps = dlt["in_process"]
        lines.append(
            _row(
                "  dlt: extract / normalize / load seconds",
                "",
                f"{steps['seconds_extract']:.1f}/{steps['seconds_normalize']:.1f}/{steps['seconds_load']:.1f}",
            )
        )
    return lines


def _family_rows(rows: Report) -> list[str]:
    lines = ["rows per table family (an array of the context with the arrays inside it; [n] tables):"]
    for fam in rows["families"]:
        label = fam["label"] if fam["family"] != "(root)" else "execution_context (root)"
        tables = f" [{fam['tables_ours']}]" if fam["tables_ours"] > 1 else ""
        if len(label) + len(tables) > _LABEL_WIDTH - 2:
            label = label[: _LABEL_WIDTH - 3 - len(tables)] + "~"
        same = "" if fam["equal"] is None else ("equal" if fam["equal"] else "DIFFERENT")
        lines.append(_row(f"  {label}{tables}", _num(fam["ours_rows"]), _num(fam["dlt_rows"]), same))
    same = "" if rows["all_equal"] is None else f"{rows['tables_equal']}/{rows['tables_compared']} eq"
    lines.append(_row("  all tables", _num(rows["ours_total_rows"]), _num(rows["dlt_total_rows"]), same))
    return lines


def _equal(flag: bool, other: str) -> str:
    return f"{'equal to' if flag else 'DIFFERENT from'} {other}"


def _probe(main: Report) -> list[str]:
    probe, dlt = main.get("native_probe"), main.get("dlt")
    if not probe:
        return []
    vs_dlt = (
        f", {probe['contexts_per_second'] / dlt['contexts_per_second']:.2f}x dlt"
        if dlt and probe["contexts_per_second"]
        else ""
    )
    return [
        f"DuckDB-only probe: {probe['wall_seconds']:,.1f} s, {_num(probe['contexts_per_second'])} "
        f"contexts/s{vs_dlt}, rows {_equal(probe['rows_equal_to_ours'], 'ours')}",
        "  (DuckDB's read_json + unnest alone, without our table naming, type rules, quarantine or daily "
        "partitions: the most that moving flattening into DuckDB could give; not a loader)",
    ]


def _writer_alone(main: Report) -> list[str]:
    alone, ratios = main.get("writer_alone"), main.get("ratios") or {}
    if not alone:
        return []
    ceiling = (
        f"; dlt's wall time / this = {ratios['writer_alone_at_most']:.2f}x"
        if "writer_alone_at_most" in ratios
        else ""
    )
    rows = _equal(alone["rows_equal_to_ours"], "the loader's")
    return [
        f"ours, writer alone: {alone['seconds_write']:,.1f} s to write the batches flattened beforehand "
        f"({alone['in_process']['seconds_close']:.1f} s of it the closing checkpoint){ceiling}, rows {rows}",
        "  (one transaction per day, as the loader writes: no flattener, however fast, takes our loader "
        "below this time)",
    ]


def _phases(push: Report) -> str:
    """Where the push's time went: ours (plan, submit, confirm) and the stand-in's (wait)."""
    phases = push.get("phase_seconds") or {"plan": push["seconds_plan"]}
    labels = {
        "plan": "plan: diff + Parquet",
        "submit": "upload",
        "wait": "the stand-in applying",
        "confirm": "ledger",
    }
    return ", ".join(f"{labels.get(k, k)} {v:,.1f} s" for k, v in phases.items())


def _exports(main: Report) -> list[str]:
    exports = main.get("exports")
    if not exports:
        return []
    lines = [
        f"Exports of {exports['activity_log_rows']:,} events (after {exports['seconds_prepare']:,.1f} s adding "
        "the catalog and the activity log to a copy of our warehouse):"
    ]
    for name, e in exports["exports"].items():
        lines.append(
            f"  {name:<18} {e['seconds']:>7,.1f} s  {e['bytes'] / 1e6:>8,.1f} MB  {e['events']:>10,} events  "
            f"{e['objects']:>9,} objects  {_num(e['events'] / e['seconds']) if e['seconds'] else '-'} events/s"
        )
    return lines


def _postgres_copy(main: Report) -> list[str]:
    copy = main.get("postgres_copy")
    if not copy:
        return []
    rows = _equal(not copy["tables_rows_different"], "the warehouse's")
    return [
        f"Copy into PostgreSQL {copy['server_version']}: {copy['rows']:,} rows of {copy['tables']} tables in "
        f"{copy['seconds_copy']:,.1f} s ({_num(copy['rows'] / copy['seconds_copy']) if copy['seconds_copy'] else '-'} "
        f"rows/s); {_num(copy['ratio_to_ours'], 2)}x our flatten + load ({copy['ours_wall_seconds']:,.1f} s)",
        f"  {copy['tables_renamed']} tables renamed to fit 63 bytes; rows {rows} in "
        f"{copy['tables_rows_equal']}/{copy['tables']} tables; copied again (replacing the first): "
        f"{copy['seconds_second_copy']:,.1f} s; peak RSS {megabytes(copy['peak_rss_bytes'])}",
    ]


def _postgres_warehouse(main: Report) -> list[str]:
    load = main.get("postgres_warehouse")
    if not load:
        return []
    lines = [f"PostgreSQL warehouse ({load['target']}), the same contexts loaded with its write path:"]
    for name, figures in load.items():
        if not isinstance(figures, dict):
            continue
        rows = _equal(figures["rows_equal_to_ours"], "ours")
        lines.append(
            f"  {name.replace('_', ' '):<22} {figures['runs']:>3} run(s) {figures['seconds']:>7,.1f} s  "
            f"{_num(figures['ratio_to_ours'], 2)}x ours on DuckDB ({figures['ours_wall_seconds']:,.1f} s); "
            f"rows {rows}; peak RSS {megabytes(figures['peak_rss_bytes'])}"
        )
    return lines


def _push(main: Report) -> list[str]:
    push = main.get("celonis_push")
    if not push:
        return []
    absent = f", {len(push['tables_absent'])} absent" if push["tables_absent"] else ""
    undeclared = push["warehouse_tables_not_declared"]
    not_pushed = f"; {len(undeclared)} tables of ours not in the model, not pushed" if undeclared else ""
    rows = _equal(not push["tables_rows_different"], "the warehouse's")
    return [
        f"Celonis push into the stand-in: {push['seconds_push']:,.1f} s ({_phases(push)}), "
        f"{push['parquet_bytes'] / 1e6:,.1f} MB of Parquet, "
        f"{_num(push['rows_per_second'])} rows/s; {_num(push['ratio_to_ours'], 2)}x our flatten + load "
        f"({push['ours_wall_seconds']:,.1f} s)",
        f"  {push['rows_pushed']:,} of the warehouse's {push['warehouse_rows']:,} rows, "
        f"{push['tables_pushed']} of the model's {push['tables_declared']} tables{absent}{not_pushed}; "
        f"pool rows {rows} in {push['tables_rows_equal']}/{push['tables_pushed']} tables",
        f"  then data model + reload {push['seconds_model_reload']:,.1f} s; the unchanged warehouse pushed "
        f"again: {push['seconds_unchanged_push']:,.1f} s ({push['tables_unchanged_on_second_push']} tables "
        f"unchanged); whole process {push['wall_seconds']:,.1f} s, peak RSS {megabytes(push['peak_rss_bytes'])} "
        "(the stand-in's too)",
    ]


def _comparison(main: Report | None) -> list[str]:
    if not main:
        return []
    return [
        "",
        f"{main['contexts']:,} process contexts ({(main['jsonl_bytes'] or 0) / 1024**2:,.0f} MB JSONL, "
        f"{main['days']} daily partitions), each loader in its own process",
        _row("", "ours", "dlt (parquet)", "ours/dlt"),
        "-" * (_LABEL_WIDTH + 41),
        *_loader_rows(main),
        *_family_rows(main["rows"]),
        *_probe(main),
        *_writer_alone(main),
        *_exports(main),
        *_postgres_copy(main),
        *_postgres_warehouse(main),
        *_push(main),
    ]


def _scale_row(size: Report) -> str:
    ours, dlt = size["ours"], size.get("dlt")
    columns = (
        f"{dlt['wall_seconds']:>9,.1f} {dlt['contexts_per_second']:>10,} {megabytes(dlt['peak_rss_bytes']):>10} "
        f"{size['ratios']['contexts_per_second']:>8.2f}x"
        if dlt
        else f"{'-':>9} {'-':>10} {'-':>10} {'-':>9}"
    )
    return (
        f"{size['contexts']:>12,} {ours['wall_seconds']:>9,.1f} {ours['contexts_per_second']:>11,} "
        f"{megabytes(ours['peak_rss_bytes']):>10} {columns}"
    )


def _scale(scale: list[Report]) -> list[str]:
    if not scale:
        return []
    return [
        "",
        "scale (each size generated, then loaded into a fresh warehouse):",
        f"{'contexts':>12} {'ours s':>9} {'ours ctx/s':>11} {'ours RSS':>10} "
        f"{'dlt s':>9} {'dlt ctx/s':>10} {'dlt RSS':>10} {'ours/dlt':>9}",
        *(_scale_row(size) for size in scale),
    ]


def _incremental(inc: Report) -> str:
    a, b = inc["history_1_day"], inc["history_long"]
    return (
        f"incremental: refresh {inc['day']} (read from the API, land the raw documents, flatten; "
        f"{a['day_contexts']:,} contexts), best of {a['repeat']}: {a['refresh_seconds_best']:.2f} s with "
        f"1 day of history, {b['refresh_seconds_best']:.2f} s with {b['history_days']} days "
        f"({b['history_contexts']:,} contexts); ratio {inc['ratio']:.2f}"
    )


def _extraction(ext: Report) -> str:
    return (
        f"extraction: {ext['contexts']:,} contexts in {ext['pages']} pages of <= {ext['page_size']}, "
        f"concurrency {ext['concurrency']}: our client {ext['ours_contexts_per_second']:,} contexts/s, "
        f"a bare httpx loop {ext['bare_contexts_per_second']:,}/s; ratio {ext['overhead_ratio']:.2f} "
        f"(best of {ext['repeat']})"
    )


def _over_http(inc: Report | None, ext: Report | None) -> list[str]:
    """The measurements against a simulator: refreshing one day, and our client's overhead."""
    lines = ([_incremental(inc)] if inc else []) + ([_extraction(ext)] if ext else [])
    return ["", *lines] if lines else []


def _targets(targets: list[dict[str, Any]]) -> list[str]:
    if not targets:
        return []
    lines = ["", "targets:"]
    for t in targets:
        mark = "met " if t["met"] else "MISS"
        lines.append(f"  [{mark}] {t['target']}: {t['value']} (goal {t['goal']})")
        if t.get("note"):
            lines.append(f"         {t['note']}")
    return lines


def _notes(notes: list[str]) -> list[str]:
    return ["", *notes] if notes else []


def format_report(report: Report) -> str:
    sections = (
        _header(report),
        _comparison(report.get("comparison")),
        _scale(report.get("scale") or []),
        _over_http(report.get("incremental"), report.get("extraction")),
        _targets(report.get("targets") or []),
        _notes(report.get("notes") or []),
    )
    return "\n".join(line.rstrip() for section in sections for line in section)
