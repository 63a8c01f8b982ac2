"""SimulatorServer: the OE API (token, execution templates, process contexts) on a loopback HTTP server.

Stdlib ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive, Content-Length) + orjson. One server is
both the API URL and the auth URL. ``/_admin/*`` endpoints (no auth, loopback peers only) let
tests and demos move the clock, switch faults and inject documents.
"""

from __future__ import annotations

import hmac
import re
import secrets
import sys
import threading
import time
import traceback
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from oe_assets.core.loopback_http import BackgroundServer, DispatchingHandler, Simulator, is_loopback_host
from oe_assets.core.timestamps import parse_timestamp
from oe_assets.simulator.faults import FaultSwitches
from oe_assets.simulator.world import AdvanceReport, World

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 16
TOKEN_SCOPE = "orchestration.engine_read orchestration.engine_manage"  # noqa: S105 - not a secret
_SORTS = {
    "metadata.createdAt": ("createdAt", False),
    "metadata.createdAt.desc": ("createdAt", True),
    "metadata.updatedAt": ("updatedAt", False),
    "metadata.updatedAt.desc": ("updatedAt", True),
}
_DIGITS = re.compile(r"^[0-9]{1,9}$")
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_MAX_BODY = 16 * 1024 * 1024


class _Reply(Exception):
    """Raised inside a handler to answer with an Emporix-style error body."""

    def __init__(self, code: int, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []


def error_body(code: int, message: str, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The Emporix REST error shape ``{code, status, message, details}``."""
    return {"code": code, "status": _REASONS.get(code, "Error"), "message": message, "details": details or []}


def _detail(field: str, message: str, kind: str = "invalid_value") -> dict[str, str]:
    """One entry of an error body's ``details``: which field is wrong and how."""
    return {"field": field, "type": kind, "message": message}


def _gateway_fault(message: str, errorcode: str) -> dict[str, Any]:
    """The API gateway's own error shape (its 401s never reach the API): ``{"fault": ...}``."""
    return {"fault": {"faultstring": message, "detail": {"errorcode": errorcode}}}


def _token_fault(expired: bool) -> dict[str, Any]:
    if expired:
        return _gateway_fault("Access Token expired", "keymanagement.service.access_token_expired")
    return _gateway_fault("Invalid access token", "keymanagement.service.invalid_access_token")


class _TokenStore:
    """Issued bearer tokens and their real (monotonic) expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._issued: list[str] = []  # every token ever issued (the last 10,000), for leak tests

    def issue(self, lifetime_seconds: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            # forget long-expired tokens so the map does not grow without bound
            if len(self._tokens) > 10_000:
                self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + lifetime_seconds
            self._issued = [*self._issued[-9_999:], token]
        return token

    def issued(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    def check(self, token: str) -> str:
        """``"ok"``, ``"expired"`` or ``"unknown"``."""
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return "unknown"
            if time.monotonic() >= expiry:
                del self._tokens[token]
                return "expired"
            return "ok"

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def active(self) -> int:
        with self._lock:
            now = time.monotonic()
            return sum(1 for exp in self._tokens.values() if exp > now)


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _paging(query: dict[str, list[str]]) -> tuple[int, int]:
    """(pageNumber, pageSize) from the query; _Reply(400) naming each bad field."""
    details: list[dict[str, str]] = []
    page_number, page_size = 1, DEFAULT_PAGE_SIZE
    raw_number = _first(query, "pageNumber")
    if raw_number is not None:
        if _DIGITS.match(raw_number) and int(raw_number) >= 1:
            page_number = int(raw_number)
        else:
            details.append(_detail("pageNumber", "pageNumber must be an integer >= 1"))
    raw_size = _first(query, "pageSize")
    if raw_size is not None:
        if _DIGITS.match(raw_size) and 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            page_size = int(raw_size)
        else:
            details.append(_detail("pageSize", f"pageSize must be an integer between 1 and {MAX_PAGE_SIZE}"))
    if details:
        raise _Reply(400, "Invalid paging parameters", details)
    return page_number, page_size


class _ContextQuery(NamedTuple):
    """The filters and order of a process-context page request."""

    created_since: str | None
    updated_since: str | None
    status: str | None
    sort: str  # "createdAt" or "updatedAt"
    descending: bool


def _context_query(query: dict[str, list[str]]) -> _ContextQuery:
    """The filters and order of the query; _Reply(400) naming each bad parameter."""
    details: list[dict[str, str]] = []
    since: dict[str, str | None] = {}
    for name in ("createdSince", "updatedSince"):
        value = _first(query, name)
        since[name] = _plus_fix(value)
        if value is not None and not _valid_timestamp(value):
            message = f"{name} must be an ISO-8601 timestamp like 2023-10-16T10:13:42.322Z"
            details.append(_detail(name, message))
    sort_value = _first(query, "sort") or "metadata.createdAt"
    if sort_value not in _SORTS:
        details.append(_detail("sort", f"sort must be one of {', '.join(_SORTS)}"))
    if details:
        raise _Reply(400, "Invalid query parameters", details)
    sort_field, descending = _SORTS[sort_value]
    return _ContextQuery(
        since["createdSince"], since["updatedSince"], _first(query, "status"), sort_field, descending
    )


_TOKEN_FIELDS = ("grant_type", "client_id", "client_secret")


def _token_form(content_type: str, body: bytes) -> dict[str, str]:
    """The token request's form fields; _Reply(400) when the body is no form, misses a field or asks
    for a grant other than client credentials."""
    if "application/x-www-form-urlencoded" not in content_type.lower():
        raise _Reply(
            400,
            "The token request must be application/x-www-form-urlencoded",
            [_detail("Content-Type", "expected a form body")],
        )
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    fields = {name: _first(form, name) or "" for name in _TOKEN_FIELDS}
    missing = [_detail(name, f"{name} is required", "missing") for name, value in fields.items() if not value]
    if missing:
        raise _Reply(400, "Missing form fields", missing)
    if fields["grant_type"] != "client_credentials":
        raise _Reply(
            400, "Unsupported grant type", [_detail("grant_type", "only client_credentials is supported")]
        )
    return fields


class _Handler(DispatchingHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OE-Simulator/1.0"
    log_prefix = "oe-sim"

    # ------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += length
                if size > _MAX_BODY:
                    self.close_connection = True
                    raise _Reply(413, "Request body too large")
                chunks.append(self.rfile.read(length))
                self.rfile.readline(1024)
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            raise _Reply(400, "Bad Content-Length") from None
        if length < 0 or length > _MAX_BODY:
            self.close_connection = True
            raise _Reply(413, "Request body too large")
        return self.rfile.read(length)

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code, _REASONS.get(code))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, orjson.dumps(payload), headers)

    def _dispatch(self, method: str) -> None:
        sim = self.server.sim
        try:
            body = self._read_body()
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            query = parse_qs(parts.query, keep_blank_values=True)
            if path == "/_admin" or path.startswith("/_admin/"):
                if not is_loopback_host(self.client_address[0]):
                    raise _Reply(403, "Admin endpoints answer loopback clients only")
                self._admin(method, path, query, body)
                return
            decision = sim.faults.draw()
            if decision.drop:
                self.close_connection = True
                return
            if decision.delay_seconds > 0:
                sim.stopping.wait(decision.delay_seconds)
            if decision.status == 429:
                self._send_json(
                    429,
                    error_body(429, "Rate limit exceeded, retry later"),
                    {"Retry-After": sim.faults.retry_after_header()},
                )
                return
            if decision.status is not None:
                self._send_json(decision.status, error_body(decision.status, "Simulated server error"))
                return
            if path == "/oauth/token":
                if method != "POST":
                    raise _Reply(405, "Use POST for the token endpoint")
                self._token(body)
                return
            self._api(method, path, query)
        except _Reply as reply:
            self._send_json(reply.code, error_body(reply.code, reply.message, reply.details))
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500, record it, keep serving
            sim.record_internal_error(exc)
            try:
                self._send_json(500, error_body(500, "Internal simulator error"))
            except OSError:
                self.close_connection = True

    # ------------------------------------------------------------ auth

    def _token(self, body: bytes) -> None:
        """The client-credentials grant: a bearer token for the simulator's own id and secret."""
        sim = self.server.sim
        form = _token_form(self.headers.get("Content-Type", ""), body)
        id_ok = hmac.compare_digest(form["client_id"].encode(), sim.client_id.encode())
        secret_ok = hmac.compare_digest(form["client_secret"].encode(), sim.client_secret.encode())
        if not (id_ok and secret_ok):
            self._send_json(401, _gateway_fault("Invalid ApiKey", "oauth.v2.InvalidApiKey"))
            return
        lifetime, announced = sim.faults.token_lifetime()
        answer = {
            "access_token": sim.tokens.issue(lifetime),
            "token_type": "Bearer",
            "expires_in": announced,
            "scope": TOKEN_SCOPE,
            "refresh_token": "",
            "refresh_token_expires_in": 0,
        }
        self._send_json(200, answer, {"Cache-Control": "no-store"})

    def _authorized(self) -> bool:
        """Check the bearer token; answers the 401 itself and returns False when it is bad."""
        sim = self.server.sim
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        state = sim.tokens.check(token.strip()) if scheme.lower() == "bearer" and token.strip() else "unknown"
        if state == "expired":
            sim.faults.count("expired_token")
        if state != "ok":
            self._send_json(401, _token_fault(expired=state == "expired"))
            return False
        if sim.faults.data_request_revokes():
            sim.tokens.revoke_all()
            self._send_json(401, _token_fault(expired=True))
            return False
        return True

    # ------------------------------------------------------------ API

    def _api(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        segments = [unquote(s) for s in path.strip("/").split("/")]
        known = (
            segments in (["oe", "tenants"], ["oe", "execution-templates"])
            or (len(segments) == 3 and segments[:2] == ["oe", "execution-templates"])
            or (
                len(segments) == 4
                and segments[:2] == ["oe", "execution-templates"]
                and segments[3] == "process-contexts"
            )
        )
        if not known:
            raise _Reply(404, f"No resource at {path}")
        if method != "GET":
            raise _Reply(405, f"{method} is not allowed on {path}")
        if not self._authorized():
            return
        world = self.server.sim.world
        want_total = self.headers.get("X-Total-Count", "").strip().lower() == "true"
        if segments == ["oe", "tenants"]:
            self._list(world.tenants(), query, want_total)
        elif segments == ["oe", "execution-templates"]:
            self._list(world.templates(), query, want_total)
        elif len(segments) == 3:
            template = world.template(segments[2])
            if template is None:
                raise self._no_template(segments[2])
            self._send_json(200, template)
        else:
            self._process_contexts(segments[2], query, want_total)

    @staticmethod
    def _no_template(template_id: str) -> _Reply:
        return _Reply(
            404,
            f"Execution template {template_id} not found",
            [_detail("id", f"no execution template with id {template_id}", "not_found")],
        )

    def _list(self, items: list[dict[str, Any]], query: dict[str, list[str]], want_total: bool) -> None:
        page_number, page_size = _paging(query)
        start = (page_number - 1) * page_size
        headers = {"X-Total-Count": str(len(items))} if want_total else None
        self._send_json(200, items[start : start + page_size], headers)

    def _process_contexts(self, template_id: str, query: dict[str, list[str]], want_total: bool) -> None:
        sim = self.server.sim
        world = sim.world
        if not world.has_template(template_id):
            raise self._no_template(template_id)
        page_number, page_size = _paging(query)
        wanted = _context_query(query)
        if sim.faults.mutate_while_paging:
            changed = world.mutate_for_paging(template_id, sim.faults.derive_rng())
            sim.faults.count("mutated", sum(1 for v in changed.values() if v))
        try:
            page = world.page(
                template_id,
                created_since=wanted.created_since,
                updated_since=wanted.updated_since,
                status=wanted.status,
                sort=wanted.sort,
                descending=wanted.descending,
                page_number=page_number,
                page_size=page_size,
            )
        except KeyError:  # deleted between the check and the read
            raise self._no_template(template_id) from None
        headers = {"X-Total-Count": str(page.total)} if want_total else None
        body = page.body()
        if sim.faults.corrupts_page():
            body = body[: len(body) // 2]  # a well-formed HTTP answer whose JSON stops halfway
        self._send(200, body, headers)

    # ------------------------------------------------------------ admin

    def _admin(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        sim = self.server.sim
        route = (method, path)
        if route == ("GET", "/_admin/state"):
            self._send_json(200, sim.state())
        elif route == ("POST", "/_admin/advance"):
            payload = _json_object(body)
            seconds = payload.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise _Reply(400, "seconds must be a number >= 0", [_detail("seconds", "a number >= 0")])
            self._send_json(200, sim.world.advance(float(seconds)).to_dict())
        elif route == ("GET", "/_admin/faults"):
            self._send_json(200, {"switches": sim.faults.to_dict(), "counters": sim.faults.counters()})
        elif route == ("POST", "/_admin/faults"):
            try:
                sim.faults.update(_json_object(body))
            except ValueError as exc:
                raise _Reply(400, str(exc)) from None
            self._send_json(200, {"switches": sim.faults.to_dict(), "counters": sim.faults.counters()})
        elif route == ("POST", "/_admin/faults/reset"):
            sim.faults.reset()
            self._send_json(200, {"switches": sim.faults.to_dict(), "counters": sim.faults.counters()})
        elif route == ("POST", "/_admin/contexts"):
            doc = _json_object(body)
            try:
                key = sim.world.put_context(doc, template_id=_first(query, "templateId"))
            except ValueError as exc:
                raise _Reply(400, str(exc)) from None
            self._send_json(201, {"key": key})
        elif method == "DELETE" and path.startswith("/_admin/contexts/"):
            key = unquote(path[len("/_admin/contexts/") :])
            if not sim.world.delete_context(key):
                raise _Reply(404, f"No process context {key}")
            self._send_json(200, {"deleted": key})
        elif method == "DELETE" and path.startswith("/_admin/execution-templates/"):
            template_id = unquote(path[len("/_admin/execution-templates/") :])
            if not sim.world.delete_template(template_id):
                raise self._no_template(template_id)
            self._send_json(200, {"deleted": template_id})
        else:
            raise _Reply(404, f"No admin resource {method} {path}")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise _Reply(400, "The body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _Reply(400, "The body must be a JSON object")
    return value


def _plus_fix(value: str | None) -> str | None:
    """A '+' in an unencoded offset arrives as a space; put it back."""
    return None if value is None else value.replace(" ", "+")


def _valid_timestamp(value: str) -> bool:
    """A filter bound must be a date-time (a date alone or garbage is a 400)."""
    fixed = _plus_fix(value)
    return fixed is not None and "T" in fixed and parse_timestamp(fixed) is not None


class SimulatorServer(Simulator):
    """The OE simulator: a World behind the OE HTTP API, on loopback by default.

    ``start()`` serves in a daemon thread (port 0 picks a free port); ``stop()`` shuts it down,
    closes connections and frees the port. Also a context manager. ``url`` is both the API URL
    and the auth URL. ``client_id``/``client_secret`` are the simulator's own demo credentials.
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        days: int = 14,
        contexts_per_day: int = 60,
        now: datetime | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "oe-demo-client",
        client_secret: str = "oe-demo-secret",  # noqa: S107 - the simulator's public demo credential
        clock_rate: float = 0.0,
        faults: FaultSwitches | None = None,
        verbose: bool = False,
    ) -> None:
        self.world = World(
            seed=seed, days=days, contexts_per_day=contexts_per_day, now=now, clock_rate=clock_rate
        )
        self.faults = faults if faults is not None else FaultSwitches()
        self.host = host
        self._requested_port = port
        self.client_id = client_id
        self.client_secret = client_secret
        self.verbose = verbose
        self.tokens = _TokenStore()
        self.stopping = threading.Event()
        self.internal_errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._http = BackgroundServer(host, port, "OE simulator")

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SimulatorServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._http.serving:
            return self
        self.stopping.clear()
        self._http.serve(_Handler, self, self.record_internal_error)
        self.world.start_clock()
        return self

    def stop(self) -> None:
        """Stop serving, close all connections, free the port, join the threads. Idempotent."""
        if not self._http.serving:
            return
        self.stopping.set()
        self.world.stop_clock()
        self._http.shut_down()

    # ------------------------------------------------------------ info

    def advance(self, seconds: float) -> AdvanceReport:
        """Move the simulated clock (see World.advance)."""
        return self.world.advance(seconds)

    def state(self) -> dict[str, Any]:
        """World summary plus fault switches/counters and active token count."""
        state = self.world.state()
        state["faults"] = self.faults.to_dict()
        state["faultCounters"] = self.faults.counters()
        state["activeTokens"] = self.tokens.active()
        with self._errors_lock:
            state["internalErrors"] = len(self.internal_errors)
        return state

    def record_internal_error(self, exc: BaseException) -> None:
        """Keep a simulator bug visible (tests assert there are none) without crashing the server."""
        text = "".join(traceback.format_exception(exc))
        with self._errors_lock:
            self.internal_errors.append(text)
        sys.stderr.write(f"oe-sim internal error: {exc!r}\n")
        if self.verbose:
            sys.stderr.write(text)
