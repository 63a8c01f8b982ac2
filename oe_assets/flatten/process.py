"""Parse and flatten chunks of documents in a child process, results in the order given.

Why a process and not a thread: every DuckDB call from Python releases the GIL and takes it
back several times. With a flattening thread holding the GIL, each of those takes waits for
the thread's switch interval, and the writer starved: a large run took as long as with no
overlap at all. A child process has a GIL of its own, so the writer's calls return at once.

The child is ``python -m oe_assets.flatten.process``, not a ``multiprocessing`` child: those
import the parent's ``__main__`` module (DuckDB in the benchmark, all of Dagster in a run),
which costs memory for nothing. Parent and child exchange length-prefixed pickles over the
child's stdin and stdout (its ``print`` goes to stderr): the family, the registry to start from,
then chunks of JSON texts (or parsed documents) one way and :class:`~oe_assets.flatten.FlatBatch`
objects the other. At most ``depth`` chunks are in flight, which bounds the memory of running
ahead. Starting the child takes time, so small writes keep the thread
(:data:`oe_assets.load.contexts.PROCESS_MIN_DOCUMENTS`). The figures behind all three choices
are in ``docs/bench/findings.md``, "Flattening in a child process".
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Generic, TypeVar

import orjson

from oe_assets.flatten import FlatBatch, Flattener, SchemaRegistry, UnparsableDocument
from oe_assets.flatten.naming import TableFamily

Tag = TypeVar("Tag")

Job = tuple[Tag, Sequence[Any] | None, Mapping[str, object] | None]
"""``(tag, documents, constant columns)``; ``documents=None`` passes ``tag`` through unflattened."""

_FRAME = struct.Struct("<Q")
_live: set[subprocess.Popen[bytes]] = set()


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


def parse_documents(documents: Sequence[Any]) -> list[Any]:
    """JSON texts (``str``/``bytes``) parsed; anything else is taken as an already parsed document.

    A text that does not parse (NaN, ``1e400``, a lone surrogate, nesting deeper than orjson's
    1,024 levels, a text cut short) becomes an :class:`~oe_assets.flatten.UnparsableDocument`
    that the flattener quarantines with its text: one bad document must not fail its day.
    """
    out = []
    for doc in documents:
        if isinstance(doc, str | bytes | bytearray | memoryview):
            try:
                doc = orjson.loads(doc)
            except orjson.JSONDecodeError as exc:
                doc = _unparsable(doc, exc)
        out.append(doc)
    return out


def _unparsable(
    source: str | bytes | bytearray | memoryview, exc: orjson.JSONDecodeError
) -> UnparsableDocument:
    """The text and orjson's reason, with the characters around where parsing stopped."""
    text = source if isinstance(source, str) else bytes(source).decode("utf-8", "replace")
    near = text[max(exc.pos - 24, 0) : exc.pos + 24]
    return UnparsableDocument(text, f"not valid JSON ({exc.msg} at character {exc.pos}, near {near!r})")


def flatten_timed(
    flattener: Flattener, documents: Sequence[Any], constants: Mapping[str, object] | None
) -> tuple[FlatBatch, FlattenTimes]:
    """Parse and flatten one chunk, timing both (the same work in the thread and in the child).

    The chunk's texts go along as the flattener's ``sources``: a quarantined document keeps its
    text as it was read."""
    began = time.perf_counter()
    parsed = parse_documents(documents)
    parsed_at = time.perf_counter()
    batch = flattener.flatten(parsed, constant_columns=constants, sources=documents)
    times = FlattenTimes(parsed_at - began, time.perf_counter() - parsed_at, len(parsed))
    return batch, times


def live_flatten_processes() -> list[int]:
    """Process ids of the flattening children still running (for tests and diagnostics)."""
    return [p.pid for p in _live if p.poll() is None]


# ------------------------------------------------------------------------------ frames
def _write_frames(out: IO[bytes], payloads: queue.Queue[bytes | None]) -> None:
    """Write each pickled payload of ``payloads`` as a frame until a None (a sender thread's loop)."""
    while (payload := payloads.get()) is not None:
        out.write(_FRAME.pack(len(payload)))
        out.write(payload)
        out.flush()


def _read_exactly(inp: IO[bytes], n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = inp.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_frame(inp: IO[bytes]) -> tuple[bool, Any]:
    """``(True, object)``, or ``(False, None)`` at the end of the stream."""
    header = _read_exactly(inp, _FRAME.size)
    if header is None:
        return False, None
    payload = _read_exactly(inp, _FRAME.unpack(header)[0])
    if payload is None:
        return False, None
    return True, pickle.loads(payload)  # noqa: S301 - frames of our own parent or child


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError carrying its type, text and traceback."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
        return exc
    except Exception:
        text = "".join(traceback.format_exception(exc))
        return RuntimeError(f"flattening process failed with {type(exc).__name__}: {exc}\n{text}")


# ------------------------------------------------------------------------------- child
def _serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """The child: flatten each job as it comes, while a thread sends the previous result."""
    ok, setup = _read_frame(inp)
    if not ok:
        return
    family, registry = setup
    flattener = Flattener(family, registry)
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def send() -> None:
        with contextlib.suppress(BrokenPipeError, OSError):  # the parent stopped reading
            _write_frames(out, outbox)

    sender = threading.Thread(target=send, name="oe-flatten-send", daemon=True)
    sender.start()
    try:
        while True:
            ok, job = _read_frame(inp)
            if not ok or job is None:
                break
            documents, constants = job
            try:
                result: tuple[str, Any] = ("batch", flatten_timed(flattener, documents, constants))
            except BaseException as exc:  # reported to the parent, which raises it
                outbox.put(pickle.dumps(("error", _portable(exc)), protocol=5))
                break
            outbox.put(pickle.dumps(result, protocol=5))
            del result
    finally:
        outbox.put(None)
        sender.join()


def _child_main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it ends us by closing stdin
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the frames
    sys.stdout = sys.stderr
    with contextlib.suppress(BrokenPipeError):
        _serve(sys.stdin.buffer, frames)


# ------------------------------------------------------------------------------ parent
class FlattenProcess(Generic[Tag]):
    """Flattens jobs in a child process; iterate :meth:`run` for ``(tag, batch, times)`` in order.

    ``batch`` and ``times`` are None for a pass-through job (``documents=None``). Call
    :meth:`close` (also when the consumer stops early) so the child ends.
    """

    def __init__(self, family: TableFamily, registry: SchemaRegistry, *, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"flattening depth must be at least 1, got {depth}")
        self.depth = depth
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "oe_assets.flatten.process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        _live.add(self._proc)
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        # Jobs are written by a thread: a write blocks while the child is busy, and the writer
        # must stay free to read results meanwhile (or both would wait for each other).
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._sender = threading.Thread(target=self._send, name="oe-flatten-jobs", daemon=True)
        self._sender.start()
        self._outbox.put(pickle.dumps((family, registry), protocol=5))
        self._closed = False

    def _send(self) -> None:
        try:
            _write_frames(self._stdin, self._outbox)
        except (BrokenPipeError, ValueError):  # the child is gone; reading its results says why
            pass
        finally:
            with contextlib.suppress(OSError):
                self._stdin.close()

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
                job_payload = (list(documents), dict(constants) if constants is not None else None)
                self._outbox.put(pickle.dumps(job_payload, protocol=5))
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
        ok, message = _read_frame(self._stdout)
        if not ok:
            code = self._proc.wait(timeout=5)
            raise RuntimeError(f"the flattening process exited (code {code}) before sending its batch")
        kind, value = message
        if kind == "error":
            raise value
        batch, times = value
        return batch, times

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._outbox.put(None)  # the sender closes the child's stdin: the child ends
        self._stdout.close()  # and results nobody will read must not keep it writing
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # still flattening a chunk nobody will read
            self._proc.kill()
            self._proc.wait(timeout=5)
        finally:
            self._sender.join(timeout=5)
            _live.discard(self._proc)


if __name__ == "__main__":
    # Run the imported module's code, so that what is pickled names ``oe_assets.flatten.process``
    # (the parent's module) and not ``__main__``.
    from oe_assets.flatten.process import _child_main as child_main

    child_main()
