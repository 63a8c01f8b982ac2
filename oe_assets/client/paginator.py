"""Keyset paging over process contexts: the cursor, ties and de-duplication, in one place.

The API pages by number over a collection that changes while it is read (records created,
updated, deleted), which can skip or repeat records. So the API is asked for ``sort=<field>``
ascending and ``<field>Since`` = the largest sort value seen so far, from page 1 again. The
filter is inclusive: records that share the cursor value are read again and de-duplicated by
``context.processid``: a record already handed out with the same ``metadata.updatedAt`` is
skipped, one with another ``updatedAt`` (a newer version) is handed out again; consumers keep
the latest. A full page whose records all share the cursor value (more ties than a page) is read
again with a doubled page size up to ``max_page_size``; beyond that the page number advances for
that cursor value. Paging stops at a page shorter than requested.

``created_before`` is an exclusive upper bound on ``metadata.createdAt`` (the API has none):
ordered by creation, paging stops at the first record at or after it; ordered by update, such
records are not handed out. Records whose sort field is missing or unparsable are handed out (the
raw layer quarantines them) but never become the cursor; so are a page's rejected elements
(:class:`~oe_assets.client.pages.RejectedRecord`), each once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from oe_assets.client.errors import OeBadResponseError
from oe_assets.client.pages import Page, RejectedRecord
from oe_assets.core.timestamps import format_oe_timestamp, parse_timestamp

OrderBy = Literal["created", "updated"]

PROCESS_ID_PATH = ("context", "processid")
CREATED_PATH = ("metadata", "createdAt")
UPDATED_PATH = ("metadata", "updatedAt")


@dataclass(frozen=True)
class QueryNames:
    """Query parameter and header names; the sort values double as the records' JSON paths."""

    page_number: str = "pageNumber"
    page_size: str = "pageSize"
    created_since: str = "createdSince"
    updated_since: str = "updatedSince"
    status: str = "status"
    sort: str = "sort"
    sort_created: str = "metadata.createdAt"
    sort_updated: str = "metadata.updatedAt"
    total_count_header: str = "X-Total-Count"


@dataclass(frozen=True)
class ContextQuery:
    """What to read: the API's filters, the order, and the bound the API lacks."""

    created_since: datetime | None = None
    created_before: datetime | None = None
    updated_since: datetime | None = None
    status: str | None = None
    order_by: OrderBy = "created"

    def __post_init__(self) -> None:
        if self.order_by not in ("created", "updated"):
            raise ValueError(f"order_by must be 'created' or 'updated', got {self.order_by!r}")
        for name in ("created_since", "created_before", "updated_since"):
            object.__setattr__(self, name, _utc(getattr(self, name), name))

    @property
    def empty(self) -> bool:
        since, before = self.created_since, self.created_before
        return since is not None and before is not None and since >= before


class KeysetPaginator:
    """Which page to ask for next, and which of a page's records to hand out."""

    def __init__(self, query: ContextQuery, names: QueryNames, *, page_size: int, max_page_size: int) -> None:
        self.query = query
        self._names = names
        by_created = query.order_by == "created"
        self._sort_value = names.sort_created if by_created else names.sort_updated
        self._since_name = names.created_since if by_created else names.updated_since
        self._sort_path = tuple(self._sort_value.split("."))
        self._cursor = query.created_since if by_created else query.updated_since
        self._fixed = self._fixed_filters()
        self._base_size = page_size
        self._max_size = max_page_size
        self.page_size = page_size
        self.page_number = 1
        self._done = query.empty
        # processid (or a content hash) -> (sort instant, updatedAt) of the version handed out; kept
        # only for records the next request can return again (sort value >= cursor, or unknown).
        self._seen: dict[object, tuple[datetime | None, object]] = {}
        self._rejected_seen: set[bytes] = set()

    def _fixed_filters(self) -> dict[str, str]:
        query, names = self.query, self._names
        fixed: dict[str, str] = {}
        other = query.updated_since if query.order_by == "created" else query.created_since
        other_name = names.updated_since if query.order_by == "created" else names.created_since
        if other is not None:
            fixed[other_name] = format_oe_timestamp(other)
        if query.status is not None:
            fixed[names.status] = query.status
        return fixed

    def next_request(self) -> dict[str, str | int] | None:
        """The query parameters of the next page; None once everything was read."""
        if self._done:
            return None
        params: dict[str, str | int] = dict(self._fixed)
        params[self._names.sort] = self._sort_value
        if self._cursor is not None:
            params[self._since_name] = format_oe_timestamp(self._cursor)
        params[self._names.page_number] = self.page_number
        params[self._names.page_size] = self.page_size
        return params

    def take(self, page: Page, where: str) -> Page:
        """The page's records and rejected elements not handed out before; moves the cursor."""
        instants = _instants(page, self._sort_path)
        end = len(page)
        bound = self.query.created_before
        if self.query.order_by == "created" and bound is not None:
            end = _index_at_or_after(instants, bound)
        known = [instant for instant in instants[:end] if instant is not None]
        self._check_since_honoured(known, where)
        max_sort = max(known, default=None)
        cursor = self._cursor
        next_cursor = max_sort if max_sort is not None and (cursor is None or max_sort > cursor) else None
        positions = self._in_bound(page, end)
        kept = _unseen(page, instants, positions, self._seen, keep_from=next_cursor)
        fresh = page.select(kept)
        fresh.rejected = self._new_rejected(page.rejected)
        received = len(page) + len(page.rejected)
        self._advance(next_cursor, stopped=end < len(page) or received < self.page_size)
        return fresh

    def _check_since_honoured(self, known: list[datetime], where: str) -> None:
        cursor = self._cursor
        if cursor is not None and known and min(known) < cursor:
            raise OeBadResponseError(
                f"OE API answered {where} (page {self.page_number}) with a record whose "
                f"{self._sort_value} lies before the {self._since_name} filter it was sent: the API "
                f"does not honour {self._since_name}={format_oe_timestamp(cursor)}; check OE_API_URL "
                "and the query parameter settings.",
                path=where,
                page=self.page_number,
            )

    def _in_bound(self, page: Page, end: int) -> list[int]:
        """Positions before ``end`` whose creation lies before ``created_before`` (or is unknown)."""
        bound = self.query.created_before
        if self.query.order_by == "created" or bound is None:
            return list(range(end))
        created = _instants(page, CREATED_PATH)
        return [i for i in range(end) if created[i] is None or created[i] < bound]  # type: ignore[operator]

    def _new_rejected(self, rejected: list[RejectedRecord]) -> list[RejectedRecord]:
        """Rejected elements not handed out before, and not created after ``created_before``."""
        bound = self.query.created_before
        out = []
        for record in rejected:
            created = parse_timestamp(record.created_at)
            if bound is not None and created is not None and created >= bound:
                continue
            digest = hashlib.blake2b(record.text.encode(), digest_size=16).digest()
            if digest not in self._rejected_seen:
                self._rejected_seen.add(digest)
                out.append(record)
        return out

    def _advance(self, next_cursor: datetime | None, *, stopped: bool) -> None:
        if stopped:
            self._done = True
        elif next_cursor is not None:
            self._cursor = next_cursor
            self.page_number = 1
            self.page_size = self._base_size
            self._seen = {k: v for k, v in self._seen.items() if v[0] is None or v[0] >= next_cursor}
        elif self.page_size < self._max_size:
            # A full page without progress: every record shares the cursor value. Read the
            # tie group again from its start with a bigger page (robust against deletions).
            self.page_size = min(self._max_size, self.page_size * 2)
            self.page_number = 1
        else:
            self.page_number += 1


# -- record helpers -------------------------------------------------------------------------------


def dig(record: Mapping[str, Any], path: tuple[str, ...]) -> object:
    value: object = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _instants(records: list[dict[str, Any]], path: tuple[str, ...]) -> list[datetime | None]:
    """Each record's timestamp at ``path``, in one pass over the page."""
    if len(path) == 2:  # the usual "metadata.<field>": spare a dig call per record
        outer, inner = path
        values = [m.get(inner) if isinstance(m := r.get(outer), dict) else None for r in records]
    else:
        values = [dig(r, path) for r in records]
    return [parse_timestamp(value) for value in values]


def _index_at_or_after(instants: list[datetime | None], bound: datetime) -> int:
    """Position of the first known instant at or after ``bound``; ``len(instants)`` if none is."""
    known = [instant for instant in instants if instant is not None]
    if not known or max(known) < bound:  # the usual page: nothing at the bound, no scan
        return len(instants)
    return next(i for i, instant in enumerate(instants) if instant is not None and instant >= bound)


def _unseen(
    records: list[dict[str, Any]],
    instants: list[datetime | None],
    positions: list[int],
    seen: dict[object, tuple[datetime | None, object]],
    *,
    keep_from: datetime | None,
) -> list[int]:
    """The ``positions`` whose record was not handed out before in the same version; updates ``seen``.

    ``seen`` maps a record key to the (sort instant, version) handed out. A record can only be a
    repeat if its key is in ``seen`` or occurs twice among ``positions``, so only those records
    are compared; the others are handed out as they are. ``seen`` gets the handed-out records the
    next request can return again: sort instant at or after ``keep_from`` (the next cursor) or
    unknown; all of them when ``keep_from`` is None (the cursor stays).
    """
    keys = _record_keys(records, positions)
    if len(set(keys)) < len(keys):  # a key twice in one page: compare record by record
        return _unseen_one_by_one(records, instants, positions, keys, seen)
    kept = []
    for i, key in zip(positions, keys, strict=True):
        if key in seen:
            version = _version(dig(records[i], UPDATED_PATH))
            if seen[key][1] == version:
                continue
            seen[key] = (instants[i], version)  # a newer version: handed out again
        elif keep_from is None or instants[i] is None or instants[i] >= keep_from:  # type: ignore[operator]
            seen[key] = (instants[i], _version(dig(records[i], UPDATED_PATH)))
        kept.append(i)
    return kept


def _unseen_one_by_one(
    records: list[dict[str, Any]],
    instants: list[datetime | None],
    positions: list[int],
    keys: list[object],
    seen: dict[object, tuple[datetime | None, object]],
) -> list[int]:
    kept = []
    for i, key in zip(positions, keys, strict=True):
        version = _version(dig(records[i], UPDATED_PATH))
        previous = seen.get(key)
        if previous is not None and previous[1] == version:
            continue
        seen[key] = (instants[i], version)
        kept.append(i)
    return kept


def _record_keys(records: list[dict[str, Any]], positions: list[int]) -> list[object]:
    """:func:`record_key` of the records at ``positions``, the processid lookup done in one pass."""
    outer, inner = PROCESS_ID_PATH
    pids = [c.get(inner) if isinstance(c := records[i].get(outer), dict) else None for i in positions]
    return [
        pid if isinstance(pid, str) and pid else record_key(records[i])
        for pid, i in zip(pids, positions, strict=True)
    ]


def record_key(record: Mapping[str, Any]) -> object:
    """``context.processid``, or a hash of the content for a record without one."""
    pid = dig(record, PROCESS_ID_PATH)
    if isinstance(pid, str) and pid:
        return pid
    digest = hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
    return ("content", digest)


def _version(value: object) -> object:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _utc(value: datetime | None, name: str) -> datetime | None:
    """Naive datetimes are UTC (the warehouse convention); aware ones are converted to UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
