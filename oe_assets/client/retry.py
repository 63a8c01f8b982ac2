"""One retry policy for every request: backoff with full jitter, ``Retry-After``, bounded total time.

:class:`RetryingSender` sends one logical request until an answer is not worth retrying (anything
but 429, 5xx, a transport error, or a body its ``parse`` step refuses with :class:`RetryAnswer`,
such as a JSON page cut short), or until ``max_attempts`` or ``budget_seconds`` run out.

The budget bounds the whole call, waits and attempts alike: each attempt's exchange has a
deadline (:mod:`oe_assets.client.transport`) of at most ``request_deadline_seconds`` and never
beyond what is left of the budget, and its decoded body may not exceed ``max_response_bytes``.
Sleep, clock and random numbers are injected so tests run fast and deterministic; waits count
at their requested length, so an injected no-op sleep still spends the budget.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from oe_assets.client.errors import (
    OeError,
    OeResponseTooLargeError,
    OeRetryBudgetExceeded,
    OeUnreachableError,
)
from oe_assets.client.transport import DeadlinePassed, ResponseTooLarge, deadline, read_body
from oe_assets.config.secret import get_logger

logger = get_logger("oe_assets.client")

Sleep = Callable[[float], None]
Clock = Callable[[], float]
T = TypeVar("T")
MEBIBYTE = 1 << 20
MIN_ATTEMPT_SECONDS = 0.25
"""The least time of the budget an attempt is started with (less would fail by its deadline alone)."""


@dataclass
class ClientStats:
    """Counters of one client's traffic (for Dagster metadata: "API pages read", "retries")."""

    requests: int = 0  # HTTP requests sent, retries, token requests and re-sends after a 401 included
    pages: int = 0  # list pages received (tenants, templates, process contexts)
    records: int = 0  # records handed to the caller (after de-duplication)
    rejected: int = 0  # page elements that were not usable records (handed out as RejectedRecord)
    retries: int = 0  # attempts that were repeated because of a retryable failure
    retries_by_reason: dict[str, int] = field(default_factory=dict)
    token_requests: int = 0
    bytes: int = 0  # decoded response body bytes received

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
    request_deadline_seconds: float = 60.0
    max_response_bytes: int = 256 * MEBIBYTE

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.budget_seconds < 0 or self.backoff_base_seconds < 0 or self.backoff_max_seconds < 0:
            raise ValueError("retry budget and backoff seconds must not be negative")
        if self.unreachable_after_attempts < 1:
            raise ValueError("unreachable_after_attempts must be at least 1")
        if self.request_deadline_seconds <= 0:
            raise ValueError("request_deadline_seconds must be positive")
        if self.max_response_bytes < 1:
            raise ValueError("max_response_bytes must be at least 1")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(n-1))] for the n-th retry (n >= 1)."""
        exponent = min(max(retry_number - 1, 0), 62)
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * (2.0**exponent))
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class Answer:
    """A complete answer: status, headers and the decoded body (read within the bounds)."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    reason_phrase: str = ""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


class RetryAnswer(Exception):
    """Raised by a ``parse`` step: the answer came, but is worth asking for again.

    ``give_up(attempts, seconds)`` makes the error raised when no attempt is left.
    """

    def __init__(self, key: str, reason: str, give_up: Callable[[int, float], OeError]) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason
        self.give_up = give_up


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


@dataclass
class _Retry:
    """A failed attempt worth repeating."""

    key: str
    reason: str
    retry_after: float | None = None
    give_up: Callable[[int, float], OeError] | None = None
    connect_error: bool = False


class RetryingSender:
    """Sends requests through an :class:`httpx.Client` under one :class:`RetryPolicy`."""

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

    def send(
        self,
        build: Callable[[], httpx.Request],
        target: Target,
        parse: Callable[[Answer], T],
        *,
        auth: httpx.Auth | None = None,
    ) -> T:
        """``parse`` of the first answer not worth retrying; raises when attempts or time run out."""
        budget = RetryBudget(self.policy.budget_seconds, sleep=self._sleep, clock=self._clock)
        attempt = 0
        only_connect_errors = True
        while True:
            attempt += 1
            request = build()
            outcome = self._attempt(request, target, parse, auth, budget)
            if not isinstance(outcome, _Retry):
                return outcome
            only_connect_errors = only_connect_errors and outcome.connect_error
            self._check_unreachable(target, outcome, attempt, only_connect_errors)
            delay = self._delay(outcome, attempt, budget)
            if delay is None or attempt >= self.policy.max_attempts:
                raise self._give_up(target, outcome, attempt, budget.spent, only_connect_errors)
            self._wait(request, outcome, attempt, delay, budget)

    def _delay(self, outcome: _Retry, attempt: int, budget: RetryBudget) -> float | None:
        """How long to wait before the next attempt; None when no attempt would fit in the budget.

        A jittered backoff is shortened to leave the next attempt :data:`MIN_ATTEMPT_SECONDS`; a
        ``Retry-After`` is the server's request and is never shortened: when it would leave less
        than that, the call gives up now instead of after a pointless wait.
        """
        room = budget.remaining - MIN_ATTEMPT_SECONDS
        if outcome.retry_after is None:
            return max(0.0, min(self.policy.backoff(attempt, self._rng), room)) if room > 0 else None
        if outcome.retry_after > room:
            outcome.reason = f"{outcome.reason}, asked to wait {outcome.retry_after:g} s"
            return None
        return outcome.retry_after

    def _attempt(
        self,
        request: httpx.Request,
        target: Target,
        parse: Callable[[Answer], T],
        auth: httpx.Auth | None,
        budget: RetryBudget,
    ) -> T | _Retry:
        """One exchange within its deadline; ``parse`` of the answer or why to try again."""
        seconds = max(0.0, min(self.policy.request_deadline_seconds, budget.remaining))
        until = time.monotonic() + seconds
        try:
            answer = self._exchange(request, auth, until)
        except httpx.RequestError as exc:  # transport errors, timeouts, bodies that fail to decode
            return self._transport_failure(exc, target, until, seconds)
        except DeadlinePassed:
            return _Retry("deadline", f"no complete answer within {seconds:.0f} s")
        except ResponseTooLarge as exc:
            raise OeResponseTooLargeError(_label(request), exc.limit, setting=target.setting) from None
        self._reached.add(target.origin)
        status = answer.status_code
        logger.debug("%s -> %d (%d bytes)", _label(request), status, len(answer.content))
        if status == 429 or status >= 500:
            return _Retry(str(status), f"HTTP {status}", parse_retry_after(answer.headers.get("Retry-After")))
        try:
            return parse(answer)
        except RetryAnswer as retry:
            return _Retry(retry.key, retry.reason, give_up=retry.give_up)

    def _exchange(self, request: httpx.Request, auth: httpx.Auth | None, until: float) -> Answer:
        with deadline(until):
            response = self._http.send(request, auth=auth, stream=True)
            try:
                body = read_body(response, limit=self.policy.max_response_bytes, until=until)
            finally:
                response.close()
        self.stats.bytes += len(body)
        return Answer(response.status_code, response.headers, body, response.reason_phrase)

    def _transport_failure(
        self, exc: httpx.RequestError, target: Target, until: float, seconds: float
    ) -> _Retry:
        key, reason = classify_transport_error(exc)
        if isinstance(exc, httpx.TimeoutException) and time.monotonic() >= until - 1e-3:
            key, reason = "deadline", f"no complete answer within {seconds:.0f} s"
        return _Retry(key, reason, connect_error=isinstance(exc, httpx.ConnectError))

    def _check_unreachable(self, target: Target, outcome: _Retry, attempt: int, only_connect: bool) -> None:
        never_reached = target.origin not in self._reached
        if only_connect and never_reached and attempt >= self.policy.unreachable_after_attempts:
            raise OeUnreachableError(target.url, outcome.reason, setting=target.setting, what=target.what)

    def _give_up(
        self, target: Target, outcome: _Retry, attempts: int, spent: float, only_connect: bool
    ) -> OeError:
        if only_connect and target.origin not in self._reached:
            return OeUnreachableError(target.url, outcome.reason, setting=target.setting, what=target.what)
        if outcome.give_up is not None:
            return outcome.give_up(attempts, spent)
        return OeRetryBudgetExceeded(
            target.url,
            outcome.reason,
            attempts,
            spent,
            setting=target.setting,
            what=target.what,
            last_status=int(outcome.key) if outcome.key.isdigit() else None,
            retry_after=outcome.retry_after,
        )

    def _wait(
        self, request: httpx.Request, outcome: _Retry, attempt: int, delay: float, budget: RetryBudget
    ) -> None:
        self.stats.count_retry(outcome.key)
        log = logger.info if outcome.key == "429" else logger.warning
        log(
            "%s failed (%s) on attempt %d of at most %d; trying again in %.2f s",
            _label(request),
            outcome.reason,
            attempt,
            self.policy.max_attempts,
            delay,
        )
        budget.wait(delay)


def _label(request: httpx.Request) -> str:
    """``METHOD /path?query`` for logs: no host credentials, no headers, no body."""
    url = request.url
    query = url.query.decode("ascii", "replace")
    return f"{request.method} {url.path}" + (f"?{query}" if query else "")
