"""OeClient: tenants, execution templates and keyset-paged process contexts of the OE API.

The client is put together the way dlt builds its REST client, from small parts that each own
one concern:

* :class:`~oe_assets.client.auth.ClientCredentialsAuth` (an ``httpx.Auth``): the bearer token,
  renewed before expiry and on a 401;
* :class:`~oe_assets.client.paginator.KeysetPaginator`: the cursor, ties and de-duplication;
* :class:`~oe_assets.client.retry.RetryingSender`: one retry policy for 429, 5xx, transport
  errors and pages that do not parse, with a deadline per exchange and a cap on its size;
* :func:`~oe_assets.client.pages.parse_page`: a page cut into records, their texts and the
  elements that are not usable records.

Every path and query parameter name comes from configuration (:class:`EndpointPaths`,
:class:`~oe_assets.client.paginator.QueryNames`) with the defaults of the API contract.
Configuration is validated once, in :class:`OeClientConfig`.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from oe_assets.client.auth import ClientCredentialsAuth, TokenCache, TokenRequest, fault_reason
from oe_assets.client.errors import OeAuthError, OeBadResponseError, OeError, OeNotFoundError, OeRequestError
from oe_assets.client.pages import NotAnArray, Page, PageNotParsable, RejectedRecord, json_kind, parse_page
from oe_assets.client.paginator import (
    ContextQuery,
    KeysetPaginator,
    OrderBy,
    QueryNames,
)
from oe_assets.client.retry import (
    MEBIBYTE,
    Answer,
    ClientStats,
    Clock,
    RetryAnswer,
    RetryingSender,
    RetryPolicy,
    Sleep,
    Target,
)
from oe_assets.client.transport import DeadlineTransport
from oe_assets.config.secret import Secret, get_logger
from oe_assets.core.loopback_http import is_loopback_host
from oe_assets.core.timestamps import format_oe_timestamp

logger = get_logger("oe_assets.client")


@dataclass(frozen=True)
class EndpointPaths:
    """Paths under ``api_url`` (``token`` under ``auth_url``); ``{id}`` is the template id."""

    token: str = "/oauth/token"  # noqa: S105 - a path, not a password
    tenants: str = "/oe/tenants"
    templates: str = "/oe/execution-templates"
    template: str = "/oe/execution-templates/{id}"
    process_contexts: str = "/oe/execution-templates/{id}/process-contexts"


@dataclass(frozen=True, repr=False)
class OeClientConfig:
    """Everything the client needs; ``repr`` shows ``Secret('***')`` and URLs without user info."""

    api_url: str
    auth_url: str
    client_id: str
    client_secret: Secret
    page_size: int = 1000
    timeout_seconds: float = 30.0  # longest silence of the server within one exchange
    request_deadline_seconds: float = 60.0  # longest time one exchange (headers and body) may take
    retry_budget_seconds: float = 120.0  # bounded total time of one request, its retries included
    max_response_bytes: int = 256 * MEBIBYTE  # largest decoded body of one answer
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
            raise TypeError("client_secret must be a oe_assets.config.secret.Secret, not a plain value")
        _check_base_url(self.api_url, "OE_API_URL")
        _check_base_url(self.auth_url, "OE_AUTH_URL")
        if self.max_page_size < 1:
            raise ValueError("max_page_size must be at least 1")
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError(f"page_size must be between 1 and {self.max_page_size}, got {self.page_size}")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self.retry_policy()  # validates attempts, budget, backoff, deadline and size cap

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            budget_seconds=self.retry_budget_seconds,
            backoff_base_seconds=self.backoff_base_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            unreachable_after_attempts=self.unreachable_after_attempts,
            request_deadline_seconds=self.request_deadline_seconds,
            max_response_bytes=self.max_response_bytes,
        )

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
        self._api_base = config.api_url.rstrip("/")
        _warn_if_cleartext({"OE_API_URL": config.api_url, "OE_AUTH_URL": config.auth_url})
        self._http = httpx.Client(
            transport=transport if transport is not None else DeadlineTransport(),
            timeout=httpx.Timeout(config.timeout_seconds),
            headers={"User-Agent": "oe-assets (httpx)"},
            follow_redirects=False,
            event_hooks={"request": [self._count_request]},
        )
        self._sender = RetryingSender(
            self._http,
            config.retry_policy(),
            stats=self.stats,
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(),
        )
        self._tokens = TokenCache(
            _token_request(config),
            sender=self._sender,
            http=self._http,
            refresh_margin_seconds=config.token_refresh_margin_seconds,
            stats=self.stats,
            clock=clock,
        )
        self._auth = ClientCredentialsAuth(self._tokens)

    def __repr__(self) -> str:
        return f"OeClient(api_url={_clean_url(self.config.api_url)!r}, client_id={self.config.client_id!r})"

    def _count_request(self, request: httpx.Request) -> None:
        self.stats.requests += 1

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

    def list_tenants(self) -> Page:
        """All accounts visible to the API key (paged until a short page, de-duplicated by id)."""
        return self._list_all(self.config.paths.tenants)

    def list_execution_templates(self) -> Page:
        """All digital processes (execution templates), de-duplicated by id."""
        return self._list_all(self.config.paths.templates)

    def get_execution_template(self, template_id: str) -> dict[str, Any]:
        """One digital process; :class:`OeNotFoundError` when it does not exist or is not visible."""
        return self.get_execution_templates([template_id])[0]

    def get_execution_templates(self, template_ids: Sequence[str]) -> Page:
        """The given digital processes, each with the API's text, one request each."""
        records: list[dict[str, Any]] = []
        texts: list[str] = []
        for template_id in template_ids:
            record, text = self._get_object(
                self._template_path(self.config.paths.template, template_id), template_id
            )
            records.append(record)
            texts.append(text)
        self.stats.records += len(records)
        return Page(records, texts)

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
    ) -> Iterator[Page]:
        """Stream the process contexts of one digital process, one :class:`Page` per API page.

        Keyset paging (:mod:`oe_assets.client.paginator`): nothing is lost or repeated when the
        collection changes while it is read. ``created_before`` is an exclusive upper bound on
        ``metadata.createdAt`` (the API has none); ``created_since``, ``updated_since`` and
        ``status`` are the API's filters and combine freely. A page's elements that are not usable
        records come in ``page.rejected``; pages with nothing new are not yielded. Arguments are
        checked here, before the first request.
        """
        query = ContextQuery(created_since, created_before, updated_since, status, order_by)
        path = self._template_path(self.config.paths.process_contexts, template_id)
        paginator = KeysetPaginator(
            query, self.config.query, page_size=self.config.page_size, max_page_size=self.config.max_page_size
        )
        return self._iter_pages(path, template_id, paginator)

    def _iter_pages(self, path: str, template_id: str, paginator: KeysetPaginator) -> Iterator[Page]:
        while (params := paginator.next_request()) is not None:
            page = self._get_page(path, params, paginator.page_number, template_id)
            fresh = paginator.take(page, f"GET {path}")
            # Nothing here keeps this page alive while the next one is read: a live page makes
            # the next parse and the garbage collector markedly slower (profiled: ~10%).
            del page
            if fresh or fresh.rejected:
                self.stats.records += len(fresh)
                self.stats.rejected += len(fresh.rejected)
                yield fresh
            del fresh

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

        The API has no upper bound, so with ``created_before`` the count is count(created_since)
        minus count(createdSince=created_before): two requests that are not one snapshot.
        """
        query = ContextQuery(created_since, created_before, updated_since, status)
        if query.empty:
            return 0
        names = self.config.query
        path = self._template_path(self.config.paths.process_contexts, template_id)
        params: dict[str, str | int] = {names.page_number: 1, names.page_size: 1}
        if query.updated_since is not None:
            params[names.updated_since] = format_oe_timestamp(query.updated_since)
        if status is not None:
            params[names.status] = status
        total = self._total_count(path, params, query.created_since, template_id)
        if query.created_before is not None:
            total = max(0, total - self._total_count(path, params, query.created_before, template_id))
        return total

    # -- internals ---------------------------------------------------------------------------------

    def _total_count(
        self, path: str, params: dict[str, str | int], created_since: datetime | None, template_id: str
    ) -> int:
        names = self.config.query
        if created_since is not None:
            params = {**params, names.created_since: format_oe_timestamp(created_since)}

        def parse(answer: Answer) -> int:
            raw = self._checked(answer, path, template_id).headers.get(names.total_count_header, "").strip()
            if not raw.isdigit():
                raise OeBadResponseError(
                    f"OE API answered GET {path} without a numeric {names.total_count_header} header although "
                    f"it was asked for one: check OE_API_URL and the header name setting.",
                    path=path,
                )
            return int(raw)

        return self._get(path, params, parse, headers={names.total_count_header: "true"})

    def _list_all(self, path: str) -> Page:
        """Every page of a plain list (accounts, digital processes); a later version of an id
        replaces the earlier one, rejected elements are kept for the raw layer's quarantine."""
        names = self.config.query
        page_size = self.config.page_size
        found: dict[object, tuple[dict[str, Any], str]] = {}
        rejected: list[RejectedRecord] = []
        page_number = 1
        while True:
            params: dict[str, str | int] = {names.page_number: page_number, names.page_size: page_size}
            page = self._get_page(path, params, page_number, None)
            rejected += page.rejected
            new = 0
            for index, (record, text) in enumerate(zip(page, page.texts, strict=True)):
                rid = record.get("id")
                key: object = rid if isinstance(rid, str) and rid else ("#", page_number, index)
                new += key not in found
                found[key] = (record, text)
            if len(page) + len(page.rejected) < page_size:
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
        self.stats.records += len(found)
        self.stats.rejected += len(rejected)
        return Page([r for r, _ in found.values()], [t for _, t in found.values()], rejected)

    def _get_object(self, path: str, template_id: str) -> tuple[dict[str, Any], str]:
        """A JSON object and the API's text of it (retried while the body does not parse)."""

        def parse(answer: Answer) -> tuple[dict[str, Any], str]:
            checked = self._checked(answer, path, template_id)
            try:
                body = orjson.loads(checked.content)
            except orjson.JSONDecodeError:
                raise _not_json(checked, f"GET {path}", path, None) from None
            if not isinstance(body, dict):
                raise OeBadResponseError(
                    f"OE API answered GET {path} with {json_kind(body)} instead of a JSON object: "
                    "check OE_API_URL and the endpoint path settings.",
                    path=path,
                )
            return body, checked.content.decode().strip()

        return self._get(path, {}, parse)

    def _get_page(
        self, path: str, params: Mapping[str, str | int], page_number: int, template_id: str | None
    ) -> Page:
        """One page: retried while the body cannot be cut into a JSON array's elements."""
        where = f"GET {path} (page {page_number})"

        def parse(answer: Answer) -> Page:
            answer = self._checked(answer, path, template_id)
            try:
                return parse_page(answer.content)
            except NotAnArray as exc:
                raise OeBadResponseError(
                    f"OE API answered {where} with {exc.kind} instead of a JSON array: check OE_API_URL "
                    "and the endpoint path settings.",
                    path=path,
                    page=page_number,
                ) from None
            except PageNotParsable:
                raise _not_json(answer, where, path, page_number) from None

        page = self._get(path, params, parse)
        self.stats.pages += 1
        return page

    def _get(
        self,
        path: str,
        params: Mapping[str, str | int],
        parse: Callable[[Answer], Any],
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET ``path`` with the bearer token under the retry policy; ``parse`` of the answer."""
        url = self._api_base + path
        request_headers = {"Accept": "application/json", **(headers or {})}

        def build() -> httpx.Request:
            return self._http.build_request("GET", url, params=dict(params), headers=request_headers)

        return self._sender.send(
            build, Target(url=_clean_url(url), origin=_origin(url)), parse, auth=self._auth
        )

    def _checked(self, answer: Answer, path: str, template_id: str | None) -> Answer:
        """The answer if 2xx; otherwise the error that names what to fix."""
        status = answer.status_code
        if answer.is_success:
            return answer
        reason = fault_reason(answer)
        if status == 401:
            raise OeAuthError.token_refused("GET", path, 401, reason)
        if status == 404 and template_id is not None:
            raise OeNotFoundError(template_id)
        raise OeRequestError(_refusal_message(status, path, reason), path=path, status=status)

    def _template_path(self, template: str, template_id: str) -> str:
        if not isinstance(template_id, str) or not template_id.strip():
            raise ValueError("template_id must be a non-empty string (a digital process ULID)")
        return template.replace("{id}", quote(template_id, safe=""))


# -- helpers -------------------------------------------------------------------------------------


def _token_request(config: OeClientConfig) -> TokenRequest:
    token_url = config.auth_url.rstrip("/") + config.paths.token
    # The token request comes first: when both URLs name one host, either may be wrong.
    same_host = _origin(token_url) == _origin(config.api_url.rstrip("/"))
    target = Target(
        url=_clean_url(token_url),
        origin=_origin(token_url),
        setting="OE_API_URL and OE_AUTH_URL" if same_host else "OE_AUTH_URL",
        what="OE token endpoint",
    )
    return TokenRequest(token_url, target, config.client_id, config.client_secret, config.scope)


def _refusal_message(status: int, path: str, reason: str) -> str:
    if status == 403:
        return (
            f"OE API refused GET {path} (403 {reason}): check that the API key of OE_CLIENT_ID may "
            "read the Orchestration Engine."
        )
    if status == 404:
        return f"OE API has no GET {path} (404 {reason}): check OE_API_URL and the endpoint path settings."
    if 300 <= status < 400:
        return f"OE API redirected GET {path} (HTTP {status}): check OE_API_URL (scheme, host and path)."
    return (
        f"OE API rejected GET {path} ({status} {reason}): check the client's page size and query "
        "parameter settings."
    )


def _not_json(answer: Answer, where: str, path: str, page_number: int | None) -> RetryAnswer:
    """A body that does not parse may be a page cut short: worth asking for again."""
    ctype = answer.headers.get("Content-Type", "no content type").split(";")[0].strip()[:60]
    size = len(answer.content)

    def give_up(attempts: int, seconds: float) -> OeError:
        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
        return OeBadResponseError(
            f"OE API answered {where} with a body that is not JSON ({size} bytes, {ctype}; {tries} in "
            f"{seconds:.1f} s): check OE_API_URL and the endpoint path settings.",
            path=path,
            page=page_number,
        )

    return RetryAnswer("invalid JSON", f"a body that is not JSON ({size} bytes)", give_up)


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


def _warn_if_cleartext(urls: Mapping[str, str]) -> None:
    """One warning per client for plain-http URLs to hosts other than loopback."""
    cleartext = [
        f"{setting}={_clean_url(url)}"
        for setting, url in urls.items()
        if urlsplit(url).scheme == "http" and not is_loopback_host(urlsplit(url).hostname or "")
    ]
    if cleartext:
        message = (
            f"{' and '.join(cleartext)} use plain http to a host that is not loopback: the client "
            "credentials and access tokens would travel unencrypted; use https."
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
