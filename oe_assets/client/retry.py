"""Retries with exponential backoff and full jitter, ``Retry-After`` and a bounded total time.

:class:`RetryingSender` sends one logical request until it gets an answer that is not worth
retrying (anything but 429 and 5xx), or until ``max_attempts`` or ``budget_seconds`` run out.
Connection errors, timeouts and dropped connections are retried too. Sleep, clock and random
numbers are injected so tests run fast and deterministic.

The budget counts wall time since the first attempt, with every sleep counted at its requested
length (so an injected no-op sleep still spends the budget as a real one would).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from oe_assets.client.errors import OeRetryBudgetExceeded, OeUnreachableError

logger = logging.getLogger("oe_assets.client")

Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass
class ClientStats:
    """Counters of one client's traffic (for Dagster metadata: "API pages read", "retries")."""

    requests: int = 0  # HTTP requests sent, retries and token requests included
    pages: int = 0  # list pages received (tenants, templates, process contexts)
    records: int = 0  # records handed to the caller (after de-duplication)
    retries: int = 0  # attempts that were repeated because of a retryable failure
    retries_by_reason: dict[str, int] = field(default_factory=dict)
    token_requests: int = 0
    bytes: int = 0  # response body bytes received

    def count_retry(self, reason_key: str) -> None:
        self.retries += 1
        self.retries_by_reason[reason_key] = self.retries_by_reason.get(reason_key, 0) + 1


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    budget_seconds: float = 120.0
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    unreachable_after_attempts: int = 3

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.budget_seconds < 0 or self.backoff_base_seconds < 0 or self.backoff_max_seconds < 0:
            raise ValueError("retry budget and backoff seconds must not be negative")
        if self.unreachable_after_attempts < 1:
            raise ValueError("unreachable_after_attempts must be at least 1")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(n-1))] for the n-th retry (n >= 1)."""
        exponent = min(max(retry_number - 1, 0), 62)
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * (2.0**exponent))
        return rng.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds == float("inf"):  # NaN or infinity
        return None
    return max(0.0, seconds)


def classify_transport_error(exc: httpx.RequestError) -> tuple[str, str]:
    """(stats key, human reason) for a transport error; never includes the exception text."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "timeout", "connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", "read timeout" if isinstance(exc, httpx.ReadTimeout) else "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect error", _connect_reason(exc)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "connection dropped", "connection dropped"
    if isinstance(exc, httpx.DecodingError):
        return "decoding error", "response body could not be decoded"
    return "transport error", type(exc).__name__


def _connect_reason(exc: httpx.ConnectError) -> str:
    # Only fixed phrases leave this function: the exception text itself is never copied.
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "nodename" in text or "getaddrinfo" in text or "resolve" in text:
        return "host name not found"
    if "ssl" in text or "certificate" in text:
        return "TLS handshake failed"
    if "unreachable" in text:
        return "network unreachable"
    return "connection failed"


@dataclass(frozen=True)
class Target:
    """Where a request goes, for messages: URL without query, the setting that names it."""

    url: str  # scheme://host[:port]/path, no credentials, no query
    origin: str  # scheme://host[:port], to remember hosts that answered before
    setting: str = "OE_API_URL"
    what: str = "OE API"


class RetryBudget:
    """Time spent on one request's attempts and waits.

    Waits count at their requested length, so an injected fake sleep still spends the budget.
    """

    def __init__(self, budget_seconds: float, *, sleep: Sleep, clock: Clock) -> None:
        self._budget_seconds = budget_seconds
        self._sleep = sleep
        self._clock = clock
        self._start = clock()
        self._slept_requested = 0.0
        self._slept_actual = 0.0

    @property
    def spent(self) -> float:
        return (self._clock() - self._start) - self._slept_actual + self._slept_requested

    @property
    def remaining(self) -> float:
        return self._budget_seconds - self.spent

    def wait(self, delay: float) -> None:
        before = self._clock()
        self._sleep(delay)
        self._slept_actual += self._clock() - before
        self._slept_requested += delay


class RetryingSender:
    """Sends requests through an :class:`httpx.Client`, retrying 429, 5xx and transport errors."""

    def __init__(
        self,
        http: httpx.Client,
        policy: RetryPolicy,
        *,
        stats: ClientStats,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self.policy = policy
        self.stats = stats
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._reached: set[str] = set()

    def send(self, build: Callable[[], httpx.Request], target: Target) -> httpx.Response:
        """Send until a non-retryable answer; raise when attempts or the time budget run out."""
        policy = self.policy
        budget = RetryBudget(policy.budget_seconds, sleep=self._sleep, clock=self._clock)
        attempt = 0
        connect_errors_only = True
        while True:
            attempt += 1
            request = build()
            label = _label(request)
            t0 = self._clock()
            self.stats.requests += 1
            try:
                response = self._http.send(request)
            except httpx.RequestError as exc:  # transport errors, and bodies that fail to decode
                key, reason = classify_transport_error(exc)
                logger.debug("%s -> %s (attempt %d)", label, reason, attempt)
                unreached = target.origin not in self._reached
                if not isinstance(exc, httpx.ConnectError):
                    connect_errors_only = False
                elif unreached and connect_errors_only and attempt >= policy.unreachable_after_attempts:
                    raise OeUnreachableError(
                        target.url, reason, setting=target.setting, what=target.what
                    ) from None
                retry_after: float | None = None
            else:
                self._reached.add(target.origin)
                connect_errors_only = False
                self.stats.bytes += len(response.content)
                elapsed_ms = (self._clock() - t0) * 1000.0
                logger.debug(
                    "%s -> %d (attempt %d, %.0f ms, %d bytes)",
                    label,
                    response.status_code,
                    attempt,
                    elapsed_ms,
                    len(response.content),
                )
                status = response.status_code
                if status != 429 and status < 500:
                    return response
                key = str(status)
                reason = f"HTTP {status}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                response.close()

            spent, remaining = budget.spent, budget.remaining
            if attempt >= policy.max_attempts or remaining <= 0:
                if connect_errors_only and target.origin not in self._reached:
                    raise OeUnreachableError(target.url, reason, setting=target.setting, what=target.what)
                raise OeRetryBudgetExceeded(
                    target.url, reason, attempt, spent, setting=target.setting, what=target.what
                )
            delay = retry_after if retry_after is not None else policy.backoff(attempt, self._rng)
            delay = max(0.0, min(delay, remaining))
            self.stats.count_retry(key)
            log = logger.info if key == "429" else logger.warning
            log(
                "%s failed (%s); retry %d of %d in %.2f s",
                label,
                reason,
                attempt,
                policy.max_attempts - 1,
                delay,
            )
            budget.wait(delay)


def _label(request: httpx.Request) -> str:
    """``METHOD /path?query`` for logs: no host credentials, no headers, no body."""
    url = request.url
    query = url.query.decode("ascii", "replace")
    return f"{request.method} {url.path}" + (f"?{query}" if query else "")
