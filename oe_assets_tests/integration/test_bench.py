"""The benchmark's own loader (`python -m oe_assets.bench.ours`) on a few hundred generated contexts.

Fast and without dlt: the rows our loader reports per table must equal an independent count of
the array elements in the JSONL file, table by table (matched by JSON path).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from oe_assets.bench.counts import compare, count_ours, dlt_key, ours_key
from oe_assets.bench.measure import run_measured
from oe_assets.bench.ours import _created_day
from oe_assets.bench.report import evaluate_targets, format_report
from oe_assets.bench.runner import BenchConfig, machine_info, run_extraction, run_incremental, run_size
from oe_assets.warehouse.postgres.url import PostgresUrl, parse_postgres_url
from oe_assets_tests.support.postgres import PostgresServer

N = 300


def _module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"oe_assets.bench.{name}", *args]


def _count_arrays(doc: Any, path: tuple[str | None, ...], counts: Counter[tuple[str | None, ...]]) -> None:
    """Every array element is one row of the table of its array's path (None = 'each element')."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            _count_arrays(value, (*path, key), counts)
    elif isinstance(doc, list):
        counts[path] += len(doc)
        for element in doc:
            if isinstance(element, dict | list):
                _count_arrays(element, (*path, None), counts)


def test_our_loader_writes_one_row_per_array_element(tmp_path: Path) -> None:
    jsonl = tmp_path / "contexts.jsonl"
    gen = run_measured(_module("generate", "--out", str(jsonl), "--contexts", str(N), "--days", "3"))
    assert gen.ok, gen.stderr_tail
    docs = [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]
    assert len(docs) == N
    expected: Counter[tuple[str | None, ...]] = Counter({(): N})
    for doc in docs:
        _count_arrays(doc, (), expected)
    expected = +expected  # arrays that were always empty make no table
    days = {doc["metadata"]["createdAt"][:10] for doc in docs}

    db = tmp_path / "ours.duckdb"
    run = run_measured(_module("ours", "--input", str(jsonl), "--db", str(db)))
    assert run.ok, run.stderr_tail
    assert run.peak_rss_bytes > 10 * 1024**2
    assert run.wall_seconds > 0
    summary = run.summary
    assert summary["contexts"] == N
    assert summary["partitions"] == len(days)
    assert summary["quarantined"] == 0
    assert summary["flatten_in"] == "thread"  # too few contexts to pay for a process

    # flattening in a child process (what a run of PROCESS_MIN_DOCUMENTS or more does) writes the same
    in_process = run_measured(
        _module(
            "ours", "--input", str(jsonl), "--db", str(tmp_path / "process.duckdb"), "--flatten-in", "process"
        )
    )
    assert in_process.ok, in_process.stderr_tail
    assert in_process.summary["flatten_in"] == "process"
    assert in_process.summary["rows_per_table"] == summary["rows_per_table"]
    assert in_process.summary["seconds_flatten"] > 0

    conn = duckdb.connect(str(db), read_only=True)
    try:
        paths = {
            name: tuple(json.loads(path)) if path else ()
            for name, path in conn.execute(
                "SELECT table_name, json_path FROM _oe_tables WHERE family = 'execution_context'"
            ).fetchall()
        }
        partitions = conn.execute("SELECT count(DISTINCT _oe_partition) FROM execution_context").fetchone()
    finally:
        conn.close()
    assert partitions == (len(days),)
    reported = {paths[table]: rows for table, rows in summary["rows_per_table"].items()}
    assert reported == dict(expected)
    assert len(reported) > 20  # objects, arrays of objects, arrays in arrays, arrays of scalars

    # the runner's count from the warehouse agrees, and every table maps to its own key
    counted = count_ours(db)
    assert {c.key: c.rows for c in counted} == {ours_key(p): n for p, n in expected.items()}
    result = compare(counted, None)
    assert result["ours_total_rows"] == sum(expected.values())
    assert sum(f["ours_rows"] for f in result["families"]) == sum(expected.values())


def test_table_keys_of_ours_and_dlt_meet() -> None:
    root = "execution_context"
    assert ours_key(()) == dlt_key(root, root) == "(root)"
    assert (
        ours_key(("context", "celonis_postaction_feedback", "quotes", None, "priceBreaks", None))
        == dlt_key(f"{root}__context__celonis_postaction_feedback__quotes__price_breaks__list", root)
        == "context/celonispostactionfeedback/quotes/pricebreaks/list"
    )
    assert (
        ours_key(("context", "quote.approval-Required", "levels"))
        == dlt_key(f"{root}__context__quote_approval_required__levels", root)
        == "context/quoteapprovalrequired/levels"
    )
    assert ours_key(("a", None, None)) == "a/list/list"


def test_incremental_and_extraction_run_against_small_simulators(tmp_path: Path) -> None:
    config = BenchConfig(
        work_dir=tmp_path / "work",
        incremental_contexts_per_day=15,
        incremental_history_days=4,
        extraction_days=2,
        extraction_contexts_per_day=15,
        repeat=1,
    )
    incremental = run_incremental(config, echo=lambda _line: None)
    assert incremental["history_1_day"]["day_contexts"] == incremental["history_long"]["day_contexts"] > 0
    assert incremental["history_long"]["history_contexts"] > incremental["history_1_day"]["history_contexts"]
    assert incremental["ratio"] > 0
    extraction = run_extraction(config, echo=lambda _line: None)
    assert extraction["contexts"] > 0
    assert extraction["bare_records"] >= extraction["contexts"]
    assert extraction["concurrency"] == 1
    assert extraction["overhead_ratio"] > 0

    report: dict[str, Any] = {
        "date": "2026-01-01T00:00:00+00:00",
        "machine": machine_info(),
        "versions": {"python": "3", "duckdb": "1", "pyarrow": "1", "dlt": None},
        "incremental": incremental,
        "extraction": extraction,
    }
    report["targets"] = evaluate_targets(report)
    assert [t["target"] for t in report["targets"]] == [
        "refresh one day: 4-day / 1-day history",
        "client overhead vs a bare httpx loop",
    ]
    text = format_report(report)
    assert "incremental: refresh" in text
    assert "extraction:" in text
    # without the incremental measurement, extraction still stands apart from what comes before it
    assert "\n\nextraction:" in format_report({**report, "incremental": None})


def _report_of(result: dict[str, Any]) -> dict[str, Any]:
    """A report around one size's result, without dlt, as ``run_bench`` builds it."""
    return {
        "date": "2026-01-01T00:00:00+00:00",
        "machine": machine_info(),
        "versions": {"python": "3", "duckdb": "1", "pyarrow": "1", "dlt": None},
        "comparison": result,
        "scale": [result],
    }


def test_native_probe_builds_the_same_tables_with_the_same_row_counts(tmp_path: Path) -> None:
    """The DuckDB-only probe is a ceiling only if it did our loader's work: same tables, same rows."""
    config = BenchConfig(work_dir=tmp_path / "work", keep_files=True, days=3, scale=[])
    result = run_size(config, N, False, lambda _line: None, ["probe"])
    probe = result["native_probe"]
    assert probe["rows_equal_to_ours"] is True
    assert probe["wall_seconds"] > 0
    assert probe["in_process"]["seconds_read_json"] > 0
    work = config.work_dir / f"n{N}"
    ours, native = (
        duckdb.connect(str(work / name), read_only=True) for name in ("ours.duckdb", "probe.duckdb")
    )
    lines = "execution_context$context&celonis_postaction_feedback$quotes$lines"
    try:
        keys = [
            conn.execute(
                f'SELECT "context$processid", _oe_row_id, _oe_parent_row_id, _oe_position FROM "{lines}" ORDER BY ALL'
            ).fetchall()
            for conn in (ours, native)
        ]
    finally:
        ours.close()
        native.close()
    assert keys[0]
    assert keys[0] == keys[1]  # the same rows under the same position-path keys

    report = _report_of(result)
    assert "DuckDB-only probe:" in format_report(report)
    assert "rows equal to ours" in format_report(report)


def test_the_writer_alone_writes_the_loaders_tables_and_is_reported(tmp_path: Path) -> None:
    """The writer's floor counts only if it wrote what the loader wrote, row for row."""
    config = BenchConfig(work_dir=tmp_path / "work", keep_files=True, days=3, scale=[])
    result = run_size(config, N, False, lambda _line: None, ["writer_alone"])
    alone = result["writer_alone"]
    assert alone["rows_equal_to_ours"] is True
    assert alone["in_process"]["contexts"] == N
    assert alone["in_process"]["partitions"] == 3
    assert 0 < alone["in_process"]["seconds_close"] <= alone["seconds_write"]
    work = config.work_dir / f"n{N}"
    tables = []
    for name in ("ours.duckdb", "writer.duckdb"):
        conn = duckdb.connect(str(work / name), read_only=True)
        try:
            listed = [
                r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
            ]
            lines = "execution_context$context&celonis_postaction_feedback$quotes$lines"
            keys = conn.execute(
                f'SELECT "context$processid", _oe_row_id, _oe_parent_row_id, sku FROM "{lines}" ORDER BY ALL'
            ).fetchall()
        finally:
            conn.close()
        tables.append((listed, keys))
    assert tables[0][1]
    assert tables[0] == tables[1]

    report = _report_of(result)
    text = format_report(report)
    assert "ours, writer alone:" in text
    assert "rows equal to the loader's" in text


def test_the_celonis_push_of_our_warehouse_is_timed_checked_and_reported(tmp_path: Path) -> None:
    """Every declared table of the bench's warehouse reaches the stand-in, row for row, and is judged."""
    config = BenchConfig(work_dir=tmp_path / "work", days=3, scale=[])
    result = run_size(config, N, False, lambda _line: None, ["push"])
    push = result["celonis_push"]
    assert push["warehouse_rows"] == result["rows"]["ours_total_rows"]
    assert push["warehouse_tables_not_declared"] == []  # the model declares every generated table
    assert push["tables_pushed"] == push["warehouse_tables"] == push["tables_rows_equal"] > 20
    assert push["tables_rows_different"] == []
    assert push["model_rows_equal"] is True
    assert push["rows_pushed"] == push["warehouse_rows"]  # a fresh pool: every row, in REPLACE jobs
    assert push["tables_declared"] == push["tables_pushed"] + len(push["tables_absent"])
    assert push["tables_unchanged_on_second_push"] == push["tables_pushed"]
    assert 0 < push["seconds_plan"] < push["seconds_push"] < push["wall_seconds"]
    assert push["seconds_unchanged_push"] > 0
    assert push["parquet_bytes"] > 0
    assert push["rows_per_second"] > 0
    assert push["ratio_to_ours"] == round(push["seconds_push"] / result["ours"]["wall_seconds"], 3)
    assert push["peak_rss_bytes"] > 10 * 1024**2
    assert not (config.work_dir / f"n{N}").exists()  # the warehouse and the pool went with the work files

    report = _report_of(result)
    targets = evaluate_targets(report)
    assert [t["target"] for t in targets] == [
        f"Celonis push of the {N} contexts' warehouse / our flatten + load",
        "row counts of the stand-in's pool equal to the warehouse's",
    ]
    assert targets[1]["met"] is True
    text = format_report({**report, "targets": targets})
    assert "Celonis push into the stand-in:" in text
    assert (
        f"pool rows equal to the warehouse's in {push['tables_pushed']}/{push['tables_pushed']} tables"
        in text
    )
    # a run without the push reports neither the section nor its targets
    skipped = _report_of({**result, "celonis_push": None})
    assert evaluate_targets(skipped) == []
    assert "Celonis push" not in format_report(skipped)


def test_the_loader_reads_the_day_off_the_line_or_parses_it() -> None:
    api = b'{"metadata":{"tenant":"t","createdAt":"2025-01-02T23:59:59.000Z"},"context":{}}'
    assert _created_day(api, 1) == date(2025, 1, 2)
    # not the API's shape: metadata not first, a nested object first, an offset -> parsed in full
    later = b'{"context":{"metadata":{"createdAt":"2020-01-01T00:00:00.000Z"}},"metadata":{"createdAt":"2025-01-03T01:00:00.000Z"}}'
    assert _created_day(later, 2) == date(2025, 1, 3)
    nested = (
        b'{"metadata":{"x":{"createdAt":"2020-01-01T00:00:00.000Z"},"createdAt":"2025-01-04T01:00:00.000Z"}}'
    )
    assert _created_day(nested, 3) == date(2025, 1, 4)
    offset = b'{"metadata":{"createdAt":"2025-01-05T23:30:00-02:00"}}'
    assert _created_day(offset, 4) == date(2025, 1, 6)  # the UTC day, as the raw landing computes it
    with pytest.raises(ValueError, match="line 5 is not valid JSON"):
        _created_day(b'{"metadata": ', 5)
    with pytest.raises(ValueError, match=r"line 6: metadata\.createdAt None is missing"):
        _created_day(b'{"metadata":{}}', 6)


def test_the_exports_of_the_comparison_set_are_timed_and_reported(tmp_path: Path) -> None:
    """The bench's warehouse, completed with catalog and activity log, exported in every format."""
    config = BenchConfig(work_dir=tmp_path / "work", days=3, scale=[])
    result = run_size(config, N, False, lambda _line: None, ["exports"])
    exports = result["exports"]
    assert exports["activity_log_rows"] > N  # at least a start and a step per context
    assert set(exports["exports"]) == {"ocel.jsonocel", "ocel.sqlite", "ocel.xmlocel", "activity_log.xes"}
    for name, figures in exports["exports"].items():
        assert figures["events"] == exports["activity_log_rows"], name
        assert figures["seconds"] > 0, name
        assert figures["bytes"] > 1000, name
    assert exports["exports"]["ocel.jsonocel"]["objects"] >= N  # a process context per context, and more
    text = format_report(_report_of(result))
    assert f"Exports of {exports['activity_log_rows']:,} events" in text
    assert "activity_log.xes" in text


def _target(server: PostgresServer, database: str) -> PostgresUrl:
    """The test server's database, its password in the URL (as a user may write it)."""
    return parse_postgres_url(
        f"postgresql://{server.user}:{server.password}@127.0.0.1:{server.port}/{database}", "--to"
    )


def test_the_copy_into_postgresql_is_timed_checked_and_reported(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The bench's warehouse reaches a real PostgreSQL row for row; the password stays out of the
    child's command line and out of the report."""
    database = postgres_server.create_database("bench_copy")
    config = BenchConfig(
        work_dir=tmp_path / "work", days=3, scale=[], copy_to=_target(postgres_server, database)
    )
    result = run_size(config, N, False, lambda _line: None, ["postgres_copy"])
    copy = result["postgres_copy"]
    assert copy["rows"] > result["rows"]["ours_total_rows"]  # the data tables, and the catalog's own
    assert copy["tables"] == copy["tables_rows_equal"] > 20
    assert copy["tables_rows_different"] == []
    assert copy["tables_renamed"] > 0  # the generator's deepest tables have names over 63 bytes
    assert 0 < copy["seconds_copy"] < copy["wall_seconds"]
    assert copy["seconds_second_copy"] > 0
    assert copy["server_version"].startswith("15")
    assert copy["ratio_to_ours"] == round(copy["seconds_copy"] / result["ours"]["wall_seconds"], 3)
    assert postgres_server.query(
        database, "SELECT count(*) FROM pg_namespace WHERE nspname = 'oe_bench'"
    ) == [(0,)]
    text = format_report(_report_of(result))
    assert (
        f"Copy into PostgreSQL {copy['server_version']}: {copy['rows']:,} rows of {copy['tables']} tables"
        in text
    )
    assert postgres_server.password not in json.dumps(result) + text
    assert "Copy into PostgreSQL" not in format_report(_report_of({**result, "postgres_copy": None}))


def test_the_postgresql_warehouse_load_is_timed_checked_and_reported(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """One run over every day, then daily runs 1, 2 and 4 at a time, each into an emptied schema
    with the rows ours has; the password stays out of the children's command lines and the report."""
    database = postgres_server.create_database("bench_warehouse")
    config = BenchConfig(
        work_dir=tmp_path / "work", days=3, scale=[], warehouse=_target(postgres_server, database)
    )
    result = run_size(config, N, False, lambda _line: None, ["postgres_warehouse"])
    load = result["postgres_warehouse"]
    assert load["days"] == 3
    runs = {name: figures for name, figures in load.items() if isinstance(figures, dict)}
    assert sorted(runs) == [
        "daily_runs_1_at_once",
        "daily_runs_2_at_once",
        "daily_runs_4_at_once",
        "single_run",
    ]
    for name, figures in runs.items():
        assert figures["rows_equal_to_ours"], name
        assert figures["rows"] == result["rows"]["ours_total_rows"], name
        assert 0 < figures["seconds"] < figures["wall_seconds"], name
    assert (runs["single_run"]["runs"], runs["daily_runs_4_at_once"]["runs"]) == (1, 3)
    landed = postgres_server.query(database, "SELECT count(*) FROM oe_bench_load.execution_context")
    assert landed == [(N,)]
    text = format_report(_report_of(result))
    assert "PostgreSQL warehouse (postgresql://" in text
    assert "daily runs 2 at once" in text
    assert postgres_server.password not in json.dumps(result) + text
