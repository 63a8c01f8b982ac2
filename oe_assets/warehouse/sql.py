"""Quoting for SQL built from untrusted names (JSON keys become table and column names)."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier: double quotes, inner quotes doubled.

    Any string becomes a valid identifier (quotes, semicolons, ``$``, newlines, non-ASCII);
    only the empty string and strings holding NUL, which DuckDB cannot represent, raise
    ``ValueError`` (the flattener never produces either).
    """
    if not isinstance(name, str):
        raise TypeError(f"identifier must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("an identifier cannot be empty")
    if "\x00" in name:
        raise ValueError(f"an identifier cannot contain NUL: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as a SQL string literal: single quotes, inner quotes doubled.

    Prefer bound parameters (``?``); this is for the few places where DuckDB takes none
    (DDL such as ``ALTER ... USING`` or ``COMMENT ON``).
    """
    if not isinstance(value, str):
        raise TypeError(f"literal must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("a string literal cannot contain NUL")
    return "'" + value.replace("'", "''") + "'"


_PLAIN_TIMESTAMP_TYPES = "'TIMESTAMP', 'TIMESTAMP_NS', 'TIMESTAMP_MS', 'TIMESTAMP_S'"
ISO_TIMESTAMP = (
    r"^(\d{4}-\d{2}-\d{2})[Tt ]((?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)(?:[.,](\d{1,6})\d{0,3})?"
    r"(?:[Zz]|([+-])([01]\d|2[0-3])(?::?([0-5]\d))?)?$"
)
"""The ISO-8601 texts :func:`utc_timestamp` reads, and its six parts (date, time, fraction's first six
digits, offset's sign, hours, minutes); PostgreSQL's reading uses the same pattern."""


def utc_timestamp(expr: str) -> str:
    """SQL for the instant of ``expr`` as a naive UTC ``TIMESTAMP``; NULL when it is no timestamp.

    ``expr`` may be a ``TIMESTAMP`` (naive = UTC, the warehouse's convention), a ``TIMESTAMP
    WITH TIME ZONE``, or text: ISO-8601 as :func:`oe_assets.core.timestamps.parse_timestamp` reads it
    (``T`` or a space, 0-9 fraction digits truncated to microseconds, ``Z``, ``+HH:MM``,
    ``+HHMM``, ``+HH`` or nothing = UTC). Why not ``TRY_CAST(x AS TIMESTAMP)``: on text it drops
    the offset (``01:30+02:00`` becomes 01:30, not 23:30 the day before); and ``TIMESTAMPTZ``
    reads text without an offset in the session's TimeZone. This expression depends on neither.
    ``expr`` is repeated in the SQL, so pass a column reference, not a costly expression.
    """
    text = f"CAST({expr} AS VARCHAR)"
    parts = f"regexp_extract({text}, {quote_literal(ISO_TIMESTAMP)}, ['d', 't', 'f', 's', 'oh', 'om'])"
    local = "TRY_CAST(m.d || ' ' || m.t || CASE WHEN m.f = '' THEN '' ELSE '.' || m.f END AS TIMESTAMP)"
    offset = (
        "CASE WHEN m.s = '' THEN 0 ELSE (CASE WHEN m.s = '-' THEN -1 ELSE 1 END)"
        " * (TRY_CAST(m.oh AS INTEGER) * 60 + coalesce(TRY_CAST(m.om AS INTEGER), 0)) END"
    )
    instants = f"list_transform([{parts}], lambda m: {local} - to_minutes({offset}))"
    from_text = f"list_filter({instants}, lambda t: year(t) BETWEEN 1 AND 9999)[1]"
    return (
        f"(CASE WHEN typeof({expr}) IN ({_PLAIN_TIMESTAMP_TYPES}) THEN TRY_CAST({expr} AS TIMESTAMP)"
        f" WHEN typeof({expr}) = 'TIMESTAMP WITH TIME ZONE' THEN timezone('UTC', TRY_CAST({expr} AS TIMESTAMPTZ))"
        f" ELSE {from_text} END)"
    )
