"""Stage a run's process contexts in Parquet files, outside the warehouse.

Why: reading the API can take minutes (slow pages, retries, a server that trickles), and the
warehouse has one writer at a time. So the pages are written, one by one as they arrive, to
files in a temporary directory (memory holds one page), and the warehouse is opened only
afterwards, to commit them in one transaction (:func:`oe_assets.landing.raw_contexts.commit_stage`).

Each record is staged with the API's own text of it (``Page.texts``): the raw layer is verbatim,
so integers beyond 64 bits, duplicate keys and escapes stay exactly as sent. Elements of a page
that are no usable record (``Page.rejected``) and records that cannot be placed are staged for
the quarantine, with their text and the reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from oe_assets.client import OeClient
from oe_assets.client.pages import Page, RejectedRecord
from oe_assets.config.secret import get_logger
from oe_assets.core.timestamps import day_window, parse_oe_timestamp

STAGE_PREFIX = ".oe_stage_"
OWNER_FILE = ".owner"
_log = get_logger(__name__)

QUARANTINE_SAMPLES = 50
"""Quarantined records kept in memory for the run's log; all of them are staged on disk."""

STAGE_SCHEMA = pa.schema(
    [
        ("process_id", pa.string()),
        ("execution_template_id", pa.string()),
        ("execution_template_version_id", pa.string()),
        ("tenant", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us")),
        ("status", pa.string()),
        ("partition_date", pa.date32()),
        ("document", pa.string()),
        ("document_sha256", pa.string()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("partition_key", pa.string()),
        ("record_key", pa.string()),
        ("reason", pa.string()),
        ("document", pa.string()),
    ]
)


@dataclass
class QuarantinedRaw:
    partition_key: str
    record_key: str | None
    reason: str
    document: str


@dataclass
class ContextStage:
    """What one read of the API left on disk, and what it counted on the way."""

    days: list[date]
    contexts_file: Path
    quarantine_file: Path
    templates_read: list[str] = field(default_factory=list)
    staged_rows: int = 0
    quarantined: int = 0
    quarantine_samples: list[QuarantinedRaw] = field(default_factory=list)
    outside_window: int = 0
    api_pages: int = 0
    api_requests: int = 0
    api_retries: int = 0


@contextmanager
def stage_process_contexts(
    client: OeClient, template_ids: Sequence[str], days: Sequence[date], *, directory: Path | None = None
) -> Iterator[ContextStage]:
    """Read the days' contexts of each digital process into a temporary directory (removed on
    exit) under ``directory`` (default: the system's temporary directory)."""
    day_list = sorted(set(days))
    remove_abandoned_stages(Path(directory or tempfile.gettempdir()))
    with stage_folder(directory) as folder:
        stage = ContextStage(day_list, folder / "contexts.parquet", folder / "quarantine.parquet")
        before = client.stats.pages, client.stats.requests, client.stats.retries
        with (
            pq.ParquetWriter(stage.contexts_file, STAGE_SCHEMA, compression="zstd") as contexts,
            pq.ParquetWriter(stage.quarantine_file, QUARANTINE_SCHEMA, compression="zstd") as quarantine,
        ):
            writer = _StageWriter(stage, contexts, quarantine)
            if day_list:
                since, _ = day_window(day_list[0])
                until, _ = day_window(day_list[-1] + timedelta(days=1))
                for template_id in template_ids:
                    for page in client.iter_process_context_pages(
                        template_id, created_since=since, created_before=until
                    ):
                        writer.add_page(page)
                    stage.templates_read.append(template_id)
        stage.api_pages = client.stats.pages - before[0]
        stage.api_requests = client.stats.requests - before[1]
        stage.api_retries = client.stats.retries - before[2]
        yield stage


@contextmanager
def stage_folder(directory: Path | None) -> Iterator[Path]:
    """A new stage folder, removed at the end, whose owner lock is held until it is gone. The
    kernel drops the lock when the process dies, however it dies: that is how
    :func:`remove_abandoned_stages` tells a stage whose run was killed (SIGKILL, out of memory)
    from one a run still writes."""
    folder = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=directory))
    fd = os.open(folder / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def remove_abandoned_stages(directory: Path) -> int:
    """Removes the stage folders under ``directory`` whose run died before it could remove them
    (their owner lock is free); returns how many. Stages of live runs are left alone."""
    removed = 0
    for folder in sorted(directory.glob(f"{STAGE_PREFIX}*")):
        try:
            fd = os.open(folder / OWNER_FILE, os.O_RDWR)
        except OSError:
            continue  # being created (the lock comes right after the folder), or not ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live run's
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    if removed:
        _log.warning("Removed %d stage folders under %s that killed runs left behind", removed, directory)
    return removed


class _StageWriter:
    """Turns pages into staged rows and quarantine rows; one Parquet row group per page."""

    def __init__(self, stage: ContextStage, contexts: pq.ParquetWriter, quarantine: pq.ParquetWriter) -> None:
        self.stage = stage
        self.contexts = contexts
        self.quarantine = quarantine
        self.wanted = set(stage.days)

    def add_page(self, page: Page) -> None:
        rows: list[dict[str, object]] = []
        rejected: list[QuarantinedRaw] = [self._from_rejected(r) for r in page.rejected]
        for doc, text in zip(page, page.texts, strict=True):
            row, reason = stage_row(doc, text)
            if reason is not None:
                rejected.append(QuarantinedRaw(self._first_day, _record_key(doc), reason, text))
            elif row is not None and row["partition_date"] in self.wanted:
                rows.append(row)
            else:
                self.stage.outside_window += 1
        if rows:
            self.contexts.write_table(pa.Table.from_pylist(rows, schema=STAGE_SCHEMA))
            self.stage.staged_rows += len(rows)
        if rejected:
            self._quarantine(rejected)

    @property
    def _first_day(self) -> str:
        return self.stage.days[0].isoformat()

    def _from_rejected(self, rejected: RejectedRecord) -> QuarantinedRaw:
        """Placed on the day of its createdAt when that can be read and is one of the run's
        days, else on the run's first day (a later run of that day replaces it)."""
        created = parse_oe_timestamp(rejected.created_at)
        day = created.date() if created is not None and created.date() in self.wanted else None
        key = day.isoformat() if day is not None else self._first_day
        return QuarantinedRaw(key, rejected.process_id, rejected.reason, rejected.text)

    def _quarantine(self, records: list[QuarantinedRaw]) -> None:
        self.quarantine.write_table(
            pa.Table.from_pylist([asdict(q) for q in records], schema=QUARANTINE_SCHEMA)
        )
        self.stage.quarantined += len(records)
        room = QUARANTINE_SAMPLES - len(self.stage.quarantine_samples)
        self.stage.quarantine_samples.extend(records[: max(room, 0)])


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def stage_row(doc: dict[str, Any], text: str) -> tuple[dict[str, object] | None, str | None]:
    """The staging row of a record (its ``document`` is the API's ``text``), or the reason it
    cannot be landed."""
    context = doc.get("context")
    metadata = doc.get("metadata")
    if not isinstance(context, dict):
        return None, "context is missing or not an object"
    process_id = context.get("processid")
    if not isinstance(process_id, str) or not process_id:
        return None, "context.processid is missing or not a non-empty string"
    if not isinstance(metadata, dict):
        return None, "metadata is missing or not an object"
    created_at = parse_oe_timestamp(metadata.get("createdAt"))
    if created_at is None:
        return None, f"metadata.createdAt {metadata.get('createdAt')!r} is not an ISO-8601 timestamp"
    return {
        "process_id": process_id,
        "execution_template_id": _text(context.get("executionTemplateID")),
        "execution_template_version_id": _text(context.get("executionTemplateVersionID")),
        "tenant": _text(metadata.get("tenant")),
        "created_at": created_at,
        "updated_at": parse_oe_timestamp(metadata.get("updatedAt")),
        "status": _text(doc.get("status")),
        "partition_date": created_at.date(),
        "document": text,
        "document_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }, None


def _record_key(doc: dict[str, Any]) -> str | None:
    context = doc.get("context")
    key = context.get("processid") if isinstance(context, dict) else None
    return key if isinstance(key, str) else None
