"""The one timestamp parser, and timestamps landing as the UTC instant whatever their precision
and offset (a 7-digit fraction turned the whole column to text; ``+0200`` offsets were dropped)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oe_assets.core.timestamps import parse_oe_timestamp, parse_timestamp
from oe_assets.flatten import TIMESTAMP_PATTERN, Flattener, TableFamily
from oe_assets.landing.raw_contexts import ensure_raw_tables
from oe_assets.load.contexts import write_landed_partitions
from oe_assets.simulator.timeutil import MISSING_KEY, sort_key
from oe_assets.warehouse.connection import open_warehouse

DAY = date(2025, 3, 4)
LOADED = datetime(2025, 3, 6)

READ = [
    ("2023-10-16T10:13:42.322Z", datetime(2023, 10, 16, 10, 13, 42, 322000)),
    ("2025-03-04T10:00:00.1234567Z", datetime(2025, 3, 4, 10, 0, 0, 123456)),  # truncated, not rounded
    ("2025-03-04T10:00:00.123456789+02:00", datetime(2025, 3, 4, 8, 0, 0, 123456)),
    ("2025-03-04T23:30:00.000+02:00", datetime(2025, 3, 4, 21, 30)),
    ("2025-03-04T23:30:00.000+0200", datetime(2025, 3, 4, 21, 30)),
    ("2025-03-04T23:30:00+02", datetime(2025, 3, 4, 21, 30)),
    ("2025-03-04T22:00:00-05:00", datetime(2025, 3, 5, 3, 0)),
    ("2025-03-04T12:00:00", datetime(2025, 3, 4, 12, 0)),  # no offset: UTC
    ("2025-03-04 12:00:00.5Z", datetime(2025, 3, 4, 12, 0, 0, 500000)),
    ("2025-03-04t12:00:00z", datetime(2025, 3, 4, 12, 0)),  # RFC 3339 allows lower case
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1)),  # the Go zero time
    ("9999-12-31T23:59:59.999999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999)),
]
NOT_READ: list[object] = [
    None,
    1700000000,
    "",
    "2025-03-04",  # a date alone
    "2025-03-04T10:00Z",  # no seconds
    "2025-03-04T10:00+02:00",
    " 2025-03-04T10:00:00Z",
    "2025-02-30T10:00:00Z",
    "2025-03-04T24:00:00Z",
    "2025-03-04T10:00:00+25:00",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:00:00-05:00",  # after year 9999 in UTC
    "2025-03-04T10:00:00Z" + " " * 50,
    "20250304T100000Z",
]


@pytest.mark.parametrize(("text", "utc"), READ)
def test_every_iso_form_reads_as_its_utc_instant(text: str, utc: datetime) -> None:
    assert parse_timestamp(text) == utc.replace(tzinfo=UTC)
    assert parse_timestamp(text).tzinfo is UTC  # type: ignore[union-attr]
    assert parse_oe_timestamp(text) == utc
    assert parse_oe_timestamp(text).tzinfo is None  # type: ignore[union-attr]


@pytest.mark.parametrize("value", NOT_READ)
def test_what_is_no_timestamp_reads_as_none_without_raising(value: object) -> None:
    assert parse_timestamp(value) is None
    assert parse_oe_timestamp(value) is None


def test_the_simulator_reads_timestamps_as_the_project_does() -> None:
    for text, utc in READ:
        assert sort_key(text) == (utc - datetime(1970, 1, 1)) // timedelta(microseconds=1), text
    for value in NOT_READ:
        assert sort_key(value) == MISSING_KEY, value


FAMILY = TableFamily("t", ("id",), "t_id")
FRACTIONS = st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9).map(lambda d: "." + d))
OFFSETS = st.one_of(
    st.sampled_from(["Z", ""]),
    st.tuples(
        st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59), st.sampled_from(["{}:{}", "{}{}"])
    ).map(lambda t: t[0] + t[3].format(f"{t[1]:02d}", f"{t[2]:02d}")),
    st.tuples(st.sampled_from("+-"), st.integers(0, 23)).map(lambda t: f"{t[0]}{t[1]:02d}"),
)
TIMESTAMPS = st.builds(
    lambda moment, fraction, offset: moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + fraction + offset,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    FRACTIONS,
    OFFSETS,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TIMESTAMPS, min_size=1, max_size=6))
def test_a_column_of_timestamps_lands_as_the_instants_the_parser_reads(texts: list[str]) -> None:
    """Whatever the fraction and offset: TIMESTAMP of the same instants, or text when one of them
    is no instant Python can hold (``0001-01-01T00:00:00+01:00``)."""
    assert all(pa.compute.match_substring_regex(pa.array(texts), TIMESTAMP_PATTERN).to_pylist())
    batch = Flattener(FAMILY).flatten([{"id": str(i), "at": t} for i, t in enumerate(texts)])
    column = batch.tables["t"].column("at")
    instants = [parse_oe_timestamp(t) for t in texts]
    if None in instants:
        assert column.to_pylist() == texts
    else:
        assert column.type == pa.timestamp("us")
        assert column.to_pylist() == instants


def land(conn: Any, day: date, created: list[str]) -> None:
    docs = [{"metadata": {"createdAt": c}, "context": {"processid": f"p{i}"}} for i, c in enumerate(created)]
    conn.executemany(
        "INSERT INTO raw_process_contexts (process_id, created_at, partition_date, document, "
        "document_sha256, loaded_at) VALUES (?, ?, ?, ?, '-', ?)",
        [[f"p{i}", LOADED, day, orjson.dumps(d).decode(), LOADED] for i, d in enumerate(docs)],
    )


CREATED = [
    "2025-03-04T10:00:00.1234567Z",
    "2025-03-04T23:30:00.000+02:00",
    "2025-03-04T23:30:00.000+0200",
    "2025-03-04T20:00:00-05:00",
    "2025-03-04T12:00:00",
    "2025-03-04T12:00:00.123456789Z",
]
CREATED_UTC = [
    datetime(2025, 3, 4, 10, 0, 0, 123456),
    datetime(2025, 3, 4, 21, 30),
    datetime(2025, 3, 4, 21, 30),
    datetime(2025, 3, 5, 1, 0),
    datetime(2025, 3, 4, 12, 0),
    datetime(2025, 3, 4, 12, 0, 0, 123456),
]


def test_created_at_of_any_precision_and_offset_lands_as_the_utc_instant(tmp_path: Path) -> None:
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        ensure_raw_tables(conn)
        land(conn, DAY, CREATED)

        list(write_landed_partitions(conn, [DAY], loaded_at=LOADED))

        rows = conn.execute(
            'SELECT typeof("metadata$createdAt"), "metadata$createdAt" FROM execution_context '
            'ORDER BY "context$processid"'
        ).fetchall()
        assert rows == [("TIMESTAMP", utc) for utc in CREATED_UTC]
        assert conn.execute(
            "SELECT data_type FROM _oe_columns WHERE column_name = 'metadata$createdAt'"
        ).fetchall() == [("TIMESTAMP",)]


def test_a_warehouse_whose_column_is_text_takes_later_timestamps_as_utc_iso_text(tmp_path: Path) -> None:
    """An older warehouse (or a day with one value that is no timestamp) holds the column as
    VARCHAR; a later day's TIMESTAMP batch writes each instant as ISO-8601 UTC text into it."""
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        ensure_raw_tables(conn)
        earlier = date(2025, 3, 3)
        land(conn, earlier, ["2025-03-03T10:00:00.000Z", "yesterday"])
        list(write_landed_partitions(conn, [earlier], loaded_at=LOADED))
        conn.execute("DELETE FROM raw_process_contexts")
        land(conn, DAY, CREATED)

        list(write_landed_partitions(conn, [DAY], loaded_at=LOADED))

        rows = conn.execute(
            'SELECT typeof("metadata$createdAt"), "metadata$createdAt" FROM execution_context '
            'WHERE _oe_partition = ? ORDER BY "context$processid"',
            [DAY],
        ).fetchall()
        assert rows == [
            ("VARCHAR", "2025-03-04T10:00:00.123456Z"),
            ("VARCHAR", "2025-03-04T21:30:00.000Z"),
            ("VARCHAR", "2025-03-04T21:30:00.000Z"),
            ("VARCHAR", "2025-03-05T01:00:00.000Z"),
            ("VARCHAR", "2025-03-04T12:00:00.000Z"),
            ("VARCHAR", "2025-03-04T12:00:00.123456Z"),
        ]
        assert [parse_oe_timestamp(text) for _, text in rows] == CREATED_UTC
