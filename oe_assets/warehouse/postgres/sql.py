"""SQL for PostgreSQL that reads values exactly as the DuckDB warehouse's SQL does
(:mod:`oe_assets.warehouse.sql`), so both warehouses hold the same rows."""

from __future__ import annotations

from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.sql import ISO_TIMESTAMP, quote_literal

PLAIN_TIMESTAMP_TYPES = frozenset({"timestamp without time zone", "timestamp"})
ZONED_TIMESTAMP_TYPES = frozenset({"timestamp with time zone", "timestamptz"})

# DuckDB's pattern with ASCII digits (PostgreSQL's \d follows the server's locale) and without its
# groups: a match without groups is six times as fast in PostgreSQL, and a text that matches has
# its parts in fixed places, read below by position.
_PG_ISO_TIMESTAMP = ISO_TIMESTAMP.replace(r"\d", "[0-9]").replace("(?:", "(").replace("(", "(?:")
# s: the text; zone: what follows the seconds and their fraction ('', Z, z, +HH, +HHMM, +HH:MM).
# The fraction's digits in microseconds: rpad cuts them to six (truncates, as DuckDB and Python do)
# or pads them with zeros.
_FRACTION = "rpad(substr(s, 21, greatest(0, length(s) - 20 - length(zone))), 6, '0')::int"
_WALL = (
    "TIMESTAMP '0001-01-01' + make_interval(years => substr(s, 1, 4)::int - 1,"
    " months => substr(s, 6, 2)::int - 1, days => substr(s, 9, 2)::int - 1)"
    f" + CAST(substr(s, 12, 8) AS interval) + {_FRACTION} * interval '1 microsecond'"
)
_OFFSET = (
    "CASE WHEN zone IN ('', 'Z', 'z') THEN interval '0' ELSE make_interval(mins =>"
    " CASE left(zone, 1) WHEN '-' THEN -1 ELSE 1 END"
    " * (substr(zone, 2, 2)::int * 60 + CASE WHEN length(zone) > 3 THEN right(zone, 2)::int ELSE 0 END)) END"
)
# Year 0000 is 1 BC, as DuckDB reads it; an impossible month or day (00-99) rolls into another
# month instead of raising, which the check of the month refuses.
_INSTANT = (
    "CASE WHEN date_part('month', p.wall) = p.month"
    " AND p.wall - p.off >= TIMESTAMP '0001-01-01' AND p.wall - p.off < TIMESTAMP '10000-01-01'"
    " THEN p.wall - p.off END"
)


def _instant_of_text(text: str) -> str:
    """:data:`_INSTANT` of ``text``: no row (NULL) unless it matches the pattern; each part
    computed once per row (``OFFSET 0`` keeps the planner from copying an expression into each
    of its uses, and from computing a part of a text that did not match)."""
    matching = (
        f"SELECT s, ltrim(substr(s, 20), '.,0123456789') AS zone FROM (SELECT {text} AS s OFFSET 0) AS t"
        f" WHERE s ~ {quote_literal(_PG_ISO_TIMESTAMP)} OFFSET 0"
    )
    return (
        f"(SELECT {_INSTANT} FROM (SELECT {_WALL} AS wall, {_OFFSET} AS off, substr(s, 6, 2)::int AS month"
        f" FROM ({matching}) AS m OFFSET 0) AS p)"
    )


def utc_timestamp_pg(expr: str, data_type: str) -> str:
    """PostgreSQL SQL for the instant of ``expr`` as a naive UTC ``timestamp``; NULL when it is no
    timestamp: :func:`oe_assets.warehouse.sql.utc_timestamp`, value for value.

    ``data_type`` is the column's type as ``information_schema.columns.data_type`` names it:
    PostgreSQL has no ``typeof``, and the caller knows the type when it builds the SQL. A
    ``timestamp`` is the instant as it is (naive = UTC, the warehouse's convention), a ``timestamp
    with time zone`` its UTC instant, and any other type is read as its text: the same pattern as
    DuckDB's, then the wall time less the offset, kept when it is in years 1-9999.

    Why no cast of the text: ``CAST(x AS timestamp)`` drops the offset, ``timestamptz`` reads a
    text without one in the session's TimeZone, and both raise on a text that is no timestamp,
    which would fail the whole statement. This expression raises for no text and depends on no
    session setting: the date is counted from 0001-01-01 (so ``2025-02-30`` becomes March 2nd and
    is refused because its month changed), never built by a function that raises.

    Where DuckDB's reading differs from :func:`~oe_assets.core.timestamps.parse_timestamp`, this one
    follows DuckDB's (both warehouses must hold the same rows): a wall time in year 0000 is 1 BC, so
    ``0000-12-31T23:00:00-02:00`` is 0001-01-01 01:00 (the parser: None); and texts outside the
    pattern that ``datetime.fromisoformat`` still reads (more than nine fraction digits, seconds in
    the offset, ``00.Z``, ``00 Z``) are NULL.
    """
    kind = data_type.lower()
    if kind in PLAIN_TIMESTAMP_TYPES:
        return f"CAST({expr} AS timestamp)"
    if kind in ZONED_TIMESTAMP_TYPES:
        return f"({expr} AT TIME ZONE 'UTC')"
    return _instant_of_text(f"CAST({expr} AS text)")


def column_types(conn: PgConnection, table: str) -> dict[str, str]:
    """Column -> ``information_schema`` data type of ``table`` in the current schema (empty when
    the table does not exist)."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s",
        [table],
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}
