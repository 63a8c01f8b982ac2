"""The HTTP server both simulators serve on: stdlib ``ThreadingHTTPServer`` in a daemon thread that
closes every connection it holds when stopped (idle keep-alive ones too, so a test's port is free at
once), sends headers and body without Nagle's delay, and hands unexpected handler errors to its
owner instead of printing them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self


def is_loopback_host(host: str) -> bool:
    """``localhost`` (or a name under it) or a loopback address: this machine, never the network."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DispatchingHandler(BaseHTTPRequestHandler):
    """Every method to ``_dispatch(method)``; request lines logged (path and query only, never a
    header or a body) when the simulator is ``verbose``."""

    timeout = 120  # idle keep-alive connections are closed after this
    log_prefix = "sim"
    server: TrackingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sim.verbose:
            sys.stderr.write(f"{self.log_prefix} {self.address_string()} {format % args}\n")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")


class TrackingHTTPServer(ThreadingHTTPServer):
    """Knows its open connections; ``sim`` is the simulator the handlers serve."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        sim: Any,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.sim = sim
        self._on_error = on_error
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # headers and body go out in separate writes; without NODELAY, Nagle's algorithm holds the body
        # back until the client's delayed ACK (docs/bench/findings.md has the cost)
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close every open client connection (idle keep-alive ones included)."""
        with self._conn_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):  # OSError: the client went away
            self._on_error(exc)


class _TrackingHTTPServer6(TrackingHTTPServer):
    address_family = socket.AF_INET6


class BackgroundServer:
    """A :class:`TrackingHTTPServer` serving in a daemon thread: ``start``, ``stop``, ``port``, ``url``."""

    def __init__(self, host: str, port: int, name: str) -> None:
        self.host = host
        self._requested_port = port
        self._name = name
        self._httpd: TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def serving(self) -> bool:
        return self._httpd is not None

    def serve(
        self, handler: type[BaseHTTPRequestHandler], sim: Any, on_error: Callable[[BaseException], None]
    ) -> None:
        """Bind and serve; warns on stderr when the host is not loopback."""
        if not is_loopback_host(self.host):
            sys.stderr.write(
                f"warning: the {self._name} listens on {self.host}, not loopback: other machines can reach "
                "it; its admin endpoints answer loopback peers only\n"
            )
        server_class = _TrackingHTTPServer6 if ":" in self.host else TrackingHTTPServer
        self._httpd = server_class((self.host, self._requested_port), handler, sim, on_error)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=self._name, daemon=True
        )
        self._thread.start()

    def shut_down(self) -> None:
        """Stop serving, close every connection, free the port, join the thread. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    @property
    def port(self) -> int:
        """The bound port (only while serving)."""
        if self._httpd is None:
            raise RuntimeError(f"the {self._name} is not started")
        return int(self._httpd.server_address[1])

    @property
    def bound_host(self) -> str:
        """The address the socket is bound to (only while serving)."""
        if self._httpd is None:
            raise RuntimeError(f"the {self._name} is not started")
        return str(self._httpd.server_address[0])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def serve_until_signal(stop: Callable[[], None], banner: Callable[[], None], name: str) -> int:
    """A started server in the foreground: ``banner``, then wait for Ctrl+C or SIGTERM, ``stop``."""
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        banner()
        while not done.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop()
    print(f"{name} stopped.", flush=True)
    return 0


class Simulator:
    """What both simulators share around their :class:`BackgroundServer`: a context manager that
    starts and stops it, its port and its URL (the base URL of every call)."""

    _http: BackgroundServer

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only while started)."""
        return self._http.port

    @property
    def bound_host(self) -> str:
        """The address the socket is bound to (only while started)."""
        return self._http.bound_host

    @property
    def url(self) -> str:
        """``http://host:port``, e.g. ``http://127.0.0.1:54321``."""
        return self._http.url
