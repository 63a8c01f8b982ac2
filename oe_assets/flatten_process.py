"""Parse and flatten chunks of documents in a child process, results in the order given.

Why a process and not a thread: every DuckDB call from Python releases the GIL and takes it
back several times. With a flattening thread holding the GIL, each of those takes waits for
the thread's switch interval, and the writer starved: 100k contexts took as long as with no
overlap at all (17-18 s on a 2-vCPU AMD EPYC; a bare ``SELECT 1`` cost 27 ms beside a busy
thread). A child process has a GIL of its own, so the writer's calls return at once.

The child gets the family, the registry to start from and JSON texts (or parsed documents);
it sends back :class:`~oe_assets.flatten.FlatBatch` objects. At most ``depth`` chunks are in
flight, which bounds the memory of running ahead. Starting the child costs about half a
second (a fresh interpreter importing pyarrow), so small writes keep the thread.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from oe_assets.flatten import FlatBatch, Flattener, SchemaRegistry
from oe_assets.flatten.naming import TableFamily

Tag = TypeVar("Tag")

Job = tuple[Tag, Sequence[Any] | None, Mapping[str, object] | None]
"""``(tag, documents, constant columns)``; ``documents=None`` passes ``tag`` through unflattened."""


@dataclass(slots=True)
class FlattenTimes:
    """Seconds spent parsing JSON texts and inside :meth:`Flattener.flatten`, and documents seen."""

    parse: float = 0.0
    flatten: float = 0.0
    documents: int = 0

    def add(self, other: FlattenTimes) -> None:
        self.parse += other.parse
        self.flatten += other.flatten
        self.documents += other.documents


def parse_documents(documents: Sequence[Any], where: str = "the chunk") -> list[Any]:
    """JSON texts (``str``/``bytes``) parsed; anything else is taken as an already parsed document."""
    out = []
    for position, doc in enumerate(documents):
        if isinstance(doc, str | bytes | bytearray | memoryview):
            try:
                doc = orjson.loads(doc)
            except orjson.JSONDecodeError as exc:
                raise ValueError(
                    f"document {position} of {where} is not valid JSON ({exc}): {bytes(doc[:120])!r}"
                    if not isinstance(doc, str)
                    else f"document {position} of {where} is not valid JSON ({exc}): {doc[:120]!r}"
                ) from None
        out.append(doc)
    return out


def flatten_timed(
    flattener: Flattener, documents: Sequence[Any], constants: Mapping[str, object] | None
) -> tuple[FlatBatch, FlattenTimes]:
    """Parse and flatten one chunk, timing both (the same work in the thread and in the child)."""
    began = time.perf_counter()
    where = "the chunk"
    if constants and "_oe_partition" in constants:
        where = f"a chunk of partition {constants['_oe_partition']}"
    parsed = parse_documents(documents, where)
    parsed_at = time.perf_counter()
    batch = flattener.flatten(parsed, constant_columns=constants)
    times = FlattenTimes(parsed_at - began, time.perf_counter() - parsed_at, len(parsed))
    return batch, times


def _child_main(
    jobs: multiprocessing.Queue[Any],
    results: multiprocessing.Queue[Any],
    family: TableFamily,
    registry: SchemaRegistry,
) -> None:
    flattener = Flattener(family, registry)
    while True:
        job = jobs.get()
        if job is None:
            return
        documents, constants = job
        try:
            results.put(("batch", flatten_timed(flattener, documents, constants)))
        except BaseException as exc:  # reported to the parent, which raises it
            results.put(("error", _portable(exc)))
            return


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError carrying its type, text and traceback."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
        return exc
    except Exception:
        text = "".join(traceback.format_exception(exc))
        return RuntimeError(f"flattening process failed with {type(exc).__name__}: {exc}\n{text}")


class FlattenProcess(Generic[Tag]):
    """Flattens jobs in a child process; iterate :meth:`run` for ``(tag, batch, times)`` in order.

    ``batch`` and ``times`` are None for a pass-through job (``documents=None``). Call
    :meth:`close` (also when the consumer stops early) so the child ends.
    """

    def __init__(self, family: TableFamily, registry: SchemaRegistry, *, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"flattening depth must be at least 1, got {depth}")
        self.depth = depth
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._jobs: multiprocessing.Queue[Any] = ctx.Queue()
        self._results: multiprocessing.Queue[Any] = ctx.Queue()
        self._process = ctx.Process(
            target=_child_main,
            args=(self._jobs, self._results, family, registry),
            name="oe-flatten",
            daemon=True,
        )
        self._process.start()
        self._closed = False

    def run(self, jobs: Iterable[Job[Tag]]) -> Iterator[tuple[Tag, FlatBatch | None, FlattenTimes | None]]:
        # In order: (tag, True) was sent to the child, (tag, False) passes through, and an
        # error of ``jobs`` itself waits its turn, so the batches before it are still handed out.
        pending: deque[tuple[Any, bool | BaseException]] = deque()
        in_child = 0
        source = iter(jobs)
        exhausted = False
        while True:
            while not exhausted and in_child < self.depth:
                try:
                    job = next(source)
                except StopIteration:
                    exhausted = True
                    break
                except BaseException as exc:  # raised in its turn below
                    pending.append((None, exc))
                    exhausted = True
                    break
                tag, documents, constants = job
                if documents is None:
                    pending.append((tag, False))
                    continue
                self._jobs.put((list(documents), dict(constants) if constants is not None else None))
                pending.append((tag, True))
                in_child += 1
            if not pending:
                return
            tag, sent = pending.popleft()
            if isinstance(sent, BaseException):
                raise sent
            if not sent:
                yield tag, None, None
                continue
            batch, times = self._receive()
            in_child -= 1
            yield tag, batch, times

    def _receive(self) -> tuple[FlatBatch, FlattenTimes]:
        while True:
            try:
                kind, value = self._results.get(timeout=0.5)
            except queue.Empty:
                if not self._process.is_alive():
                    raise RuntimeError(
                        f"the flattening process exited (code {self._process.exitcode}) before "
                        "sending its batch"
                    ) from None
                continue
            if kind == "error":
                raise value
            batch, times = value
            return batch, times

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._process.is_alive():
            self._jobs.put(None)
            self._process.join(timeout=2)
        if self._process.is_alive():  # still flattening a chunk nobody will read
            self._process.terminate()
            self._process.join(timeout=5)
        for q in (self._jobs, self._results):
            q.cancel_join_thread()  # results nobody reads must not block the parent's exit
            q.close()
