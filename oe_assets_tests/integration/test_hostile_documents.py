"""Hostile documents in the raw layer are quarantined with their text, or land; never fatal.

Every write goes through the warehouse's own connection settings (its 256 MB DuckDB memory
limit) on a DuckDB file, as a run does: raw texts in ``raw_process_contexts`` ->
``write_landed_partitions`` -> flattening in a thread or a child process -> one transaction
per day.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from oe_assets.landing.raw_contexts import ensure_raw_tables
from oe_assets.load.contexts import FlattenIn, write_context_partitions, write_landed_partitions
from oe_assets.warehouse import WriteReport, quote_ident
from oe_assets.warehouse.connection import open_warehouse

DAY, NEXT_DAY = date(2025, 3, 4), date(2025, 3, 5)
LOADED = datetime(2025, 3, 6)
MODES: list[FlattenIn] = ["thread", "process"]


def ctx(pid: str, day: date = DAY, /, **context: Any) -> dict[str, Any]:
    return {
        "metadata": {"createdAt": f"{day}T10:00:00.000Z", "updatedAt": f"{day}T10:05:00.000Z"},
        "context": {"processid": pid, **context},
        "status": "finished",
    }


def text(pid: str, day: date = DAY, /, **context: Any) -> str:
    return orjson.dumps(ctx(pid, day, **context)).decode()


def raw_text(pid: str, value: str, day: date = DAY) -> str:
    """A context whose ``context.x`` is ``value``, written as JSON text (it may be no JSON at all)."""
    return (
        f'{{"metadata":{{"createdAt":"{day}T10:00:00.000Z"}},'
        f'"context":{{"processid":"{pid}","x":{value}}},"status":"finished"}}'
    )


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A warehouse opened as the loader opens it (the writers' settings and lock), with its raw tables."""
    with open_warehouse(tmp_path / "w.duckdb") as opened:
        ensure_raw_tables(opened)
        yield opened


def land(conn: duckdb.DuckDBPyConnection, day: date, texts: Sequence[str]) -> None:
    conn.executemany(
        "INSERT INTO raw_process_contexts (process_id, created_at, partition_date, document, "
        "document_sha256, loaded_at) VALUES (?, ?, ?, ?, '-', ?)",
        [[f"{day}-{i}", datetime(day.year, day.month, day.day), day, t, LOADED] for i, t in enumerate(texts)],
    )


def landed_keys(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, date]]:
    return conn.execute(
        'SELECT "context$processid", _oe_partition FROM execution_context ORDER BY 1'
    ).fetchall()


def quarantine(conn: duckdb.DuckDBPyConnection) -> dict[str | None, tuple[str, str, str]]:
    """record key -> (partition, reason, document)."""
    rows = conn.execute("SELECT record_key, partition_key, reason, document FROM _oe_quarantine").fetchall()
    return {key: (part, reason, doc) for key, part, reason, doc in rows}


@pytest.mark.parametrize("flatten_in", MODES)
def test_unparsable_documents_are_quarantined_verbatim_and_both_days_land(
    conn: duckdb.DuckDBPyConnection, flatten_in: FlattenIn
) -> None:
    hostile = {
        "nan": raw_text("nan", "NaN"),
        "inf": raw_text("inf", "1e400"),
        "infinity": raw_text("infinity", "-Infinity"),
        "too-deep": raw_text("too-deep", nested(2000)),  # deeper than orjson parses (1,024)
    }
    big = raw_text("big", str(2**70))  # parses: orjson gives the nearest float
    land(conn, DAY, [text("good-1"), *hostile.values(), big, text("good-2")])
    land(conn, NEXT_DAY, [text("next", NEXT_DAY)])

    reports = list(write_landed_partitions(conn, [DAY, NEXT_DAY], loaded_at=LOADED, flatten_in=flatten_in))

    assert [(day, r.quarantined) for day, r in reports] == [(DAY, 4), (NEXT_DAY, 0)]
    assert landed_keys(conn) == [("big", DAY), ("good-1", DAY), ("good-2", DAY), ("next", NEXT_DAY)]
    assert conn.execute(
        'SELECT typeof("context$x"), "context$x" FROM execution_context WHERE "context$processid" = \'big\''
    ).fetchone() == ("DOUBLE", float(2**70))
    rows = quarantine(conn)
    assert set(rows) == set(hostile)
    for key, document in hostile.items():
        partition, reason, kept = rows[key]
        assert (partition, kept) == (str(DAY), document)  # the text as it was read, not re-serialised
        assert reason.startswith("not valid JSON (")
    assert "number is infinity" in rows["inf"][1]
    assert "depth limit exceeded" in rows["too-deep"][1]
    assert "NaN" in rows["nan"][1]  # the reason shows where parsing stopped


@pytest.mark.parametrize("flatten_in", MODES)
def test_texts_the_raw_table_could_not_hold_are_quarantined_too(
    tmp_path: Path, flatten_in: FlattenIn
) -> None:
    """Lone surrogates and cut texts (DuckDB's JSON type refuses them; an older raw table did not)."""
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    escaped = raw_text("escaped", '"\\ud800"')  # a lone surrogate as a JSON escape
    raw = raw_text("raw", '"\ud800"')  # a lone surrogate as a character
    cut = text("cut")[:-7]
    as_bytes = raw_text("bytes", "NaN").encode()
    chunks = [[text("good"), escaped, raw, cut, as_bytes]]

    reports = list(write_context_partitions(conn, [(DAY, chunks)], loaded_at=LOADED, flatten_in=flatten_in))

    assert reports[0][1].quarantined == 4
    assert landed_keys(conn) == [("good", DAY)]
    rows = quarantine(conn)
    assert rows["escaped"][2] == escaped
    assert "no low surrogate" in rows["escaped"][1]
    assert rows["raw"][2] == raw.encode("utf-8", "backslashreplace").decode()  # UTF-8 cannot hold it
    assert rows["cut"][2] == cut
    assert rows["bytes"][2] == as_bytes.decode()


def test_nesting_beyond_orjsons_255_levels_flattens_or_is_quarantined_verbatim(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    deep, deeper = raw_text("deep", nested(300)), raw_text("deeper", nested(1010))
    land(conn, DAY, [text("good"), deep, deeper])

    [(_, report)] = write_landed_partitions(conn, [DAY], loaded_at=LOADED)

    assert landed_keys(conn) == [("deep", DAY), ("good", DAY)]
    column = "context$x$" + "$".join(["a"] * 300)
    assert conn.execute(
        f"SELECT {quote_ident(column)} FROM execution_context WHERE {quote_ident(column)} IS NOT NULL"
    ).fetchall() == [(1,)]
    assert report.quarantined == 1
    _, reason, document = quarantine(conn)["deeper"]
    assert reason == "cannot flatten: nested deeper than the flattener supports"
    assert document == deeper  # re-serialising it fails beyond 255 levels: the raw text is kept


def wide_report(conn: duckdb.DuckDBPyConnection, day: date = DAY) -> WriteReport:
    limit = conn.execute("SELECT current_setting('memory_limit')").fetchone()
    [(_, report)] = write_landed_partitions(conn, [day], loaded_at=LOADED, flatten_in="thread")
    assert conn.execute("SELECT current_setting('memory_limit')").fetchone() == limit  # raised, then restored
    return report


def context_columns(conn: duckdb.DuckDBPyConnection, prefix: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM duckdb_columns() "
        "WHERE table_name = 'execution_context' AND starts_with(column_name, ?)",
        [prefix],
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_document_with_5000_keys_lands_under_the_warehouse_memory_limit(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    keys = {f"k{i}": f"value {i}" for i in range(5000)}
    land(conn, DAY, [text("good"), text("wide", **keys)])

    report = wide_report(conn)

    assert report.rows_per_table["execution_context"] == 2
    assert context_columns(conn, "context$k") == 5000
    assert conn.execute(
        'SELECT "context$k0", "context$k4999" FROM execution_context ORDER BY "context$processid"'
    ).fetchall() == [(None, None), ("value 0", "value 4999")]
    assert conn.execute(
        "SELECT count(*) FROM _oe_columns WHERE starts_with(column_name, 'context$k')"
    ).fetchone() == (5000,)


def test_100_documents_of_50_keys_each_land_under_the_warehouse_memory_limit(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    land(conn, DAY, [text(f"w{j:03d}", **{f"k{j}_{i}": f"v{i}" for i in range(50)}) for j in range(100)])

    report = wide_report(conn)

    assert report.rows_per_table["execution_context"] == 100
    assert context_columns(conn, "context$k") == 5000
    assert conn.execute(
        'SELECT count("context$k7_49") FILTER (WHERE "context$k7_49" = \'v49\'), count(*) '
        "FROM execution_context"
    ).fetchone() == (1, 100)


def test_thousands_of_new_keys_on_a_landed_table_rebuild_it_and_keep_every_other_row(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    """ALTER TABLE per key kept every table version until the commit (8.9 GB for 5,000 keys)."""
    land(conn, DAY, [text("day-1", DAY, x=1)])
    land(conn, NEXT_DAY, [text("old", NEXT_DAY, x=2, items=[{"n": 1}, {"n": 2}])])
    list(write_landed_partitions(conn, [DAY, NEXT_DAY], loaded_at=LOADED))
    conn.execute("DELETE FROM raw_process_contexts WHERE partition_date = ?", [NEXT_DAY])
    keys = {f"k{i}": f"v{i}" for i in range(3000)}
    land(conn, NEXT_DAY, [text("new", NEXT_DAY, x=3), text("wide", NEXT_DAY, **keys)])

    report = wide_report(conn, NEXT_DAY)

    assert report.deleted_rows == {"execution_context": 1, "execution_context$context$items": 2}
    assert landed_keys(conn) == [("day-1", DAY), ("new", NEXT_DAY), ("wide", NEXT_DAY)]
    assert conn.execute(
        'SELECT "context$x", "context$k2999" FROM execution_context ORDER BY 1'
    ).fetchall() == [
        (1, None),
        (3, None),
        (None, "v2999"),
    ]
    assert conn.execute('SELECT count(*) FROM "execution_context$context$items"').fetchone() == (0,)
    nullable = conn.execute(
        "SELECT is_nullable FROM duckdb_columns() WHERE table_name = 'execution_context' "
        "AND column_name = 'context$processid'"
    ).fetchone()
    assert nullable == (False,)  # the key column keeps its NOT NULL
    # and the rebuilt table takes the next day's write as any other
    conn.execute("DELETE FROM raw_process_contexts WHERE partition_date = ?", [NEXT_DAY])
    land(conn, NEXT_DAY, [text("newer", NEXT_DAY, x=4)])
    [(_, again)] = write_landed_partitions(conn, [NEXT_DAY], loaded_at=LOADED)
    assert again.deleted_rows == {"execution_context": 2}
    assert landed_keys(conn) == [("day-1", DAY), ("newer", NEXT_DAY)]
