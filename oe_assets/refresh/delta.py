"""The Celonis extractor's delta filter (`status = finished`, `updatedSince = <max updatedAt>`) as a cursor.

The cursor lives in the sensor's own state, never in the warehouse (DuckDB locks the file while a run
writes). `updatedSince` is inclusive, so the ids already seen at the cursor's timestamp are remembered
and skipped: contexts sharing one `updatedAt` across a page or tick boundary are neither lost nor
requested twice.

What a hostile or broken API must not do to the sensor:

* blind it: one context whose `updatedAt` lies far in the future (2999-01-01) would move the cursor
  there and no later change would ever be seen. Values beyond now + a tolerance do not move the
  cursor; the context is still refreshed and reported, once per version.
* block it: an element of a page that is no usable record (NaN, a lone surrogate, nesting too deep,
  a number) is handed out by the client as a rejected record. It is reported, its day is refreshed
  when its creation time can still be read (the raw layer then quarantines it with its text), and the
  rest of the tick goes on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from oe_assets.client import OeClient, Page, RejectedRecord
from oe_assets.core.timestamps import parse_oe_timestamp

FINISHED = "finished"
FUTURE_TOLERANCE = timedelta(hours=1)
"""How far an `updatedAt` may lie ahead of the sensor's clock before a tick reports it (clock skew is
normal; a context from the year 2999 is not)."""


@dataclass
class TemplateCursor:
    since: str | None = None  # max metadata.updatedAt seen, never beyond the sensor's clock (API format)
    seen_at_since: list[str] = field(default_factory=list)  # process ids already seen at exactly `since`
    ahead: dict[str, str] = field(default_factory=dict)
    """process id -> updatedAt of contexts updated later than the sensor's clock: read again at every
    tick until the cursor passes them, refreshed only once per version"""
    rejected: list[str] = field(default_factory=list)
    """keys of rejected elements already reported (the latest :data:`REJECTED_MEMORY`)"""


REJECTED_MEMORY = 500


@dataclass
class SensorCursor:
    templates: dict[str, TemplateCursor] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    """partition key -> change fingerprint not yet requested (days beyond the last partition wait here)"""
    catalog_fingerprint: str | None = None

    def to_json(self) -> str:
        templates = {k: _template_json(v) for k, v in sorted(self.templates.items())}
        return json.dumps(
            {
                "v": 1,
                "templates": templates,
                "pending": dict(sorted(self.pending.items())),
                "catalog": self.catalog_fingerprint,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> SensorCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            templates={
                k: TemplateCursor(
                    v.get("since"),
                    list(v.get("seen", [])),
                    dict(v.get("ahead", {})),
                    list(v.get("rejected", [])),
                )
                for k, v in data.get("templates", {}).items()
            },
            pending=dict(data.get("pending", {})),
            catalog_fingerprint=data.get("catalog"),
        )


def _template_json(cursor: TemplateCursor) -> dict[str, Any]:
    data: dict[str, Any] = {"since": cursor.since, "seen": cursor.seen_at_since}
    if cursor.ahead:
        data["ahead"] = dict(sorted(cursor.ahead.items()))
    if cursor.rejected:
        data["rejected"] = cursor.rejected
    return data


@dataclass
class ChangedContext:
    process_id: str
    updated_at: str
    partition: date


@dataclass
class PollResult:
    changed: list[ChangedContext]
    unplaceable: list[str]  # process ids without a usable createdAt
    rejected: list[RejectedRecord] = field(default_factory=list)  # page elements that are no records
    future: list[ChangedContext] = field(default_factory=list)  # updatedAt beyond now + tolerance
    requests: int = 0


@dataclass
class _Poll:
    """One template's read: the cursor it started from and where it ends.

    The cursor never moves beyond ``now`` (the sensor's clock): a context updated "later" is
    remembered in ``ahead`` and read again at every tick until the cursor passes it, so one
    far-future value cannot make the cursor skip every real change before it.
    """

    state: TemplateCursor
    now: datetime
    max_text: str | None = None
    max_ts: datetime | None = None
    at_max: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.max_text, self.max_ts = self.state.since, parse_oe_timestamp(self.state.since)
        self.at_max = set(self.state.seen_at_since) if self.state.since else set()

    def at_boundary(self, pid: str, updated_text: str) -> bool:
        """Handled at the previous tick's boundary (``updatedSince`` is inclusive)."""
        return updated_text == self.state.since and pid in self.state.seen_at_since

    def refreshed_ahead(self, pid: str, updated_text: str) -> bool:
        """This version was refreshed by an earlier tick while it lay ahead of the clock."""
        return self.state.ahead.get(pid) == updated_text

    def advance(self, pid: str, updated_text: str, updated: datetime) -> None:
        if updated > self.now:
            self.state.ahead[pid] = updated_text
        elif self.max_ts is None or updated > self.max_ts:
            self.max_ts, self.max_text, self.at_max = updated, updated_text, {pid}
        elif updated == self.max_ts:
            self.at_max.add(pid)

    def first_report(self, key: str) -> bool:
        """True the first time a rejected element is seen (remembered among the latest few hundred)."""
        if key in self.state.rejected:
            return False
        self.state.rejected = [*self.state.rejected, key][-REJECTED_MEMORY:]
        return True

    def close(self) -> None:
        if self.max_text is not None:
            self.state.since, self.state.seen_at_since = self.max_text, sorted(self.at_max)
        cursor = self.max_ts
        self.state.ahead = {
            pid: text
            for pid, text in self.state.ahead.items()
            if cursor is None or (parse_oe_timestamp(text) or cursor) > cursor
        }


def poll_finished_changes(
    client: OeClient,
    template_ids: Iterable[str],
    cursor: SensorCursor,
    *,
    default_since: datetime,
    now: datetime | None = None,
    tolerance: timedelta = FUTURE_TOLERANCE,
) -> PollResult:
    """Finished contexts updated since each template's cursor; advances `cursor` in place.

    ``now`` (default: the wall clock) + ``tolerance`` is the horizon beyond which an `updatedAt`
    does not move the cursor.
    """
    result = PollResult(changed=[], unplaceable=[])
    changed: dict[str, ChangedContext] = {}
    clock = _naive_utc(now or datetime.now(UTC))
    before = client.stats.requests
    for template_id in template_ids:
        state = cursor.templates.setdefault(template_id, TemplateCursor())
        poll = _Poll(state, clock)
        since = parse_oe_timestamp(state.since) or _naive_utc(default_since)
        for page in client.iter_process_context_pages(
            template_id, updated_since=since, status=FINISHED, order_by="updated"
        ):
            _take_page(page, poll, changed, result, clock + tolerance)
        poll.close()
    result.changed = sorted(changed.values(), key=lambda c: c.process_id)
    result.requests = client.stats.requests - before
    return result


def _take_page(
    page: Page, poll: _Poll, changed: dict[str, ChangedContext], result: PollResult, horizon: datetime
) -> None:
    for doc in page:
        pid, updated_text, created = _keys(doc)
        _take(pid, updated_text, created, poll, changed, result, horizon)
    for rejected in page.rejected:
        pid = rejected.process_id or _anonymous_key(rejected)
        if poll.first_report(f"{pid}@{rejected.updated_at}"):
            result.rejected.append(rejected)
            _take(
                pid,
                rejected.updated_at,
                parse_oe_timestamp(rejected.created_at),
                poll,
                changed,
                result,
                horizon,
            )


def _take(
    pid: str | None,
    updated_text: str | None,
    created: datetime | None,
    poll: _Poll,
    changed: dict[str, ChangedContext],
    result: PollResult,
    horizon: datetime,
) -> None:
    """One finished context: its day to refresh (once per version), and the cursor moved."""
    updated = parse_oe_timestamp(updated_text)
    if pid is None or updated_text is None or updated is None or poll.at_boundary(pid, updated_text):
        return
    if poll.refreshed_ahead(pid, updated_text):
        poll.advance(pid, updated_text, updated)  # the clock may have caught up: it moves the cursor now
        return
    if created is None:
        result.unplaceable.append(pid)
    else:
        change = ChangedContext(pid, updated_text, created.date())
        changed[pid] = change
        if updated > horizon:
            result.future.append(change)
    poll.advance(pid, updated_text, updated)


def _keys(doc: object) -> tuple[str | None, str | None, datetime | None]:
    if not isinstance(doc, dict):
        return None, None, None
    context, metadata = doc.get("context"), doc.get("metadata")
    pid = context.get("processid") if isinstance(context, dict) else None
    if not isinstance(metadata, dict):
        return pid if isinstance(pid, str) else None, None, None
    updated = metadata.get("updatedAt")
    return (
        pid if isinstance(pid, str) else None,
        updated if isinstance(updated, str) else None,
        parse_oe_timestamp(metadata.get("createdAt")),
    )


def _anonymous_key(rejected: RejectedRecord) -> str:
    """A stable key for a rejected element without a readable process id: its text's digest."""
    return "text:" + hashlib.blake2b(rejected.text.encode(), digest_size=12).hexdigest()


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def fingerprint(changes: Iterable[ChangedContext]) -> str:
    digest = hashlib.sha256()
    for c in sorted(changes, key=lambda c: (c.process_id, c.updated_at)):
        digest.update(f"{c.process_id}@{c.updated_at}\n".encode())
    return digest.hexdigest()[:16]


def plan_partitions(
    changed: Iterable[ChangedContext],
    cursor: SensorCursor,
    *,
    max_partitions: int,
    last_partition: str | None = None,
) -> list[tuple[str, str]]:
    """(partition key, run key) to request now; the rest wait in `cursor.pending` for a later tick.

    Days after ``last_partition`` (contexts created in the future, by the sensor's clock) wait
    until their partition exists.
    """
    by_partition: dict[str, list[ChangedContext]] = {}
    for change in changed:
        by_partition.setdefault(change.partition.isoformat(), []).append(change)
    for key, changes in by_partition.items():
        previous = cursor.pending.get(key)
        new = fingerprint(changes)
        cursor.pending[key] = (
            new if previous is None else hashlib.sha256(f"{previous}{new}".encode()).hexdigest()[:16]
        )
    due = [key for key in sorted(cursor.pending) if last_partition is None or key <= last_partition]
    return [(key, f"{key}:{cursor.pending.pop(key)}") for key in due[:max_partitions]]
