"""Streaming helpers the writers share: rows in batches, a table joined with its related rows, times.

Why: an export of a large warehouse holds millions of relations; walking two tables sorted on
the same key keeps memory at one batch instead of a dictionary of every event's objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pyarrow as pa

from oe_assets.core.timestamps import format_oe_timestamp

EPOCH = "1970-01-01T00:00:00Z"  # OCEL 2.0's time for a value with no known change time
BATCH_ROWS = 10_000


def iter_rows(table: pa.Table, sort_by: str | None = None) -> Iterator[dict[str, Any]]:
    """The table's rows as dicts, sorted by ``sort_by`` when given, one batch in memory at a time."""
    if sort_by is not None:
        table = table.sort_by(sort_by)
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        yield from batch.to_pylist()


def with_related(
    main: pa.Table, key: str, related: pa.Table, related_key: str
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each row of ``main`` with the rows of ``related`` whose ``related_key`` equals its ``key``."""
    others = iter_rows(related, related_key)
    pending = next(others, None)
    for row in iter_rows(main, key):
        group = []
        while pending is not None and pending[related_key] < row[key]:
            pending = next(others, None)  # a relation to no row (cannot happen; never stalls)
        while pending is not None and pending[related_key] == row[key]:
            group.append(pending)
            pending = next(others, None)
        yield row, group


def iso_utc(value: datetime | None) -> str:
    """A naive UTC time as OCEL/XES text (``…Z``); no time is OCEL's epoch, "always"."""
    return EPOCH if value is None else format_oe_timestamp(value)


def typed_value(value: str, kind: str) -> Any:
    """A text value back as the JSON type its OCEL type says (text when it does not parse)."""
    try:
        if kind == "float":
            return float(value)
        if kind == "integer":
            return int(value)
    except ValueError:
        return value
    if kind == "boolean":
        return value.lower() == "true"
    return value
