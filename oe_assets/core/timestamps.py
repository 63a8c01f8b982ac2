"""The project's one timestamp parser, and OE's format <-> naive UTC datetimes for the warehouse.

OE writes ``2023-10-16T10:13:42.322Z``; documents written by other tools (cloud functions, Go
services, people) may carry 0-9 fraction digits and any UTC offset. Every module reads
timestamps through :func:`parse_timestamp` (aware UTC) or :func:`parse_oe_timestamp` (the
same instant, naive UTC: the warehouse's convention), so that an offset is never dropped and
every part of the project agrees on what is a timestamp.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

MAX_TIMESTAMP_LENGTH = 64
"""Longer texts are no timestamp (and are not worth a parse attempt)."""
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_SHAPES = frozenset({"--T::", "-- ::", "--t::"})
"""``text[4:17:3]`` of ``YYYY-MM-DDTHH:MM:SS...``: the separators, checked in one slice (a
shorter text cannot match, and ``fromisoformat`` checks the digits)."""


def parse_timestamp(value: object) -> datetime | None:
    """An AWARE UTC datetime from an ISO-8601 text, or None when ``value`` is not one.

    Accepted: ``YYYY-MM-DD``, ``T`` or a space, ``HH:MM:SS``, a fraction of 0-9 digits (digits
    beyond microseconds are truncated, not rounded), then ``Z``, ``+HH:MM``, ``+HHMM``, ``+HH``
    (or ``-``), or nothing (= UTC); ``t`` and ``z`` in lower case too, as RFC 3339 allows. The
    Go zero time ``0001-01-01T00:00:00Z`` is a timestamp. What ``datetime.fromisoformat`` reads
    beyond that in the same shape (a comma before the fraction, more fraction digits, seconds in
    the offset) is read too. None for anything else: not a str, empty, longer than 64
    characters, a date alone, no seconds, surrounding blanks, impossible dates or times, or an
    instant outside Python's years 1-9999 once converted to UTC (``0001-01-01T00:00:00+01:00``).

    Why this shape: it is called once per record on the API client's hot path, so the common
    value costs one slice check and one ``datetime.fromisoformat`` (which, since Python 3.11,
    reads ``Z``, every offset form above and long fractions itself).
    """
    if not isinstance(value, str) or value[4:17:3] not in _SHAPES or len(value) > MAX_TIMESTAMP_LENGTH:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        if value[-1] != "z":
            return None
        try:
            parsed = datetime.fromisoformat(value[:-1] + "Z")
        except ValueError:
            return None
    zone = parsed.tzinfo
    if zone is UTC:
        return parsed
    if zone is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # beyond year 1 or 9999 once in UTC
        return None


def parse_oe_timestamp(value: object) -> datetime | None:
    """The instant of :func:`parse_timestamp` as a NAIVE UTC datetime (the warehouse's convention).

    Shifted from the epoch rather than ``replace(tzinfo=None)``, which costs eight times as much.
    """
    parsed = parse_timestamp(value)
    return None if parsed is None else _NAIVE_EPOCH + (parsed - _UTC_EPOCH)


def format_oe_timestamp(value: datetime) -> str:
    """The API's own format, ``2023-10-16T10:13:42.322Z`` (microseconds when the value has them);
    a naive value is taken as UTC."""
    v = value.astimezone(UTC) if value.tzinfo is not None else value
    base = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond % 1000 == 0:
        return f"{base}.{v.microsecond // 1000:03d}Z"
    return f"{base}.{v.microsecond:06d}Z"


def day_window(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as aware datetimes, the shape the client's filters take."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def utc_now() -> datetime:
    """Naive UTC now, the warehouse's convention."""
    return datetime.now(UTC).replace(tzinfo=None)
