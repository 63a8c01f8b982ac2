"""Several days in one write (a single-run backfill), flattening ahead of DuckDB in a thread or a
child process; both must write the same warehouse."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from oe_assets.flatten.prefetch import Prefetched
from oe_assets.flatten.process import live_flatten_processes
from oe_assets.landing.raw_contexts import ensure_raw_tables
from oe_assets.load.contexts import (
    PROCESS_MIN_DOCUMENTS,
    FlattenIn,
    WriteTimes,
    flatten_in_for,
    write_context_partitions,
    write_landed_partitions,
)
from oe_assets.warehouse import quote_ident

DAYS = [date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3)]
LOADED = datetime(2025, 2, 1)
MODES: list[FlattenIn] = ["thread", "process"]


def ctx(pid: str, day: date, **context: Any) -> dict[str, Any]:
    return {
        "metadata": {"createdAt": f"{day.isoformat()}T10:00:00.000Z", "updatedAt": f"{day}T10:05:00.000Z"},
        "context": {"processid": pid, **context},
        "status": "finished",
    }


def documents() -> dict[date, list[list[dict[str, Any]]]]:
    """Three days, two chunks each; day 2 brings a new column and a key that collides by case."""
    return {
        DAYS[0]: [
            [ctx(f"a{i}", DAYS[0], quotes=[{"price": i}]) for i in range(3)],
            [ctx("a9", DAYS[0], quotes=[])],
        ],
        DAYS[1]: [
            [ctx(f"b{i}", DAYS[1], quotes=[{"price": 1.5, "Supplier": "X"}], note="n") for i in range(2)],
            [ctx("b9", DAYS[1], quotes=[{"supplier": "y"}])],
        ],
        DAYS[2]: [[ctx("c0", DAYS[2], quotes=[{"price": 7, "lines": [{"sku": "s"}]}])]],
    }


def snapshot(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    tables = [
        str(r[0])
        for r in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name NOT LIKE '\\_oe\\_%' ESCAPE '\\' "
            "ORDER BY 1"
        ).fetchall()
    ]
    out = {t: sorted(conn.execute(f"SELECT * FROM {quote_ident(t)}").fetchall(), key=repr) for t in tables}
    out["_oe_columns"] = conn.execute(
        "SELECT table_name, column_name, json_path, data_type FROM _oe_columns ORDER BY 1, 2"
    ).fetchall()
    return out


@pytest.mark.parametrize("flatten_in", MODES)
def test_days_in_one_call_equal_days_one_by_one(tmp_path: Path, flatten_in: FlattenIn) -> None:
    docs = documents()
    together = duckdb.connect(str(tmp_path / "together.duckdb"))
    times = WriteTimes()
    reports = list(
        write_context_partitions(together, docs.items(), loaded_at=LOADED, flatten_in=flatten_in, times=times)
    )
    assert times.flattening.documents == 8
    assert times.flattening.flatten > 0
    assert [day for day, _ in reports] == DAYS
    assert [r.rows_per_table["execution_context"] for _, r in reports] == [4, 3, 1]
    assert [r.batches for _, r in reports] == [2, 2, 1]

    # DuckDB ran single-threaded only while the flattening side needed the second core
    assert together.execute("SELECT current_setting('threads')").fetchone() == (
        duckdb.connect(":memory:").execute("SELECT current_setting('threads')").fetchone()
    )

    apart = duckdb.connect(str(tmp_path / "apart.duckdb"))
    for day, chunks in docs.items():
        list(write_context_partitions(apart, [(day, chunks)], loaded_at=LOADED))
    assert snapshot(together) == snapshot(apart)
    # the case-only collision of day 2 got the same name in both warehouses
    names = {r[1] for r in snapshot(together)["_oe_columns"] if "quotes" in r[0]}
    assert {"Supplier", "supplier~2"} <= names


@pytest.mark.parametrize("flatten_in", MODES)
def test_a_failing_day_rolls_back_alone_and_the_error_reaches_the_caller(
    tmp_path: Path, flatten_in: FlattenIn
) -> None:
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    list(write_context_partitions(conn, [(DAYS[1], [[ctx("old", DAYS[1])]])], loaded_at=LOADED))

    def day_two_chunks() -> Iterator[list[dict[str, Any]]]:
        yield [ctx("b0", DAYS[1])]
        raise RuntimeError("the raw table could not be read")

    days = [(DAYS[0], [[ctx("a0", DAYS[0])]]), (DAYS[1], day_two_chunks()), (DAYS[2], [[ctx("c0", DAYS[2])]])]
    written: list[date] = []

    def write_all() -> None:
        for day, _ in write_context_partitions(conn, days, loaded_at=LOADED, flatten_in=flatten_in):
            written.append(day)

    with pytest.raises(RuntimeError, match="the raw table could not be read"):
        write_all()
    assert written == [DAYS[0]]
    rows = conn.execute(
        'SELECT "context$processid", _oe_partition FROM execution_context ORDER BY 1'
    ).fetchall()
    assert rows == [("a0", DAYS[0]), ("old", DAYS[1])]  # day 1 committed, day 2 as before, day 3 never


def test_an_empty_day_replaces_its_previous_rows_with_nothing(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    list(write_context_partitions(conn, [(DAYS[0], [[ctx("a0", DAYS[0])]])], loaded_at=LOADED))
    reports = list(write_context_partitions(conn, [(DAYS[0], []), (DAYS[1], [[ctx("b0", DAYS[1])]])]))
    assert [day for day, _ in reports] == DAYS[:2]
    assert reports[0][1].deleted_rows == {"execution_context": 1}
    assert conn.execute('SELECT "context$processid" FROM execution_context').fetchall() == [("b0",)]


def test_prefetch_runs_ahead_boundedly_and_stops_when_closed() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    stream = Prefetched(items(), depth=2)
    it = iter(stream)
    assert next(it) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(produced) <= 4  # one handed out, two queued, one waiting to be queued
    stream.close()
    assert not any(t.name == "oe-prefetch" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ValueError, match="at least 1"):
        Prefetched([], depth=0)


def _children() -> list[int]:
    return live_flatten_processes()


@pytest.mark.parametrize("flatten_in", MODES)
def test_a_document_that_is_not_json_is_quarantined_and_its_day_lands(
    tmp_path: Path, flatten_in: FlattenIn
) -> None:
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    good = orjson.dumps(ctx("a0", DAYS[0])).decode()
    cut = '{"metadata": '
    days = [(DAYS[0], [[good]]), (DAYS[1], [[orjson.dumps(ctx("b0", DAYS[1])).decode(), cut]])]
    reports = list(write_context_partitions(conn, days, loaded_at=LOADED, flatten_in=flatten_in))
    assert [(day, report.quarantined) for day, report in reports] == [(DAYS[0], 0), (DAYS[1], 1)]
    assert conn.execute('SELECT "context$processid" FROM execution_context ORDER BY 1').fetchall() == [
        ("a0",),
        ("b0",),
    ]
    assert conn.execute(
        "SELECT partition_key, record_key, reason, document FROM _oe_quarantine"
    ).fetchall() == [
        (
            "2025-01-02",
            None,
            "not valid JSON (unexpected end of data at character 13, near '{\"metadata\": ')",
            cut,
        )
    ]
    assert not _children()


def test_the_flattening_process_ends_when_the_writer_stops_early(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    days = [(day, [[ctx(f"{day}-{i}", day) for i in range(50)]]) for day in DAYS]
    stream = write_context_partitions(conn, days, loaded_at=LOADED, flatten_in="process")
    first_day, _ = next(stream)
    assert first_day == DAYS[0]
    assert len(_children()) == 1
    stream.close()  # the caller stops after one day (e.g. the run was cancelled)
    assert not _children()
    assert conn.execute("SELECT count(*) FROM execution_context").fetchone() == (50,)


def test_a_flattening_process_that_dies_is_an_error_not_a_hang(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))

    def chunks() -> Iterator[list[dict[str, Any]]]:
        yield [ctx("a0", DAYS[0])]
        for pid in _children():
            os.kill(pid, signal.SIGKILL)  # as the OOM killer would
        yield [ctx("a1", DAYS[0])]

    with pytest.raises(RuntimeError, match="flattening process exited"):
        list(write_context_partitions(conn, [(DAYS[0], chunks())], loaded_at=LOADED, flatten_in="process"))
    assert conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'execution_context'"
    ).fetchone() == (0,)


def test_landed_partitions_flatten_where_their_number_says(tmp_path: Path) -> None:
    assert flatten_in_for(PROCESS_MIN_DOCUMENTS - 1) == "thread"
    assert flatten_in_for(PROCESS_MIN_DOCUMENTS) == "process"
    warehouses = {}
    for mode in MODES:
        conn = duckdb.connect(str(tmp_path / f"{mode}.duckdb"))
        ensure_raw_tables(conn)
        for day, chunks in documents().items():
            for chunk in chunks:
                conn.executemany(
                    "INSERT INTO raw_process_contexts (process_id, created_at, partition_date, document, "
                    "document_sha256, loaded_at) VALUES (?, ?, ?, ?, '-', ?)",
                    [
                        [
                            d["context"]["processid"],
                            datetime(day.year, day.month, day.day),
                            day,
                            orjson.dumps(d).decode(),
                            LOADED,
                        ]
                        for d in chunk
                    ],
                )
        reports = list(write_landed_partitions(conn, DAYS, loaded_at=LOADED, flatten_in=mode))
        assert [r.rows_per_table["execution_context"] for _, r in reports] == [4, 3, 1]
        warehouses[mode] = snapshot(conn)
    assert warehouses["thread"] == warehouses["process"]
