"""A TCP proxy that cuts every connection once the client has sent a given number of bytes: a
database connection lost in the middle of a write, as a dropped network or a restarted server
leaves it (the server sees the connection end, and rolls back what was not committed)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    port: int
    cut_after_bytes: int
    cuts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count_cut(self) -> None:
        with self._lock:
            self.cuts += 1


def _pump(source: socket.socket, sink: socket.socket, budget: int | None, proxy: CuttingProxy) -> None:
    """Copies ``source`` to ``sink`` until either ends, or until ``budget`` bytes went through:
    then both are closed, mid-stream. Closed, not only shut down: a socket shut for reading keeps
    taking data on Linux until its window is full, and the writer then waits for ever."""
    sent = 0
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            if budget is not None and sent + len(chunk) > budget:
                sink.sendall(chunk[: budget - sent])
                proxy._count_cut()
                break
            sink.sendall(chunk)
            sent += len(chunk)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@contextlib.contextmanager
def cutting_proxy(upstream_port: int, cut_after_bytes: int) -> Iterator[CuttingProxy]:
    """A proxy on a free loopback port in front of ``127.0.0.1:upstream_port``."""
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = CuttingProxy(port=listener.getsockname()[1], cut_after_bytes=cut_after_bytes)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", upstream_port))
                threading.Thread(
                    target=_pump, args=(client, server, cut_after_bytes, proxy), daemon=True
                ).start()
                threading.Thread(target=_pump, args=(server, client, None, proxy), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield proxy
    finally:
        listener.close()
