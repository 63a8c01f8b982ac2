"""The benchmark's own loader (`python -m oe_assets.bench.ours`) on a few hundred generated contexts.

Fast and without dlt: the rows our loader reports per table must equal an independent count of
the array elements in the JSONL file, table by table (matched by JSON path).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import orjson

from oe_assets.bench.counts import compare, count_ours, dlt_key, ours_key
from oe_assets.bench.measure import run_measured

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
