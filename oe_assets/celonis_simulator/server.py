"""CelonisSimulatorServer: a Celonis stand-in (OAuth, Data Push API, pools and data models) over real HTTP.

The pipeline pushes its tables to Celonis; tests and demos need a Celonis that answers like one without
a team: the same paths, auth schemes, job lifecycle, rate limit and error shapes, with the pool kept in a
DuckDB file a user can open. Stdlib ``ThreadingHTTPServer`` + orjson like the OE simulator; ``/_admin/*``
(no auth, loopback peers only) switches faults and shows the pool.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import secrets
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from oe_assets.celonis_simulator.common import Reply, utc_now
from oe_assets.celonis_simulator.faults import CelonisFaults
from oe_assets.celonis_simulator.jobs import HourlyBudget, JobStore, PushJob, Worker, run_job
from oe_assets.celonis_simulator.models import DataModelStore
from oe_assets.celonis_simulator.pool import GLOBAL_SCHEMA, Pool, schema_for
from oe_assets.celonis_simulator.routes import PUSH, Request, find_route, multipart_parts
from oe_assets.celonis_simulator.schema import CHANGE_DATE_COLUMN
from oe_assets.core.loopback_http import BackgroundServer, DispatchingHandler, Simulator, is_loopback_host

KNOWN_SCOPES = (
    "integration.data-pools",
    "integration.data-pools:data_push",
    "integration.data-pools:read",
    "integration.data-pools:query",
    "integration.data-pools:continuous_data_push",
    "integration.data-models:read",
)
_FULL = "integration.data-pools"
_MAX_JSON_BODY = 16 * 1024 * 1024
_MULTIPART_OVERHEAD = 1024 * 1024
_REASONS = {204: "No Content", 409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests"}


class _TokenStore:
    """Issued OAuth tokens: their scopes, issue time and expiry (monotonic clock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float, frozenset[str]]] = {}
        self.issued = 0

    def issue(self, ttl: float, scopes: frozenset[str]) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            if len(self._tokens) > 10_000:  # forget expired tokens so the map stays small
                self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (now, now + ttl, scopes)
            self.issued += 1
        return token

    def check(self, token: str, faults: CelonisFaults) -> frozenset[str] | None:
        """The token's scopes, or None when it is unknown, expired or revoked."""
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or time.monotonic() >= entry[1] or faults.token_revoked(entry[0]):
            return None
        return entry[2]


def _scope_needed(kind: str, method: str, scopes: frozenset[str]) -> str | None:
    """The missing scope's description, or None when ``scopes`` allow the route."""
    if _FULL in scopes:
        return None
    if kind == PUSH:
        return None if "integration.data-pools:data_push" in scopes else f"{_FULL} or {_FULL}:data_push"
    if method == "GET" and scopes & {f"{_FULL}:read", "integration.data-models:read"}:
        return None
    return _FULL


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class _Handler(DispatchingHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Celonis-Simulator/1.0"
    log_prefix = "celonis-sim"

    # ------------------------------------------------------------ plumbing

    def _read_body(self, limit: int) -> bytes:
        """The request body (Content-Length only); 413 over ``limit``, 411 for a chunked body."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise Reply(411, "Send a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise Reply(400, "Bad Content-Length") from None
        if length < 0 or length > limit:
            self.close_connection = True
            raise Reply(413, f"The request body may hold at most {limit} bytes")
        self._body_read = True
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = b"" if payload is None and code == 204 else orjson.dumps(payload)
        if not self._body_read and int(self.headers.get("Content-Length") or 0) > 0:
            self.close_connection = True  # the unread body must not be taken for the next request
        self.send_response(code, _REASONS.get(code))
        if code != 204:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        sim = self.server.sim
        self._body_read = False
        try:
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            query = parse_qs(parts.query, keep_blank_values=True)
            if path == "/_admin" or path.startswith("/_admin/"):
                if not is_loopback_host(self.client_address[0]):
                    raise Reply(403, "Admin endpoints answer loopback clients only")
                self._admin(method, path, query, self._read_body(_MAX_JSON_BODY))
            elif path == "/oauth2/token":
                if method != "POST":
                    raise Reply(405, "Use POST for the token endpoint", {"Allow": "POST"})
                self._token(query, self._read_body(_MAX_JSON_BODY))
            else:
                self._api(method, path, query)
        except Reply as reply:
            self._send(reply.code, reply.payload, reply.headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500, record it, keep serving
            sim.record_internal_error(exc)
            with contextlib.suppress(OSError):
                self._send(500, {"reference": "simulator", "message": "Internal simulator error"})

    # ------------------------------------------------------------ auth

    def _token(self, query: dict[str, list[str]], body: bytes) -> None:
        """Client-credentials grant; client auth by HTTP Basic or form fields; parameters from the query
        string, a urlencoded or a multipart body."""
        sim = self.server.sim
        form = {k: v[0] for k, v in query.items() if v}
        form.update(_token_form(self.headers.get("Content-Type", ""), body))
        client_id, client_secret = _basic_credentials(self.headers.get("Authorization", ""))
        client_id = client_id or form.get("client_id", "")
        client_secret = client_secret or form.get("client_secret", "")
        if not (_same(client_id, sim.client_id) and _same(client_secret, sim.client_secret)):
            raise Reply(401, {"error": "invalid_client", "error_description": "Bad client credentials"})
        grant = form.get("grant_type")
        if grant != "client_credentials":
            error = "invalid_request" if not grant else "unsupported_grant_type"
            raise Reply(400, {"error": error, "error_description": "Only client_credentials is supported"})
        requested = form.get("scope", "").split()
        granted = (
            [s for s in dict.fromkeys(requested) if s in KNOWN_SCOPES] if requested else list(KNOWN_SCOPES)
        )
        if not granted:
            raise Reply(
                400, {"error": "invalid_scope", "error_description": f"Unknown scopes: {' '.join(requested)}"}
            )
        token = sim.tokens.issue(sim.token_ttl, frozenset(granted))
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(sim.token_ttl),
            "scope": " ".join(granted),
        }
        self._send(200, answer, {"Cache-Control": "no-store"})

    def _authorize(self, kind: str, method: str) -> None:
        """Bearer (OAuth token or API key) or AppKey; Reply(401) without valid credentials, Reply(403) when
        the token lacks the route's scope."""
        sim = self.server.sim
        scheme, _, credential = self.headers.get("Authorization", "").strip().partition(" ")
        credential = credential.strip()
        if not credential:
            raise _unauthorized("Authentication required")
        if scheme.lower() == "appkey":
            if _same(credential, sim.app_key):
                return
            raise _unauthorized("Invalid application key")
        if scheme.lower() != "bearer":
            raise _unauthorized("Use Authorization: Bearer <token> or AppKey <key>")
        if _same(credential, sim.api_key):
            return
        scopes = sim.tokens.check(credential, sim.faults)
        if scopes is None:
            raise _unauthorized("Invalid or expired access token")
        missing = _scope_needed(kind, method, scopes)
        if missing is not None:
            raise Reply(403, f"The access token lacks the scope {missing}")

    # ------------------------------------------------------------ API

    def _api(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        sim = self.server.sim
        injected = sim.faults.take_status()
        if injected == 429:
            raise Reply(429, "Too many requests, retry later", {"Retry-After": "1"})
        if injected is not None:
            raise Reply(injected, "Service temporarily unavailable")
        segments = [unquote(s) for s in path.strip("/").split("/")]
        route, params = find_route(method, segments)
        self._authorize(route.kind, method)
        if "pool" in params and params["pool"] != sim.pool_id:
            raise Reply(404, f"Data pool {params['pool']} not found")
        limit = sim.max_chunk_bytes + _MULTIPART_OVERHEAD if route.upload else _MAX_JSON_BODY
        body = self._read_body(limit)
        request = Request(method, params, query, self.headers.get("Content-Type", ""), body)
        code, payload = route.handler(sim, request)
        self._send(code, payload)

    # ------------------------------------------------------------ admin

    def _admin(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        sim = self.server.sim
        route = (method, path)
        if route == ("GET", "/_admin/faults"):
            self._send(200, sim.faults.to_dict())
        elif route == ("POST", "/_admin/faults"):
            try:
                changes = orjson.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object")
                sim.faults.update(changes)
            except (orjson.JSONDecodeError, ValueError) as exc:
                raise Reply(400, str(exc)) from None
            self._send(200, sim.faults.to_dict())
        elif route == ("GET", "/_admin/pool"):
            connection = query["connectionId"][0] if query.get("connectionId") else None
            counts = sim.pool.counts()
            self._send(200, {"tables": counts.get(schema_for(connection), {}), "schemas": counts})
        elif route == ("POST", "/_admin/reset-hour"):
            sim.budget.reset()
            self._send(200, {"executionsThisHour": sim.budget.used})
        elif route == ("GET", "/_admin/state"):
            self._send(200, sim.state())
        else:
            raise Reply(404, f"No admin resource {method} {path}")


def _unauthorized(message: str) -> Reply:
    return Reply(401, {"error": "unauthorized", "message": message}, {"WWW-Authenticate": "Bearer"})


def _basic_credentials(header: str) -> tuple[str, str]:
    """(client_id, client_secret) from ``Authorization: Basic ...``, empty strings without one."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Reply(
            401, {"error": "invalid_client", "error_description": "Malformed Basic credentials"}
        ) from None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _token_form(content_type: str, body: bytes) -> dict[str, str]:
    """The token request's fields from a urlencoded or multipart body (nothing from an empty one)."""
    if not body:
        return {}
    lowered = content_type.lower()
    if lowered.startswith("multipart/form-data"):
        boundary = next(
            (
                p.split("=", 1)[1].strip('"')
                for p in content_type.split(";")
                if p.strip().lower().startswith("boundary=")
            ),
            "",
        )
        if not boundary:
            raise Reply(
                400, {"error": "invalid_request", "error_description": "multipart body without boundary"}
            )
        return {
            name: data.decode("utf-8", "replace") for name, data in multipart_parts(boundary, body) if name
        }
    if "application/x-www-form-urlencoded" in lowered or not lowered:
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    raise Reply(
        400, {"error": "invalid_request", "error_description": f"Unsupported content type {content_type}"}
    )


class CelonisSimulatorServer(Simulator):
    """A Celonis team with one data pool, on loopback by default.

    ``start()`` serves in a daemon thread (port 0 picks a free port); ``stop()`` shuts it down, closes
    connections, frees the port and removes the chunk files. Also a context manager. ``url`` is the team
    URL (token endpoint and APIs). The pool lives in ``pool_db`` (in memory when None) and outlives
    stop/start; push jobs, tokens and data models live in memory.
    """

    def __init__(
        self,
        *,
        pool_db: Path | None = None,
        pool_id: str = "oe-demo-pool",
        client_id: str = "celonis-demo-client",
        client_secret: str = "celonis-demo-secret",  # noqa: S107 - the stand-in's public demo credential
        api_key: str = "celonis-demo-api-key",
        app_key: str = "celonis-demo-app-key",
        connection_ids: tuple[str, ...] = ("oe-push-connection",),
        token_ttl: float = 899.0,
        job_delay: float = 0.05,
        jobs_per_hour: int = 250,
        max_chunk_bytes: int = 1024**3,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        faults: CelonisFaults | None = None,
    ) -> None:
        self.pool_db = Path(pool_db) if pool_db is not None else None
        self.pool_id = pool_id
        self.client_id, self.client_secret = client_id, client_secret
        self.api_key, self.app_key = api_key, app_key
        self.connection_ids = tuple(connection_ids)
        self.token_ttl, self.job_delay = token_ttl, job_delay
        self.max_chunk_bytes = max_chunk_bytes
        self.host, self._requested_port, self.verbose = host, port, verbose
        self.faults = faults if faults is not None else CelonisFaults()
        self.pool = Pool(self.pool_db)
        self.jobs = JobStore(self._chunk_dir(), max_chunk_bytes)
        self.models = DataModelStore(self.pool, pool_id)
        self.budget = HourlyBudget(jobs_per_hour)
        self.tokens = _TokenStore()
        self.stopping = threading.Event()
        self.internal_errors: list[str] = []
        self._executions: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()
        self._http = BackgroundServer(host, port, "Celonis simulator")
        self._worker: Worker | None = None

    def _chunk_dir(self) -> Path | None:
        """Where this server keeps chunk files: next to the pool file, one folder per server."""
        if self.pool_db is None:
            return None
        return self.pool_db.parent / f"{self.pool_db.name}.chunks" / secrets.token_hex(6)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> CelonisSimulatorServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._http.serving:
            return self
        self.stopping.clear()
        self._http.serve(_Handler, self, self.record_internal_error)
        self._worker = Worker(self.record_internal_error, self.pool.session)
        return self

    def stop(self) -> None:
        """Stop serving, close connections, free the port, join the threads. Idempotent."""
        if not self._http.serving:
            return
        self.stopping.set()
        self._http.shut_down()
        if self._worker is not None:
            self._worker.stop()
        self.jobs.close()
        self._worker = None

    # ------------------------------------------------------------ actions the routes start

    def execute(self, job: PushJob) -> dict[str, Any]:
        """Queue a NEW job: 409 when it is not NEW, 429 (Retry-After: seconds to the next full UTC hour)
        when this hour's executions are used up."""
        with self.jobs.lock:
            if job.status != "NEW" or job.deleted:
                raise Reply(409, f"Data push job {job.id} is {job.status}; only NEW jobs can be executed")
            wait = self.budget.take()
            if wait is not None:
                message = f"Rate limit: at most {self.budget.limit} push-job executions per hour"
                raise Reply(429, message, {"Retry-After": str(wait)})
            job.status, job.last_modified = "QUEUED", utc_now()
            job.fail = self.faults.take_job_failure()
            answer = job.to_json()
        self._submit(lambda: self._run(job))
        return answer

    def _run(self, job: PushJob) -> None:
        try:
            status = run_job(self.jobs, self.pool, job, self.job_delay, self.stopping)
        except Exception:
            self.jobs.finish(job, "ERROR", ["Internal error of the Celonis simulator"])
            self._record_execution(job, "ERROR")
            raise
        if status is not None:
            self._record_execution(job, status)

    def _record_execution(self, job: PushJob, status: str) -> None:
        with self._lock:
            self._executions.append((job.id, job.target, job.job_type, status))

    def start_load(self, model_id: str, load_type: str, table_ids: list[str] | None) -> dict[str, Any]:
        """Start a data-model load that ends (SUCCESS or ERROR) ``job_delay`` seconds from now."""
        load = self.models.start_load(model_id, load_type, table_ids)
        due = time.monotonic() + self.job_delay

        def finish() -> None:
            if not self.stopping.wait(max(0.0, due - time.monotonic())):
                self.models.finish_load(model_id, load, self.faults.load_error)

        self._submit(finish)
        return load.history_entry(model_id)

    def _submit(self, task: Any) -> None:
        if self._worker is None:
            raise Reply(503, "The Celonis simulator is stopping")
        self._worker.submit(task)

    # ------------------------------------------------------------ for tests

    def pool_rows(self, table_name: str, connection_id: str | None = None) -> list[dict[str, Any]]:
        """The rows of a pool table (without ``_CELONIS_CHANGE_DATE``); KeyError when it does not exist."""
        return self.pool.rows(table_name, schema_for(connection_id))

    def pool_counts(self, connection_id: str | None = None) -> dict[str, int]:
        """Rows per table of the global schema (or of a connection's schema)."""
        return self.pool.counts(schema_for(connection_id)).get(schema_for(connection_id), {})

    def pool_columns(
        self, table_name: str, connection_id: str | None = None
    ) -> list[tuple[str, str, int | None]]:
        """(name, ColumnType, length in characters for strings else None) of a pool table's columns,
        without ``_CELONIS_CHANGE_DATE`` (like :meth:`pool_rows`); KeyError when there is no such table."""
        columns = self.pool.columns(table_name, schema_for(connection_id))
        return [(c.name, c.ctype, c.length) for c in columns if c.name != CHANGE_DATE_COLUMN]

    @property
    def executions(self) -> list[tuple[str, str, str, str]]:
        """(job id, targetName, type, final status) of every finished execution, in order."""
        with self._lock:
            return list(self._executions)

    @property
    def tokens_issued(self) -> int:
        return self.tokens.issued

    def state(self) -> dict[str, Any]:
        """A summary for ``GET /_admin/state``."""
        with self._lock:
            errors = len(self.internal_errors)
        return {
            "poolId": self.pool_id,
            "poolDb": str(self.pool_db) if self.pool_db else None,
            "jobs": len(self.jobs.of_pool(self.pool_id)),
            "executions": len(self.executions),
            "executionsThisHour": self.budget.used,
            "tokensIssued": self.tokens_issued,
            "faults": self.faults.to_dict(),
            "globalSchema": GLOBAL_SCHEMA,
            "internalErrors": errors,
        }

    def record_internal_error(self, exc: BaseException) -> None:
        """Keep a simulator bug visible (tests assert there are none) without crashing the server."""
        text = "".join(traceback.format_exception(exc))
        with self._lock:
            self.internal_errors.append(text)
        sys.stderr.write(f"celonis-sim internal error: {exc!r}\n")
        if self.verbose:
            sys.stderr.write(text)
