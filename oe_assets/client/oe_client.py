"""OeClient: tenants, execution templates and keyset-paged process contexts of the OE API.

Synchronous, one keep-alive :class:`httpx.Client`. Every path and query parameter name comes
from configuration (:class:`EndpointPaths`, :class:`QueryNames`) with the defaults of the API
contract (``reference/oe-api.md``).

Process contexts are read by key, not by page number, so that a collection that changes while
it is read (records created, updated, deleted) neither loses nor repeats a record; see
:meth:`OeClient.iter_process_context_pages`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import random
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from oe_assets.client.auth import TokenManager, fault_reason
from oe_assets.client.errors import (
    OeAuthError,
    OeBadResponseError,
    OeNotFoundError,
    OeRequestError,
)
from oe_assets.client.retry import ClientStats, Clock, RetryBudget, RetryingSender, RetryPolicy, Sleep, Target
from oe_assets.secret import Secret

logger = logging.getLogger("oe_assets.client")

OrderBy = Literal["created", "updated"]

# Record fields of the [documented] process-context shape.
_MAX_RENEWALS = 3  # token renewals for one request (a renewed token may expire during retries)
_PROCESS_ID_PATH = ("context", "processid")
_CREATED_PATH = ("metadata", "createdAt")
_UPDATED_PATH = ("metadata", "updatedAt")


@dataclass(frozen=True)
class EndpointPaths:
    """Paths under ``api_url`` (``token`` under ``auth_url``); ``{id}`` is the template id."""

    token: str = "/oauth/token"  # noqa: S105 - a path, not a password
    tenants: str = "/oe/tenants"
    templates: str = "/oe/execution-templates"
    template: str = "/oe/execution-templates/{id}"
    process_contexts: str = "/oe/execution-templates/{id}/process-contexts"


@dataclass(frozen=True)
class QueryNames:
    """Query parameter and header names; the sort values double as the records' JSON paths."""

    page_number: str = "pageNumber"
    page_size: str = "pageSize"
    created_since: str = "createdSince"
    updated_since: str = "updatedSince"
    status: str = "status"
    sort: str = "sort"
    sort_created: str = "metadata.createdAt"
    sort_updated: str = "metadata.updatedAt"
    total_count_header: str = "X-Total-Count"


@dataclass(frozen=True, repr=False)
class OeClientConfig:
    """Everything the client needs; ``repr`` shows ``Secret('***')`` and URLs without user info."""

    api_url: str
    auth_url: str
    client_id: str
    client_secret: Secret
    page_size: int = 1000
    timeout_seconds: float = 30.0
    retry_budget_seconds: float = 120.0  # bounded total time spent retrying one request
    max_attempts: int = 8
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    token_refresh_margin_seconds: float = 60.0
    paths: EndpointPaths = field(default_factory=EndpointPaths)
    scope: str | None = None
    max_page_size: int = 1000  # the API's largest accepted pageSize [contract]
    unreachable_after_attempts: int = 3  # connection errors before a never-reached host is "unreachable"
    query: QueryNames = field(default_factory=QueryNames)

    def __post_init__(self) -> None:
        if not isinstance(self.client_secret, Secret):
            raise TypeError("client_secret must be a oe_assets.secret.Secret, not a plain value")
        _check_base_url(self.api_url, "OE_API_URL")
        _check_base_url(self.auth_url, "OE_AUTH_URL")
        if self.max_page_size < 1:
            raise ValueError("max_page_size must be at least 1")
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError(f"page_size must be between 1 and {self.max_page_size}, got {self.page_size}")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.retry_budget_seconds < 0 or self.backoff_base_seconds < 0 or self.backoff_max_seconds < 0:
            raise ValueError("retry budget and backoff seconds must not be negative")
        if self.unreachable_after_attempts < 1:
            raise ValueError("unreachable_after_attempts must be at least 1")

    def __repr__(self) -> str:
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("api_url", "auth_url"):
                value = _clean_url(value)
            shown.append(f"{item.name}={value!r}")
        return f"OeClientConfig({', '.join(shown)})"


class OeClient:
    """Reads the OE API. Use as a context manager (closes the HTTP connection pool)."""

    def __init__(
        self,
        config: OeClientConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.stats = ClientStats()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._token_accepted = False  # the API answered 2xx to one of our tokens
        self._api_base = config.api_url.rstrip("/")
        self._auth_base = config.auth_url.rstrip("/")
        _warn_if_cleartext({"OE_API_URL": config.api_url, "OE_AUTH_URL": config.auth_url})
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(config.timeout_seconds),
            headers={"User-Agent": "oe-assets (httpx)"},
            follow_redirects=False,
        )
        self._sender = RetryingSender(
            self._http,
            RetryPolicy(
                max_attempts=config.max_attempts,
                budget_seconds=config.retry_budget_seconds,
                backoff_base_seconds=config.backoff_base_seconds,
                backoff_max_seconds=config.backoff_max_seconds,
                unreachable_after_attempts=config.unreachable_after_attempts,
            ),
            stats=self.stats,
            sleep=sleep,
            clock=clock,
            rng=self._rng,
        )
        token_url = self._auth_base + config.paths.token
        self._tokens = TokenManager(
            sender=self._sender,
            http=self._http,
            token_url=token_url,
            target=Target(
                url=_clean_url(token_url),
                origin=_origin(token_url),
                # The token request comes first: when both URLs name one host, either may be wrong.
                setting="OE_AUTH_URL"
                if _origin(token_url) != _origin(self._api_base)
                else "OE_API_URL and OE_AUTH_URL",
                what="OE token endpoint",
            ),
            client_id=config.client_id,
            client_secret=config.client_secret,
            scope=config.scope,
            refresh_margin_seconds=config.token_refresh_margin_seconds,
            stats=self.stats,
            clock=clock,
            redact=self._redact,
        )

    def __repr__(self) -> str:
        return f"OeClient(api_url={_clean_url(self.config.api_url)!r}, client_id={self.config.client_id!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- accounts and digital processes ------------------------------------------------------------

    def list_tenants(self) -> list[dict[str, Any]]:
        """All accounts visible to the API key (paged until a short page, de-duplicated by id)."""
        return self._list_all(self.config.paths.tenants)

    def list_execution_templates(self) -> list[dict[str, Any]]:
        """All digital processes (execution templates), de-duplicated by id."""
        return self._list_all(self.config.paths.templates)

    def get_execution_template(self, template_id: str) -> dict[str, Any]:
        """One digital process; :class:`OeNotFoundError` when it does not exist or is not visible."""
        path = self._template_path(self.config.paths.template, template_id)
        _, body = self._get_json(path, {}, None, template_id=template_id)
        if not isinstance(body, dict):
            raise OeBadResponseError(
                f"OE API answered GET {path} with {_json_kind(body)} instead of a JSON object: "
                "check OE_API_URL and the endpoint path settings.",
                path=path,
            )
        self.stats.records += 1
        return body

    # -- process contexts --------------------------------------------------------------------------

    def iter_process_context_pages(
        self,
        template_id: str,
        *,
        created_since: datetime | None = None,
        created_before: datetime | None = None,
        updated_since: datetime | None = None,
        status: str | None = None,
        order_by: OrderBy = "created",
    ) -> Iterator[list[dict[str, Any]]]:
        """Stream the process contexts of one digital process, one list per API page.

        Keyset paging: the API is asked for ``sort=<field>`` ascending (``metadata.createdAt``,
        or ``metadata.updatedAt`` with ``order_by="updated"``) and ``<field>Since`` = the largest
        sort value seen so far, with ``pageNumber=1`` (except in huge tie groups, see below).
        The filter is inclusive, so records that
        share the cursor value are read again and de-duplicated by ``context.processid``: a
        record already handed out with the same ``metadata.updatedAt`` is skipped, one with a
        different ``updatedAt`` (a newer version) is handed out again; consumers keep the latest.
        A full page whose records all share the cursor value (more ties than a page) is read
        again with a doubled page size up to ``max_page_size``; beyond that the page number
        advances for that cursor value. Paging stops at a page shorter than requested.

        ``created_before`` is an exclusive upper bound on ``metadata.createdAt`` (the API has
        none): with ``order_by="created"`` paging stops at the first record at or after it;
        with ``order_by="updated"`` such records are not handed out. ``created_since``,
        ``updated_since`` and ``status`` are the API's filters and combine freely.

        Records whose sort field is missing or unparsable are handed out (the raw layer
        quarantines them) but never become the cursor. Empty lists are never yielded.
        Arguments are checked here, before the first request.
        """
        if order_by not in ("created", "updated"):
            raise ValueError(f"order_by must be 'created' or 'updated', got {order_by!r}")
        path = self._template_path(self.config.paths.process_contexts, template_id)
        return self._iter_pages(
            path,
            template_id,
            created_since=_utc(created_since, "created_since"),
            created_before=_utc(created_before, "created_before"),
            updated_since=_utc(updated_since, "updated_since"),
            status=status,
            order_by=order_by,
        )

    def _iter_pages(
        self,
        path: str,
        template_id: str,
        *,
        created_since: datetime | None,
        created_before: datetime | None,
        updated_since: datetime | None,
        status: str | None,
        order_by: OrderBy,
    ) -> Iterator[list[dict[str, Any]]]:
        names = self.config.query
        if created_since is not None and created_before is not None and created_since >= created_before:
            return

        if order_by == "created":
            sort_value, since_name = names.sort_created, names.created_since
            cursor = created_since
            fixed: dict[str, str] = {}
            if updated_since is not None:
                fixed[names.updated_since] = _format_ts(updated_since)
        else:
            sort_value, since_name = names.sort_updated, names.updated_since
            cursor = updated_since
            fixed = {}
            if created_since is not None:
                fixed[names.created_since] = _format_ts(created_since)
        if status is not None:
            fixed[names.status] = status
        sort_path = tuple(sort_value.split("."))
        stop_at_bound = order_by == "created"

        base_page_size = self.config.page_size
        page_size = base_page_size
        page_number = 1
        # processid (or a content hash) -> (sort value, updatedAt) of the version handed out; kept
        # only for records the next request can return again (sort value >= cursor, or unknown).
        seen: dict[object, tuple[datetime | None, object]] = {}
        while True:
            params: dict[str, str | int] = dict(fixed)
            params[names.sort] = sort_value
            if cursor is not None:
                params[since_name] = _format_ts(cursor)
            params[names.page_number] = page_number
            params[names.page_size] = page_size
            records = self._get_list(path, params, page_number, template_id=template_id)
            received = len(records)
            instants = _instants(records, sort_path)
            end = received
            if stop_at_bound and created_before is not None:
                end = _index_at_or_after(instants, created_before)
            known = [instant for instant in instants[:end] if instant is not None]
            if cursor is not None and known and min(known) < cursor:
                raise OeBadResponseError(
                    f"OE API answered GET {path} (page {page_number}) with a record whose "
                    f"{sort_value} lies before the {since_name} filter it was sent: the API "
                    f"does not honour {since_name}={_format_ts(cursor)}; check OE_API_URL "
                    "and the query parameter settings.",
                    path=path,
                    page=page_number,
                )
            max_sort = max(known, default=None)
            next_cursor = max_sort if max_sort is not None and (cursor is None or max_sort > cursor) else None
            chosen, chosen_instants = records[:end], instants[:end]
            if not stop_at_bound and created_before is not None:
                created = _instants(chosen, _CREATED_PATH)
                keep = [c is None or c < created_before for c in created]
                chosen = [record for record, k in zip(chosen, keep, strict=True) if k]
                chosen_instants = [instant for instant, k in zip(chosen_instants, keep, strict=True) if k]
            fresh = _unseen(chosen, chosen_instants, seen, keep_from=next_cursor)
            # Nothing here keeps this page alive while the next one is read: a live page makes
            # the next parse and the garbage collector markedly slower (profiled: ~10%).
            del records, chosen

            if fresh:
                self.stats.records += len(fresh)
                yield fresh
            del fresh
            if end < received or received < page_size:
                return
            if next_cursor is not None:
                cursor = next_cursor
                page_number = 1
                page_size = base_page_size
                seen = {k: v for k, v in seen.items() if v[0] is None or v[0] >= next_cursor}
            elif page_size < self.config.max_page_size:
                # A full page without progress: every record shares the cursor value. Read the
                # tie group again from its start with a bigger page (robust against deletions).
                page_size = min(self.config.max_page_size, page_size * 2)
                page_number = 1
                logger.debug("%d records share %s=%s; page size %d", received, sort_value, cursor, page_size)
            else:
                page_number += 1
                logger.debug(
                    "more than %d records share %s=%s; page %d", page_size, sort_value, cursor, page_number
                )

    def count_process_contexts(
        self,
        template_id: str,
        *,
        created_since: datetime | None = None,
        created_before: datetime | None = None,
        updated_since: datetime | None = None,
        status: str | None = None,
    ) -> int:
        """How many process contexts match, from the ``X-Total-Count`` header (``pageSize=1``).

        ``created_before`` has no API filter: the count is then count(created_since) minus
        count(createdSince=created_before), two requests that are not one snapshot.
        """
        names = self.config.query
        created_since = _utc(created_since, "created_since")
        created_before = _utc(created_before, "created_before")
        updated_since = _utc(updated_since, "updated_since")
        if created_since is not None and created_before is not None and created_since >= created_before:
            return 0
        path = self._template_path(self.config.paths.process_contexts, template_id)
        params: dict[str, str | int] = {}
        if created_since is not None:
            params[names.created_since] = _format_ts(created_since)
        if updated_since is not None:
            params[names.updated_since] = _format_ts(updated_since)
        if status is not None:
            params[names.status] = status
        total = self._total_count(path, params, template_id)
        if created_before is not None:
            later = dict(params)
            later[names.created_since] = _format_ts(created_before)
            total = max(0, total - self._total_count(path, later, template_id))
        return total

    # -- internals ---------------------------------------------------------------------------------

    def _total_count(self, path: str, params: Mapping[str, str | int], template_id: str) -> int:
        names = self.config.query
        query = {**params, names.page_number: 1, names.page_size: 1}
        response, _ = self._get_json(
            path, query, 1, template_id=template_id, headers={names.total_count_header: "true"}
        )
        raw = response.headers.get(names.total_count_header, "").strip()
        if not raw.isdigit():
            raise OeBadResponseError(
                f"OE API answered GET {path} without a numeric {names.total_count_header} header although "
                f"it was asked for one: check OE_API_URL and the header name setting.",
                path=path,
            )
        return int(raw)

    def _list_all(self, path: str) -> list[dict[str, Any]]:
        names = self.config.query
        page_size = self.config.page_size
        found: dict[object, dict[str, Any]] = {}
        page_number = 1
        while True:
            params: dict[str, str | int] = {names.page_number: page_number, names.page_size: page_size}
            records = self._get_list(path, params, page_number)
            new = 0
            for index, record in enumerate(records):
                rid = record.get("id")
                key: object = rid if isinstance(rid, str) and rid else ("#", page_number, index)
                if key not in found:
                    new += 1
                found[key] = record  # a later version of the same id replaces the earlier one
            if len(records) < page_size:
                break
            if new == 0:
                logger.warning(
                    "GET %s page %d repeated only known ids; the API seems to ignore %s, stopping",
                    path,
                    page_number,
                    names.page_number,
                )
                break
            page_number += 1
        result = list(found.values())
        self.stats.records += len(result)
        return result

    def _get_list(
        self,
        path: str,
        params: Mapping[str, str | int],
        page_number: int,
        *,
        template_id: str | None = None,
    ) -> list[dict[str, Any]]:
        _, body = self._get_json(path, params, page_number, template_id=template_id)
        if not isinstance(body, list):
            raise OeBadResponseError(
                f"OE API answered GET {path} (page {page_number}) with {_json_kind(body)} instead of a "
                "JSON array: check OE_API_URL and the endpoint path settings.",
                path=path,
                page=page_number,
            )
        for index, item in enumerate(body):
            if not isinstance(item, dict):
                raise OeBadResponseError(
                    f"OE API answered GET {path} (page {page_number}) with {_json_kind(item)} at "
                    f"position {index} of the array instead of a JSON object: check OE_API_URL.",
                    path=path,
                    page=page_number,
                )
        self.stats.pages += 1
        return body

    def _get_json(
        self,
        path: str,
        params: Mapping[str, str | int],
        page_number: int | None,
        *,
        template_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, object]:
        """GET and parse the JSON body (the response and the parsed value).

        A 2xx body that does not parse (a page cut short by a proxy or a dropped stream) may be
        transient, so the request is sent again with the same backoff, attempts and time budget
        as a 5xx; when every attempt gives an unparsable body, :class:`OeBadResponseError` names
        the request and the page. Nothing is handed to the caller before a page parses.
        """
        policy = self._sender.policy
        where = f"GET {path}" + (f" (page {page_number})" if page_number is not None else "")
        budget = RetryBudget(policy.budget_seconds, sleep=self._sleep, clock=self._clock)
        attempt = 0
        while True:
            attempt += 1
            response = self._get(path, params, template_id=template_id, headers=headers)
            try:
                return response, orjson.loads(response.content)
            except orjson.JSONDecodeError:
                pass
            spent, remaining = budget.spent, budget.remaining
            if attempt >= policy.max_attempts or remaining <= 0:
                ctype = response.headers.get("Content-Type", "no content type").split(";")[0].strip()[:60]
                tries = f"{attempt} attempts" if attempt > 1 else "1 attempt"
                raise OeBadResponseError(
                    f"OE API answered {where} with a body that is not JSON ({len(response.content)} bytes, "
                    f"{ctype}; {tries} in {spent:.1f} s): check OE_API_URL and the endpoint path settings.",
                    path=path,
                    page=page_number,
                )
            delay = max(0.0, min(policy.backoff(attempt, self._rng), remaining))
            self.stats.count_retry("invalid JSON")
            logger.warning(
                "%s answered a body that is not JSON (%d bytes); retry %d of %d in %.2f s",
                where,
                len(response.content),
                attempt,
                policy.max_attempts - 1,
                delay,
            )
            budget.wait(delay)

    def _get(
        self,
        path: str,
        params: Mapping[str, str | int],
        *,
        template_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """GET with bearer token; renews it on 401 (see _MAX_RENEWALS); maps 4xx to OeError subclasses."""
        url = self._api_base + path
        target = Target(url=_clean_url(url), origin=_origin(url))
        token = self._tokens.token()

        def build() -> httpx.Request:
            request_headers = {"Accept": "application/json", "Authorization": f"Bearer {token.reveal()}"}
            if headers:
                request_headers.update(headers)
            return self._http.build_request("GET", url, params=dict(params), headers=request_headers)

        response, attempts = self._send_counting(build, target)
        renewals = 0
        while response.status_code == 401:
            # A fresh token refused at once, before the API ever took one of ours, will stay refused
            # (the auth URL issues tokens this API does not take). Once tokens have worked, or when
            # the fresh token waited through retries, it was revoked or expired: ask again (bounded).
            if renewals and ((attempts == 1 and not self._token_accepted) or renewals >= _MAX_RENEWALS):
                raise OeAuthError.token_refused("GET", path, 401, self._redact(fault_reason(response)))
            token = self._tokens.renew(token)
            renewals += 1
            response, attempts = self._send_counting(build, target)
        status = response.status_code
        if 200 <= status < 300:
            self._token_accepted = True
            return response
        if status == 404 and template_id is not None:
            raise OeNotFoundError(template_id)
        reason = self._redact(fault_reason(response))
        if status == 403:
            raise OeRequestError(
                f"OE API refused GET {path} (403 {reason}): check that the API key of OE_CLIENT_ID may "
                "read the Orchestration Engine.",
                path=path,
                status=status,
            )
        if status == 404:
            raise OeRequestError(
                f"OE API has no GET {path} (404 {reason}): check OE_API_URL and the endpoint path settings.",
                path=path,
                status=status,
            )
        if 300 <= status < 400:
            raise OeRequestError(
                f"OE API redirected GET {path} (HTTP {status}): check OE_API_URL (scheme, host and path).",
                path=path,
                status=status,
            )
        raise OeRequestError(
            f"OE API rejected GET {path} ({status} {reason}): check the client's page size and query "
            "parameter settings.",
            path=path,
            status=status,
        )

    def _send_counting(
        self, build: Callable[[], httpx.Request], target: Target
    ) -> tuple[httpx.Response, int]:
        """The sender's answer and how many attempts it took."""
        before = self.stats.requests
        response = self._sender.send(build, target)
        return response, self.stats.requests - before

    def _template_path(self, template: str, template_id: str) -> str:
        if not isinstance(template_id, str) or not template_id.strip():
            raise ValueError("template_id must be a non-empty string (a digital process ULID)")
        return template.replace("{id}", quote(template_id, safe=""))

    def _redact(self, text: str) -> str:
        """Mask the client secret and the access token if a server text echoes them."""
        secrets = [self.config.client_secret]
        token = self._tokens.current if hasattr(self, "_tokens") else None
        if token is not None:
            secrets.append(token)
        return _redact(text, secrets)


# -- helpers -------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\s\"',;:()\[\]{}<>=&]+")


def _redact(text: str, secrets: Iterable[Secret]) -> str:
    """Replace words equal to any secret by ``***`` (compares via Secret equality, no reveal)."""
    wanted = [s for s in secrets if s]
    if not wanted or not text:
        return text
    if Secret(text) in wanted:
        return "***"
    return _WORD.sub(lambda m: "***" if Secret(m.group(0)) in wanted else m.group(0), text)


def _dig(record: Mapping[str, Any], path: tuple[str, ...]) -> object:
    value: object = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _instants(records: list[dict[str, Any]], path: tuple[str, ...]) -> list[datetime | None]:
    """Each record's timestamp at ``path`` (see :func:`_parse_ts`), in one pass over the page."""
    if len(path) == 2:  # the usual "metadata.<field>": spare a _dig call per record
        outer, inner = path
        values = [m.get(inner) if isinstance(m := r.get(outer), dict) else None for r in records]
    else:
        values = [_dig(r, path) for r in records]
    return [_parse_ts(value) for value in values]


def _index_at_or_after(instants: list[datetime | None], bound: datetime) -> int:
    """Position of the first known instant at or after ``bound``; ``len(instants)`` if none is."""
    known = [instant for instant in instants if instant is not None]
    if not known or max(known) < bound:  # the usual page: nothing at the bound, no scan
        return len(instants)
    return next(i for i, instant in enumerate(instants) if instant is not None and instant >= bound)


def _unseen(
    records: list[dict[str, Any]],
    instants: list[datetime | None],
    seen: dict[object, tuple[datetime | None, object]],
    *,
    keep_from: datetime | None,
) -> list[dict[str, Any]]:
    """The records not handed out before in the same version (``metadata.updatedAt``); updates ``seen``.

    ``seen`` maps a record key to the (sort instant, version) handed out. A record can only be a
    repeat if its key is in ``seen`` or occurs twice in the page, so only those records are compared;
    the others are handed out as they are. ``seen`` gets the handed-out records the next request can
    return again: sort instant at or after ``keep_from`` (the next cursor) or unknown; all of them
    when ``keep_from`` is None (the cursor stays). This equals adding every record, then pruning.
    """
    keys = _record_keys(records)
    if len(set(keys)) < len(keys):  # a key twice in one page: compare record by record
        fresh: list[dict[str, Any]] = []
        for record, key, instant in zip(records, keys, instants, strict=True):
            version = _version(_dig(record, _UPDATED_PATH))
            previous = seen.get(key)
            if previous is not None and previous[1] == version:
                continue
            seen[key] = (instant, version)
            fresh.append(record)
        return fresh
    repeats = [i for i, key in enumerate(keys) if key in seen] if seen else []
    skipped: set[int] = set()
    for i in repeats:
        version = _version(_dig(records[i], _UPDATED_PATH))
        if seen[keys[i]][1] == version:
            skipped.add(i)
        else:
            seen[keys[i]] = (instants[i], version)  # a newer version: handed out again
    for record, key, instant in zip(records, keys, instants, strict=True):
        if (keep_from is None or instant is None or instant >= keep_from) and key not in seen:
            seen[key] = (instant, _version(_dig(record, _UPDATED_PATH)))
    if skipped:
        return [record for i, record in enumerate(records) if i not in skipped]
    return records


def _record_keys(records: list[dict[str, Any]]) -> list[object]:
    """:func:`_record_key` of each record, the ``context.processid`` lookup done in one pass."""
    outer, inner = _PROCESS_ID_PATH
    pids = [c.get(inner) if isinstance(c := r.get(outer), dict) else None for r in records]
    return [
        pid if isinstance(pid, str) and pid else _record_key(record)
        for pid, record in zip(pids, records, strict=True)
    ]


def _record_key(record: Mapping[str, Any]) -> object:
    pid = _dig(record, _PROCESS_ID_PATH)
    if isinstance(pid, str) and pid:
        return pid
    digest = hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
    return ("content", digest)


def _version(value: object) -> object:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_ts(value: object) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 string, or None when missing or unparsable.

    Fractions beyond microseconds (Go's nanoseconds) are truncated; naive values are UTC.
    """
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        # Python >= 3.11 reads "Z" and truncates long fractions itself: the usual value needs
        # neither strip() nor the regex, which cost more than the parse.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", value.strip()))
        except ValueError:
            return None
    if parsed.tzinfo is UTC:
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _format_ts(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds (microseconds when the value has them), ``Z`` suffix."""
    v = value.astimezone(UTC) if value.tzinfo is not None else value
    base = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond % 1000 == 0:
        return f"{base}.{v.microsecond // 1000:03d}Z"
    return f"{base}.{v.microsecond:06d}Z"


def _utc(value: datetime | None, name: str) -> datetime | None:
    """Naive datetimes are UTC (the warehouse convention); aware ones are converted to UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, str):
        return "a JSON string"
    return "a JSON number"


def _check_base_url(url: str, setting: str) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{setting} must be an absolute http(s) URL such as https://api.emporix.io: check {setting}."
        )


def _clean_url(url: str) -> str:
    """URL without user info, query and fragment (safe for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_if_cleartext(urls: Mapping[str, str]) -> None:
    """One warning per client for plain-http URLs to hosts other than loopback."""
    cleartext = [
        f"{setting}={_clean_url(url)}"
        for setting, url in urls.items()
        if urlsplit(url).scheme == "http" and not _is_loopback(urlsplit(url).hostname or "")
    ]
    if cleartext:
        message = (
            f"{' and '.join(cleartext)} use plain http to a host that is not loopback: the client "
            "credentials and access tokens would travel unencrypted; use https."
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
