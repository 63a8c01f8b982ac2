"""Bounds on one HTTP exchange: a deadline for the whole answer, and a cap on its decoded size.

httpx's timeouts are per socket operation: a server that sends its headers, then one byte every
few seconds, never trips a read timeout and keeps a run waiting forever. Here every read and
write of the socket is given at most the time left until the exchange's deadline (set with
:func:`deadline` around the request), so the exchange ends when the deadline passes, in the
headers as in the body. Deadlines nest: an inner one (a token request made on the way) never
outlives the outer one.

A response's body is read in decoded chunks and abandoned once it exceeds ``limit`` bytes: a
2 MB gzip body that inflates to 2 GB stops at the cap instead of filling memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

_deadline: ContextVar[float] = ContextVar("oe_assets_http_deadline", default=math.inf)


class ResponseTooLarge(Exception):
    """The decoded body grew beyond the cap (``size`` bytes read so far)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.size = size
        self.limit = limit


class DeadlinePassed(Exception):
    """The exchange did not complete before its deadline."""


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Every socket operation inside ends by ``at`` (``time.monotonic()``), or an outer deadline."""
    token = _deadline.set(min(at, _deadline.get()))
    try:
        yield
    finally:
        _deadline.reset(token)


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` shortened to the time left before the deadline; raises ``error`` once it passed."""
    at = _deadline.get()
    if at == math.inf:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the deadline of the exchange passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> Any:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport whose sockets honour :func:`deadline`.

    httpx (0.28, pinned) does not take a network backend, so the one of its connection pool is
    wrapped after construction (``_network_backend`` is httpcore's attribute for it).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = self._pool
        pool._network_backend = _DeadlineBackend(pool._network_backend)


def read_body(response: httpx.Response, *, limit: int, until: float) -> bytes:
    """The decoded body of a streamed response, at most ``limit`` bytes, complete by ``until``."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(size, limit)
        chunks.append(chunk)
        if time.monotonic() > until:
            raise DeadlinePassed
    return b"".join(chunks)
