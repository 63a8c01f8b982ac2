"""A hostile OE API for tests: a real HTTP server on loopback in front of the simulator.

Every request is forwarded to the simulator unless a *rule* answers it first. A rule sees the
request (method, path, query, headers, body) and returns a :class:`Reply` or None. Replies can
trickle their body (headers first, then one piece every few seconds), compress it, or say
anything at all: slow, huge, lying and echoing answers, as a broken proxy or a hostile server
would give them. Nothing here is mocked below HTTP: the client under test speaks to a socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Reply:
    status: int
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    pause_seconds: float = 0.0
    """sleep before each piece of an iterable body (headers go out at once)"""
    raw: Iterable[bytes] | None = None
    """bytes written to the socket as they are (status line and headers included), for answers
    that are not even well-formed HTTP in time"""


Rule = Callable[[Request], Reply | None]


def trickle(body: bytes, *, piece: int = 1) -> Iterator[bytes]:
    """``body`` in pieces of ``piece`` bytes (with Reply.pause_seconds between them)."""
    for start in range(0, len(body), piece):
        yield body[start : start + piece]


def gzip_bomb(decoded_bytes: int) -> bytes:
    """A gzip body of ``decoded_bytes`` spaces inside a JSON array: tiny on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    chunk = b" " * (1 << 20)
    parts = [compressor.compress(b"[")]
    for _ in range(decoded_bytes // len(chunk)):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.compress(b"]"))
    parts.append(compressor.flush())
    return b"".join(parts)


class HostileServer:
    """Serves on ``url``; forwards to ``upstream`` unless one of ``rules`` answers."""

    def __init__(self, upstream: str, rules: Iterable[Rule] = ()) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = list(rules)
        self.seen: list[Request] = []
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._forward = httpx.Client(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        self._forward.close()

    def answer(self, request: Request) -> Reply:
        self.seen.append(request)
        for rule in self.rules:
            reply = rule(request)
            if reply is not None:
                return reply
        return self.forward(request)

    def forward(self, request: Request) -> Reply:
        """The simulator's own answer to ``request``."""
        url = self.upstream + request.path
        params = [(k, v) for k, values in request.query.items() for v in values]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        response = self._forward.request(
            request.method, url, params=params, headers=headers, content=request.body
        )
        kept = {
            k: v
            for k, v in response.headers.items()
            if k.lower() in ("content-type", "x-total-count", "retry-after")
        }
        return Reply(response.status_code, response.content, kept)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            method, parts.path, parse_qs(parts.query, keep_blank_values=True), dict(self.headers), body
        )
        reply = self.server.hostile.answer(request)
        with contextlib.suppress(OSError):  # the client gave up: nothing more to say
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.raw is not None:
            self.close_connection = True
            for piece in reply.raw:
                if reply.pause_seconds:
                    time.sleep(reply.pause_seconds)
                self.wfile.write(piece)
                self.wfile.flush()
            return
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        if isinstance(reply.body, bytes):
            headers["Content-Length"] = str(len(reply.body))
        else:
            headers.setdefault("Connection", "close")
            self.close_connection = True
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        pieces = [reply.body] if isinstance(reply.body, bytes) else reply.body
        for piece in pieces:
            if reply.pause_seconds:
                time.sleep(reply.pause_seconds)
            self.wfile.write(piece)
            self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], hostile: HostileServer) -> None:
        self.hostile = hostile
        self._sockets: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._sockets.add(request)
        super().process_request(request, client_address)

    def close_all(self) -> None:
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
