"""OE timestamps (ISO-8601 UTC with milliseconds) <-> naive UTC datetimes for the warehouse."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta


def parse_oe_timestamp(value: object) -> datetime | None:
    """Naive UTC datetime, or None when the value is not an ISO-8601 timestamp."""
    if not isinstance(value, str) or len(value) < 19 or value[10] not in "Tt ":
        return None
    text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def format_oe_timestamp(value: datetime) -> str:
    """The API's own format: `2023-10-16T10:13:42.322Z`."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def day_window(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as aware datetimes, the shape the client's filters take."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def utc_now() -> datetime:
    """Naive UTC now, the warehouse's convention."""
    return datetime.now(UTC).replace(tzinfo=None)
