"""Run an iterator ahead of its consumer in a daemon thread.

Why: flattening is Python (it holds the GIL) while DuckDB releases the GIL as it writes, so
producing the next batch in a thread while the current one is written puts both cores to work.
The queue is bounded, so memory holds at most ``depth`` items besides the one being written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Prefetched(Generic[T]):
    """Iterates ``items`` in a thread; errors are re-raised in the consumer, in order.

    Call :meth:`close` (also when the consumer stops early) so the thread ends.
    """

    def __init__(self, items: Iterable[T], depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(iter(items),), name="oe-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, kind: str, value: Any) -> bool:
        """Blocks until the item is queued; False once the consumer has closed the stream."""
        while not self._stop.is_set():
            try:
                self._q.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, it: Iterator[T]) -> None:
        try:
            for item in it:
                if not self._put("item", item):
                    return
            self._put("done", None)
        except BaseException as exc:
            self._put("error", exc)

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)
