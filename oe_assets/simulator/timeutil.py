"""Timestamp helpers shared by the simulator: OE's ISO-8601 strings <-> integer milliseconds.

Generated data keeps time as integer milliseconds since the Unix epoch (cheap to compare and to
format); the wire format is OE's ``2023-10-16T10:13:42.322Z``. Sorting and filtering use integer
microseconds so that documents injected with other precisions or offsets still order correctly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oe_assets.core.timestamps import parse_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS_PER_DAY = 86_400_000
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
# Sort key of a document whose timestamp is missing or unreadable: before every real time.
MISSING_KEY = -(2**62)

_day_prefix: dict[int, str] = {}


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of a millisecond count."""
    return EPOCH + timedelta(milliseconds=ms)


def _prefix(day: int) -> str:
    prefix = _day_prefix.get(day)
    if prefix is None:
        prefix = (EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
        if len(_day_prefix) < 100_000:
            _day_prefix[day] = prefix
    return prefix


def iso_ms(ms: int) -> str:
    """OE's timestamp format with milliseconds, e.g. ``2023-10-16T10:13:42.322Z`` (fast path)."""
    day, rest = divmod(ms, MS_PER_DAY)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def iso_s(ms: int) -> str:
    """Whole-second format as cloud functions write it, e.g. ``2023-10-16T10:13:55Z`` (floors)."""
    day, rest = divmod(ms, MS_PER_DAY)
    seconds = rest // 1000
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}Z"


def sort_key(value: object) -> int:
    """Microseconds since the epoch of a document timestamp; MISSING_KEY when absent or bad."""
    moment = parse_timestamp(value)
    return MISSING_KEY if moment is None else to_us(moment)


def utc_now_seconds() -> datetime:
    """The current UTC time truncated to the second (the World's default clock start)."""
    return datetime.now(UTC).replace(microsecond=0)
