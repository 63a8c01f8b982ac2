"""The simulated OE state and its clock: runs progress, finish and appear as time advances.

All state sits behind one lock. Each digital process keeps two sorted indexes of its contexts,
``(createdAt, processid, seq)`` and ``(updatedAt, processid, seq)``, so a page is a bisect plus a
slice, and every document is kept as its serialized JSON bytes (a page body is a join).
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from oe_assets.simulator.generator import (
    Catalog,
    RunPlan,
    build_catalog,
    make_run,
    runs_for_day,
)
from oe_assets.simulator.timeutil import (
    MISSING_KEY,
    MS_PER_DAY,
    from_ms,
    iso_ms,
    sort_key,
    to_ms,
    to_us,
    utc_now_seconds,
)

SORT_FIELDS = ("createdAt", "updatedAt")
_CLOCK_TICK_SECONDS = 0.25


@dataclass(frozen=True)
class AdvanceReport:
    """What one clock advance changed.

    ``created``: process ids of contexts that appeared. ``updated``: ids of existing contexts whose
    document changed (new event keys, updatedAt, status). ``finished``: ids (created or updated in
    this advance) that left ``running`` during it (finished, failed, stopped or paused).
    """

    started_at: str
    now: str
    seconds: float
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    finished: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "startedAt": self.started_at,
            "now": self.now,
            "seconds": self.seconds,
            "created": list(self.created),
            "updated": list(self.updated),
            "finished": list(self.finished),
        }


@dataclass(slots=True)
class _Entry:
    key: str
    template_id: str
    seq: int
    created_key: int
    updated_key: int
    pid_key: str
    status: object
    raw: bytes

    def by_created(self) -> tuple[int, str, int]:
        return (self.created_key, self.pid_key, self.seq)

    def by_updated(self) -> tuple[int, str, int]:
        return (self.updated_key, self.pid_key, self.seq)


@dataclass(slots=True)
class _Index:
    created: list[tuple[int, str, int]] = field(default_factory=list)
    updated: list[tuple[int, str, int]] = field(default_factory=list)
    by_seq: dict[int, _Entry] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContextPage:
    """One page of process contexts: the total that matched and the page's documents as JSON."""

    total: int
    items: list[bytes]

    def body(self) -> bytes:
        """The page as a JSON array (what the API returns)."""
        return b"[" + b",".join(self.items) + b"]"


def _since_key(value: datetime | str | None, name: str) -> int | None:
    """A filter bound as a sort key (microseconds since the epoch); None for no filter."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_us(value)
    key = sort_key(value)
    if key == MISSING_KEY:
        raise ValueError(f"{name} is not an ISO-8601 timestamp: {value!r}")
    return key


def _remove(sorted_list: list[tuple[int, str, int]], item: tuple[int, str, int]) -> None:
    i = bisect.bisect_left(sorted_list, item)
    if i < len(sorted_list) and sorted_list[i] == item:
        del sorted_list[i]


class World:
    """Accounts, digital processes and process contexts at a simulated moment.

    The same ``seed`` and ``now`` give identical data. Contexts are created over
    ``[now - days, now]`` (``now`` defaults to the current second), ``contexts_per_day`` a day
    (:class:`~oe_assets.simulator.SimulatorServer` holds the defaults a user starts with);
    :meth:`advance` moves the clock and lets runs progress. With
    ``clock_rate > 0`` (simulated seconds per real second), :meth:`start_clock` advances it in a
    background thread.
    """

    def __init__(
        self,
        seed: int,
        days: int,
        contexts_per_day: int,
        now: datetime | None = None,
        *,
        clock_rate: float = 0.0,
    ) -> None:
        if days < 0 or contexts_per_day < 0:
            raise ValueError("days and contexts_per_day must be >= 0")
        self.seed = seed
        self.days = days
        self.contexts_per_day = contexts_per_day
        self.clock_rate = float(clock_rate)
        self._lock = threading.RLock()
        now = now if now is not None else utc_now_seconds()
        self._now_ms = to_ms(now)
        window_start = self._now_ms - days * MS_PER_DAY
        self._catalog: Catalog = build_catalog(seed, window_start, self._now_ms)
        self._templates: dict[str, dict[str, Any]] = {t["id"]: t for t in self._catalog.templates}
        self._index: dict[str, _Index] = {tid: _Index() for tid in self._templates}
        self._entries: dict[str, _Entry] = {}
        self._plans: dict[str, tuple[int, RunPlan]] = {}  # key -> (next change ms, plan)
        self._day_cache: dict[int, list[RunPlan]] = {}
        self._seq = 0
        self._anon = 0
        self._clock_thread: threading.Thread | None = None
        self._clock_stop = threading.Event()
        for plan in self._runs_between(window_start - 1, self._now_ms):
            self._insert_plan(plan)

    # ---------------------------------------------------------------- reading

    @property
    def now(self) -> datetime:
        """The simulated current time (aware UTC)."""
        with self._lock:
            return from_ms(self._now_ms)

    def tenants(self) -> list[dict[str, Any]]:
        """All accounts (deep copies)."""
        with self._lock:
            return orjson.loads(orjson.dumps(self._catalog.tenants))

    def templates(self) -> list[dict[str, Any]]:
        """All digital processes, i.e. execution templates (deep copies)."""
        with self._lock:
            return orjson.loads(orjson.dumps(list(self._templates.values())))

    def template(self, template_id: str) -> dict[str, Any] | None:
        """One execution template (a deep copy), or None when unknown."""
        with self._lock:
            found = self._templates.get(template_id)
            return None if found is None else orjson.loads(orjson.dumps(found))

    def has_template(self, template_id: str) -> bool:
        with self._lock:
            return template_id in self._templates

    def contexts(self, template_id: str | None = None) -> list[dict[str, Any]]:
        """Process contexts (deep copies), per template in createdAt, processid order."""
        with self._lock:
            ids = [template_id] if template_id is not None else list(self._index)
            out: list[dict[str, Any]] = []
            for tid in ids:
                index = self._index.get(tid)
                if index is None:
                    continue
                for k in index.created:
                    doc = _parsed(index.by_seq[k[2]].raw)
                    if doc is not None:  # what put_raw_context stored may be no JSON at all
                        out.append(doc)
            return out

    def page(
        self,
        template_id: str,
        *,
        created_since: datetime | str | None = None,
        updated_since: datetime | str | None = None,
        status: str | None = None,
        sort: str = "createdAt",
        descending: bool = False,
        page_number: int = 1,
        page_size: int = 16,
    ) -> ContextPage:
        """One page of a template's contexts, as the process-contexts endpoint serves it.

        Filters are inclusive (``>=``); order is (sort field, processid), reversed entirely when
        ``descending``. Raises KeyError for an unknown template, ValueError for a bad argument.
        """
        if sort not in SORT_FIELDS:
            raise ValueError(f"sort must be one of {SORT_FIELDS}")
        if page_number < 1 or page_size < 1:
            raise ValueError("page_number and page_size must be >= 1")
        c_since = _since_key(created_since, "created_since")
        u_since = _since_key(updated_since, "updated_since")
        with self._lock:
            index = self._index[template_id]
            order = index.created if sort == "createdAt" else index.updated
            own, other = (c_since, u_since) if sort == "createdAt" else (u_since, c_since)
            start = 0 if own is None else bisect.bisect_left(order, (own,))
            offset = (page_number - 1) * page_size
            by_seq = index.by_seq
            if other is None and status is None:
                total = len(order) - start
                if descending:
                    hi = len(order) - offset
                    lo = max(start, hi - page_size)
                    picked = [by_seq[k[2]] for k in reversed(order[lo:hi])] if hi > start else []
                else:
                    picked = [by_seq[k[2]] for k in order[start + offset : start + offset + page_size]]
            else:
                matched = []
                for k in order[start:]:
                    entry = by_seq[k[2]]
                    if other is not None:
                        value = entry.updated_key if sort == "createdAt" else entry.created_key
                        if value < other:
                            continue
                    if status is not None and entry.status != status:
                        continue
                    matched.append(entry)
                total = len(matched)
                if descending:
                    matched.reverse()
                picked = matched[offset : offset + page_size]
            return ContextPage(total=total, items=[e.raw for e in picked])

    def state(self) -> dict[str, Any]:
        """A summary for the admin endpoint: the clock and counts per template and status."""
        with self._lock:
            per_template: dict[str, Any] = {}
            for tid, index in self._index.items():
                by_status: dict[str, int] = {}
                for entry in index.by_seq.values():
                    name = entry.status if isinstance(entry.status, str) else repr(entry.status)
                    by_status[name] = by_status.get(name, 0) + 1
                per_template[tid] = {
                    "name": self._templates[tid]["name"],
                    "total": len(index.created),
                    "byStatus": dict(sorted(by_status.items())),
                }
            return {
                "now": iso_ms(self._now_ms),
                "seed": self.seed,
                "clockRate": self.clock_rate,
                "contexts": len(self._entries),
                "inFlight": len(self._plans),
                "templates": per_template,
            }

    # ---------------------------------------------------------------- the clock

    def advance(self, seconds: float) -> AdvanceReport:
        """Move the clock forward: runs get new events and finish, new runs appear."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            return self._advance_ms(round(seconds * 1000))

    def _advance_ms(self, delta_ms: int) -> AdvanceReport:
        old = self._now_ms
        new = old + delta_ms
        created: list[str] = []
        updated: list[str] = []
        finished: list[str] = []
        for key, (next_change, plan) in list(self._plans.items()):
            if next_change > new:
                continue
            entry = self._entries.get(key)
            if entry is None:  # deleted meanwhile
                del self._plans[key]
                continue
            was_running = entry.status == "running"
            self._store_plan(key, plan, new)
            updated.append(plan.processid)
            if was_running and plan.status_at(new) != "running":
                finished.append(plan.processid)
            following = plan.next_change_ms(new)
            if following is None:
                del self._plans[key]
            else:
                self._plans[key] = (following, plan)
        self._now_ms = new
        self._catalog.show_versions_at(new)
        for plan in self._runs_between(old, new):
            self._insert_plan(plan)
            created.append(plan.processid)
            if plan.status_at(new) != "running":
                finished.append(plan.processid)
        return AdvanceReport(
            started_at=iso_ms(old),
            now=iso_ms(new),
            seconds=delta_ms / 1000,
            created=tuple(created),
            updated=tuple(updated),
            finished=tuple(finished),
        )

    def start_clock(self) -> None:
        """Advance the clock in a background thread at ``clock_rate`` (no-op when it is 0)."""
        if self.clock_rate <= 0 or self._clock_thread is not None:
            return
        self._clock_stop.clear()
        thread = threading.Thread(target=self._run_clock, name="oe-sim-clock", daemon=True)
        self._clock_thread = thread
        thread.start()

    def stop_clock(self) -> None:
        """Stop the background clock and wait for its thread."""
        thread = self._clock_thread
        if thread is None:
            return
        self._clock_stop.set()
        thread.join(timeout=5)
        self._clock_thread = None

    def _run_clock(self) -> None:
        last = time.monotonic()
        pending_ms = 0.0
        while not self._clock_stop.wait(_CLOCK_TICK_SECONDS):
            current = time.monotonic()
            pending_ms += (current - last) * self.clock_rate * 1000
            last = current
            step = int(pending_ms)
            if step > 0:
                pending_ms -= step
                with self._lock:
                    self._advance_ms(step)

    # ---------------------------------------------------------------- writing

    def put_context(self, doc: dict[str, Any], template_id: str | None = None) -> str:
        """Insert or replace a raw document (any JSON object) and return its storage key.

        The template is ``template_id`` or else ``context.executionTemplateID``. The key is
        ``context.processid`` when that is a non-empty string (an existing context with it is
        replaced, and stops progressing), otherwise a fresh ``_anon-N`` key. Documents without
        readable timestamps sort first; they are served as they are.
        """
        if not isinstance(doc, dict):
            raise TypeError("a process context must be a JSON object")
        ctx = doc.get("context")
        if template_id is None and isinstance(ctx, dict):
            candidate = ctx.get("executionTemplateID")
            template_id = candidate if isinstance(candidate, str) else None
        try:
            raw = orjson.dumps(doc)
        except TypeError as exc:
            raise ValueError(f"the document is not JSON-serializable: {exc}") from None
        with self._lock:
            if template_id is None or template_id not in self._index:
                raise ValueError(
                    f"unknown digital process {template_id!r}: pass template_id or set "
                    "context.executionTemplateID to an existing execution template id"
                )
            pid = ctx.get("processid") if isinstance(ctx, dict) else None
            if isinstance(pid, str) and pid:
                key = pid
            else:
                self._anon += 1
                key = f"_anon-{self._anon}"
            self._plans.pop(key, None)
            metadata = doc.get("metadata")
            metadata = metadata if isinstance(metadata, dict) else {}
            self._store(
                key,
                template_id,
                raw,
                created_key=sort_key(metadata.get("createdAt")),
                updated_key=sort_key(metadata.get("updatedAt")),
                pid_key=pid if isinstance(pid, str) else "",
                status=doc.get("status"),
            )
            return key

    def put_raw_context(
        self,
        template_id: str,
        text: bytes,
        *,
        process_id: str,
        created_at: str,
        updated_at: str,
        status: str = "finished",
    ) -> None:
        """Serve ``text`` as it is, as one element of the template's pages (NaN, lone surrogates,
        nesting beyond any parser: what a broken OE could send); filtered and sorted by the keys
        given. :meth:`contexts` leaves it out when it does not parse."""
        with self._lock:
            if template_id not in self._index:
                raise ValueError(f"unknown digital process {template_id!r}")
            self._plans.pop(process_id, None)
            self._store(
                process_id,
                template_id,
                text,
                created_key=sort_key(created_at),
                updated_key=sort_key(updated_at),
                pid_key=process_id,
                status=status,
            )

    def delete_context(self, process_id: str) -> bool:
        """Delete one context by its storage key (its processid). False when unknown."""
        with self._lock:
            self._plans.pop(process_id, None)
            return self._drop(process_id)

    def delete_template(self, template_id: str) -> bool:
        """Delete a digital process and, as OE does, all its contexts. False when unknown."""
        with self._lock:
            if template_id not in self._templates:
                return False
            index = self._index.pop(template_id)
            for entry in index.by_seq.values():
                self._entries.pop(entry.key, None)
                self._plans.pop(entry.key, None)
            del self._templates[template_id]
            return True

    def mutate_for_paging(self, template_id: str, rng: random.Random) -> dict[str, str | None]:
        """Change a template's collection the way live traffic does between two page requests.

        The clock moves 1 ms; then one new context is created (at the new now), one existing
        context is updated (updatedAt = now, a running one may finish or fail; it then stops
        progressing) and one other existing context is deleted. Returns the affected ids.
        """
        with self._lock:
            if template_id not in self._index:
                return {"created": None, "updated": None, "deleted": None}
            self._advance_ms(1)
            now = self._now_ms
            created_id: str | None = None
            spec = self._catalog.specs.get(template_id)
            if spec is not None and spec.kind:
                plan = make_run(spec, rng, now)
                self._insert_plan(plan)
                created_id = plan.processid
            index = self._index[template_id]
            by_seq = index.by_seq
            candidates = [by_seq[k[2]].key for k in index.created if by_seq[k[2]].key != created_id]
            updated_id: str | None = None
            deleted_id: str | None = None
            if candidates:
                updated_id = candidates[int(rng.random() * len(candidates))]
                self._touch(updated_id, now, rng)
                rest = [k for k in candidates if k != updated_id]
                if rest:
                    deleted_id = rest[int(rng.random() * len(rest))]
                    self.delete_context(deleted_id)
            return {"created": created_id, "updated": updated_id, "deleted": deleted_id}

    # ---------------------------------------------------------------- internals

    def _runs_between(self, after_ms: int, until_ms: int) -> list[RunPlan]:
        """Runs created in (after_ms, until_ms] whose digital process still exists."""
        if until_ms <= after_ms:
            return []
        out: list[RunPlan] = []
        for day in range((after_ms + 1) // MS_PER_DAY, until_ms // MS_PER_DAY + 1):
            runs = self._day_cache.get(day)
            if runs is None:
                runs = runs_for_day(self._catalog, self.seed, day, self.contexts_per_day)
                self._day_cache[day] = runs
            out.extend(
                r for r in runs if after_ms < r.created_ms <= until_ms and r.template_id in self._index
            )
        keep_from = until_ms // MS_PER_DAY
        for day in [d for d in self._day_cache if d < keep_from]:
            del self._day_cache[day]
        return out

    def _insert_plan(self, plan: RunPlan) -> None:
        key = plan.processid
        self._store_plan(key, plan, self._now_ms)
        following = plan.next_change_ms(self._now_ms)
        if following is not None:
            self._plans[key] = (following, plan)

    def _store_plan(self, key: str, plan: RunPlan, now_ms: int) -> None:
        doc = plan.materialize(now_ms)
        self._store(
            key,
            plan.template_id,
            orjson.dumps(doc),
            created_key=plan.created_ms * 1000,
            updated_key=plan.updated_ms_at(now_ms) * 1000,
            pid_key=plan.processid,
            status=doc["status"],
        )

    def _store(
        self,
        key: str,
        template_id: str,
        raw: bytes,
        *,
        created_key: int,
        updated_key: int,
        pid_key: str,
        status: object,
    ) -> None:
        old = self._entries.get(key)
        if old is not None:
            self._unindex(old)
            seq = old.seq
        else:
            self._seq += 1
            seq = self._seq
        entry = _Entry(key, template_id, seq, created_key, updated_key, pid_key, status, raw)
        self._entries[key] = entry
        index = self._index[template_id]
        bisect.insort(index.created, entry.by_created())
        bisect.insort(index.updated, entry.by_updated())
        index.by_seq[seq] = entry

    def _unindex(self, entry: _Entry) -> None:
        index = self._index.get(entry.template_id)
        if index is None:
            return
        _remove(index.created, entry.by_created())
        _remove(index.updated, entry.by_updated())
        index.by_seq.pop(entry.seq, None)

    def _drop(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._unindex(entry)
        return True

    def _touch(self, key: str, now_ms: int, rng: random.Random) -> None:
        """Bump a context's updatedAt to now (and maybe end a running one); it stops progressing."""
        entry = self._entries[key]
        doc = _parsed(entry.raw)
        if doc is None:  # stored verbatim by put_raw_context: left as it is
            return
        self._plans.pop(key, None)
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict):
            metadata = doc["metadata"] = {}
        metadata["updatedAt"] = iso_ms(now_ms)
        if doc.get("status") == "running" and rng.random() < 0.5:
            doc["status"] = "finished" if rng.random() < 0.8 else "failed"
        self._store(
            key,
            entry.template_id,
            orjson.dumps(doc),
            created_key=entry.created_key,
            updated_key=now_ms * 1000,
            pid_key=entry.pid_key,
            status=doc.get("status"),
        )


def _parsed(raw: bytes) -> Any:
    """The stored document, or None when its text is no JSON object."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
