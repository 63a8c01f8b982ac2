"""The seed's delta filter (`status = 'finished' AND updatedSince = <max updatedAt>`) as a cursor.

The cursor lives in the sensor's own state, never in the warehouse (DuckDB locks the file while a run
writes). `updatedSince` is inclusive, so the ids already seen at the cursor's timestamp are remembered
and skipped: contexts sharing one `updatedAt` across a page or tick boundary are neither lost nor
requested twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from oe_assets.client import OeClient
from oe_assets.timestamps import format_oe_timestamp, parse_oe_timestamp

FINISHED = "finished"


@dataclass
class TemplateCursor:
    since: str | None = None  # max metadata.updatedAt seen (API format)
    seen_at_since: list[str] = field(default_factory=list)  # process ids already seen at exactly `since`


@dataclass
class SensorCursor:
    templates: dict[str, TemplateCursor] = field(default_factory=dict)
    pending: dict[str, str] = field(
        default_factory=dict
    )  # partition key -> change fingerprint not yet requested
    catalog_fingerprint: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "templates": {
                    k: {"since": v.since, "seen": v.seen_at_since} for k, v in sorted(self.templates.items())
                },
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
                k: TemplateCursor(v.get("since"), list(v.get("seen", [])))
                for k, v in data.get("templates", {}).items()
            },
            pending=dict(data.get("pending", {})),
            catalog_fingerprint=data.get("catalog"),
        )


@dataclass
class ChangedContext:
    process_id: str
    updated_at: str
    partition: date


@dataclass
class PollResult:
    changed: list[ChangedContext]
    unplaceable: list[str]  # process ids without a usable createdAt
    requests: int


def poll_finished_changes(
    client: OeClient, template_ids: Iterable[str], cursor: SensorCursor, *, default_since: datetime
) -> PollResult:
    """Finished contexts updated since each template's cursor; advances `cursor` in place."""
    changed: dict[str, ChangedContext] = {}
    unplaceable: list[str] = []
    before = client.stats.requests
    for template_id in template_ids:
        state = cursor.templates.setdefault(template_id, TemplateCursor())
        since_text = state.since or format_oe_timestamp(default_since)
        since = parse_oe_timestamp(since_text) or default_since
        seen = set(state.seen_at_since) if state.since else set()
        max_text, max_ts, at_max = state.since, parse_oe_timestamp(state.since), set(seen)
        for page in client.iter_process_context_pages(
            template_id, updated_since=since, status=FINISHED, order_by="updated"
        ):
            for doc in page:
                pid, updated_text, created = _keys(doc)
                updated = parse_oe_timestamp(updated_text)
                if pid is None or updated is None:
                    continue
                if updated_text == state.since and pid in seen:
                    continue  # already handled at the previous tick's boundary
                if created is None:
                    unplaceable.append(pid)
                else:
                    changed[pid] = ChangedContext(pid, str(updated_text), created.date())
                if max_ts is None or updated > max_ts:
                    max_ts, max_text, at_max = updated, updated_text, {pid}
                elif updated == max_ts:
                    at_max.add(pid)
        if max_text is not None:
            state.since, state.seen_at_since = max_text, sorted(at_max)
    return PollResult(
        sorted(changed.values(), key=lambda c: c.process_id), unplaceable, client.stats.requests - before
    )


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


def fingerprint(changes: Iterable[ChangedContext]) -> str:
    digest = hashlib.sha256()
    for c in sorted(changes, key=lambda c: (c.process_id, c.updated_at)):
        digest.update(f"{c.process_id}@{c.updated_at}\n".encode())
    return digest.hexdigest()[:16]


def plan_partitions(
    changed: Iterable[ChangedContext], cursor: SensorCursor, *, max_partitions: int
) -> list[tuple[str, str]]:
    """(partition key, run key) to request now; the rest wait in `cursor.pending` for the next tick."""
    by_partition: dict[str, list[ChangedContext]] = {}
    for change in changed:
        by_partition.setdefault(change.partition.isoformat(), []).append(change)
    for key, changes in by_partition.items():
        previous = cursor.pending.get(key)
        new = fingerprint(changes)
        cursor.pending[key] = (
            new if previous is None else hashlib.sha256(f"{previous}{new}".encode()).hexdigest()[:16]
        )
    ready = sorted(cursor.pending)[:max_partitions]
    planned = [(key, f"{key}:{cursor.pending.pop(key)}") for key in ready]
    return planned
