"""Push jobs of the stand-in: creation rules, chunk storage, the hourly execution budget and the worker.

A job is created NEW, collects chunks, and is executed once: it turns QUEUED at once and a single
worker thread moves it to RUNNING, waits ``job_delay`` and applies it (DONE or ERROR), so a client must
poll like it does against Celonis, where execution is asynchronous. Chunks sit on disk next to the pool
file (or in memory for an in-memory pool) until their job is deleted or the server stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from oe_assets.celonis_simulator.common import Reply, bad_request, iso, new_id, utc_now
from oe_assets.celonis_simulator.pool import Pool, PushSpec, schema_for
from oe_assets.celonis_simulator.schema import (
    DEFAULT_STRING_LENGTH,
    MAX_STRING_LENGTH,
    ApplyError,
    Column,
    SchemaError,
    parse_table_schema,
)

JOB_TYPES = ("REPLACE", "DELTA")
# DataPushJob fields the stand-in does not act on but echoes back as sent
_ECHOED = (
    "upsertStrategy",
    "allowDuplicate",
    "postExecutionQuery",
    "targetSchema",
    "mirrorTargetNames",
    "foreignKeys",
    "csvParsingOptions",
)


@dataclass(slots=True)
class Chunk:
    """One uploaded file: kept on disk (``path``) or in memory (``data``)."""

    id: str
    job_id: str
    kind: str  # UPSERT | DELETE
    created: datetime
    checksum: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "creationDate": iso(self.created),
            "type": self.kind,
            "pushJobId": self.job_id,
            "checksum": self.checksum,
        }

    def read(self) -> bytes:
        return self.path.read_bytes() if self.path is not None else (self.data or b"")


@dataclass(slots=True)
class PushJob:
    """A DataPushJob and its chunks."""

    id: str
    pool_id: str
    target: str
    job_type: str
    keys: list[str] | None
    connection_id: str | None
    table_schema: dict[str, Any] | None
    declared: list[Column]
    fallback_length: int | None
    extra: dict[str, Any]
    status: str = "NEW"
    logs: list[str] = field(default_factory=list)
    last_modified: datetime = field(default_factory=utc_now)
    chunks: list[Chunk] = field(default_factory=list)
    fail: bool = False  # a fail_jobs fault was drawn for this execution
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "targetName": self.target,
            "type": self.job_type,
            "status": self.status,
            "fileType": "PARQUET",
            "keys": self.keys,
            "connectionId": self.connection_id,
            "dataPoolId": self.pool_id,
            "tableSchema": self.table_schema,
            "fallbackVarcharLength": self.fallback_length,
            "logs": list(self.logs),
            "lastModified": iso(self.last_modified),
            "lastPing": iso(self.last_modified),
            **self.extra,
        }

    def spec(self) -> PushSpec:
        return PushSpec(
            target=self.target,
            schema=schema_for(self.connection_id),
            job_type=self.job_type,
            keys=tuple(self.keys or ()),
            declared=tuple(self.declared),
            fallback_length=self.fallback_length or DEFAULT_STRING_LENGTH,
        )


def new_job(body: Any, pool_id: str, connection_ids: tuple[str, ...]) -> PushJob:
    """A NEW job from a create request; Reply(400) names what is wrong, Reply(404) an unknown connection."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a DataPushJob object")
    target, job_type = body.get("targetName"), body.get("type")
    if not isinstance(target, str) or not target.strip():
        raise bad_request("targetName is required")
    if job_type not in JOB_TYPES:
        raise bad_request(f"type must be one of {', '.join(JOB_TYPES)}, got {job_type}")
    keys = body.get("keys")
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys)):
        raise bad_request("keys must be an array of column names")
    connection = body.get("connectionId") or None
    if connection is not None and connection not in connection_ids:
        raise Reply(404, f"Data connection {connection} not found in data pool {pool_id}")
    file_type = body.get("fileType") or "PARQUET"
    if file_type != "PARQUET":
        raise bad_request(f"fileType {file_type} is not supported by the simulator (PARQUET only)")
    fallback = body.get("fallbackVarcharLength")
    if fallback is not None and (
        isinstance(fallback, bool) or not isinstance(fallback, int) or not 1 <= fallback <= MAX_STRING_LENGTH
    ):
        raise bad_request(f"fallbackVarcharLength must be an integer between 1 and {MAX_STRING_LENGTH}")
    try:
        declared = parse_table_schema(body.get("tableSchema"), fallback or DEFAULT_STRING_LENGTH)
    except SchemaError as exc:
        raise bad_request(str(exc), "DATA_PUSH_INVALID_TABLE_SCHEMA") from None
    return PushJob(
        id=new_id(),
        pool_id=pool_id,
        target=target,
        job_type=job_type,
        keys=list(keys) if keys else None,
        connection_id=connection,
        table_schema=body.get("tableSchema"),
        declared=declared,
        fallback_length=fallback,
        extra={name: body[name] for name in _ECHOED if name in body},
    )


class JobStore:
    """The pool's push jobs and their chunk files."""

    def __init__(self, chunk_dir: Path | None, max_chunk_bytes: int) -> None:
        self.chunk_dir = chunk_dir
        self.max_chunk_bytes = max_chunk_bytes
        self.lock = threading.RLock()
        self._jobs: dict[str, PushJob] = {}

    def add(self, job: PushJob) -> None:
        with self.lock:
            self._jobs[job.id] = job

    def get(self, pool_id: str, job_id: str) -> PushJob:
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None or job.pool_id != pool_id:
                raise Reply(404, f"Data push job {job_id} not found")
            return job

    def of_pool(self, pool_id: str) -> list[PushJob]:
        with self.lock:
            return [job for job in self._jobs.values() if job.pool_id == pool_id]

    def delete(self, pool_id: str, job_id: str) -> None:
        """Forget a job and its chunk files (a queued job that is deleted is not run)."""
        with self.lock:
            job = self.get(pool_id, job_id)
            job.deleted = True
            del self._jobs[job_id]
            self._remove_files(job)

    def add_chunk(self, job: PushJob, kind: str, data: bytes) -> Chunk:
        """Keep an uploaded file; 413 over the size limit, 409 once the job was executed."""
        if len(data) > self.max_chunk_bytes:
            raise Reply(413, f"A chunk may hold at most {self.max_chunk_bytes} bytes, got {len(data)}")
        chunk = Chunk(new_id(), job.id, kind, utc_now(), hashlib.sha256(data).hexdigest(), len(data))
        with self.lock:
            if job.status != "NEW" or job.deleted:
                raise Reply(
                    409, f"Data push job {job.id} is {job.status}; chunks can only be added to NEW jobs"
                )
            if self.chunk_dir is None:
                chunk.data = data
            else:
                folder = self.chunk_dir / job.id
                folder.mkdir(parents=True, exist_ok=True)
                chunk.path = folder / f"{chunk.id}.parquet"
                chunk.path.write_bytes(data)
            job.chunks.append(chunk)
            job.last_modified = utc_now()
        return chunk

    def take_for_run(self, job: PushJob) -> tuple[list[bytes], list[bytes]] | None:
        """Mark a queued job RUNNING and read its chunks, or None when it was deleted meanwhile."""
        with self.lock:
            if job.deleted:
                return None
            job.status, job.last_modified = "RUNNING", utc_now()
            upserts = [c.read() for c in job.chunks if c.kind == "UPSERT"]
            deletes = [c.read() for c in job.chunks if c.kind == "DELETE"]
            return upserts, deletes

    def finish(self, job: PushJob, status: str, logs: list[str]) -> None:
        with self.lock:
            job.status, job.last_modified = status, utc_now()
            job.logs.extend(logs)

    def close(self) -> None:
        """Remove every chunk file this server wrote."""
        if self.chunk_dir is not None:
            shutil.rmtree(self.chunk_dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # the shared parent, when no other server uses it
                self.chunk_dir.parent.rmdir()

    def _remove_files(self, job: PushJob) -> None:
        if self.chunk_dir is not None:
            shutil.rmtree(self.chunk_dir / job.id, ignore_errors=True)


class HourlyBudget:
    """Celonis' limit on job executions per team: ``limit`` per UTC clock hour (the window starts at the
    full hour). ``take`` answers None when allowed, else the seconds until the next full hour."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._hour: datetime | None = None
        self._count = 0

    def take(self, now: datetime | None = None) -> int | None:
        now = now or datetime.now(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        with self._lock:
            if hour != self._hour:
                self._hour, self._count = hour, 0
            if self._count >= self.limit:
                return max(1, math.ceil((hour + timedelta(hours=1) - now).total_seconds()))
            self._count += 1
            return None

    def reset(self) -> None:
        with self._lock:
            self._count = 0

    @property
    def used(self) -> int:
        with self._lock:
            return self._count


def run_job(store: JobStore, pool: Pool, job: PushJob, delay: float, stopping: threading.Event) -> str | None:
    """Run one queued job (in the worker): RUNNING, wait ``delay``, apply, then DONE or ERROR.

    Returns the final status, or None when the job was deleted before it ran or the server stopped."""
    chunks = store.take_for_run(job)
    if chunks is None or stopping.wait(delay):
        return None
    upserts, deletes = chunks
    if job.fail:
        store.finish(job, "ERROR", ["Simulated failure"])
        return "ERROR"
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        result = pool.apply(job.spec(), upserts, deletes, now)
    except ApplyError as exc:
        store.finish(job, "ERROR", [str(exc)])
        return "ERROR"
    logs = [
        f"Table {result.table}: {result.rows_written} rows written, {result.rows_deleted} rows deleted "
        f"({job.job_type}, {len(upserts)} upserted and {len(deletes)} deleted chunks)"
    ]
    if result.columns_added:
        logs.append(f"Table {result.table}: columns added: {', '.join(result.columns_added)}")
    store.finish(job, "DONE", logs)
    return "DONE"


class Worker:
    """One daemon thread running tasks in order (job executions, data-model loads).

    ``batch`` wraps a run of tasks that were queued together (the pool keeps its file open across
    them and closes it when the queue is empty, so the file is free whenever the stand-in idles).
    """

    def __init__(
        self,
        on_error: Callable[[BaseException], None],
        batch: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._on_error = on_error
        self._batch = batch
        self._thread = threading.Thread(target=self._loop, name="celonis-sim-worker", daemon=True)
        self._thread.start()

    def submit(self, task: Callable[[], None]) -> None:
        self._queue.put(task)

    def stop(self) -> None:
        self._queue.put(None)
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        task = self._queue.get()
        while task is not None:
            with self._batch():
                while task is not None:
                    self._run(task)
                    try:
                        task = self._queue.get_nowait()
                    except queue.Empty:
                        break
            if task is not None:
                task = self._queue.get()

    def _run(self, task: Callable[[], None]) -> None:
        try:
            task()
        except Exception as exc:  # a simulator bug: keep it visible, keep working
            self._on_error(exc)
