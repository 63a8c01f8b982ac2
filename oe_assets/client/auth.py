"""OAuth2 client credentials for the OE API: a token cache and an :class:`httpx.Auth` that uses it.

``POST {auth_url}{token_path}`` with a form (``grant_type=client_credentials``, ``client_id``,
``client_secret``, optional ``scope``). :class:`TokenCache` keeps the token and asks for a new one
``refresh_margin_seconds`` before ``expires_in`` runs out (at most halfway through the token's
life, so short-lived tokens are not fetched for every call), or when the API refused it. There
are no refresh tokens: a new token is simply requested, through the same retry policy as data.

:class:`ClientCredentialsAuth` puts the bearer token on each request and, when the API answers
401, renews the token and sends the request again, inside its auth flow.

The client secret is a :class:`~oe_assets.config.secret.Secret`; :func:`_token_form` is the one place
that reveals it. Access tokens are Secrets too: no repr shows them, and :func:`~oe_assets.config.secret.redact`
masks them for as long as the cache keeps them (it keeps every token it obtained).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx
import orjson

from oe_assets.client.errors import OeAuthError
from oe_assets.client.retry import Answer, ClientStats, Clock, RetryingSender, Target
from oe_assets.client.transport import read_body
from oe_assets.config.secret import Secret, get_logger

logger = get_logger("oe_assets.client")

MAX_RENEWALS = 3
"""Token renewals for one request (a renewed token may expire during retries)."""
_REFUSAL_BODY_LIMIT = 64 * 1024
"""A refusal's body is read (httpx keeps it in the response history) but never needs more."""


@dataclass(frozen=True)
class AccessToken:
    value: Secret
    obtained_at: float  # clock() when the token request was sent
    expires_in: float | None  # seconds, as the token endpoint said; None when it did not say
    renew_at: float | None  # clock() from which the cache asks for a new token

    def usable(self, now: float) -> bool:
        return self.renew_at is None or now < self.renew_at


@dataclass(frozen=True)
class TokenRequest:
    """Where and with what the token is asked for."""

    url: str
    target: Target
    client_id: str
    client_secret: Secret
    scope: str | None = None


class TokenCache:
    """Fetches, caches and renews the bearer token for data calls (thread-safe)."""

    def __init__(
        self,
        request: TokenRequest,
        *,
        sender: RetryingSender,
        http: httpx.Client,
        refresh_margin_seconds: float,
        stats: ClientStats,
        clock: Clock = time.monotonic,
    ) -> None:
        self._request = request
        self._sender = sender
        self._http = http
        self._margin = max(0.0, refresh_margin_seconds)
        self._stats = stats
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._obtained: list[Secret] = []  # every token issued to us stays masked in messages

    def __repr__(self) -> str:
        state = "cached" if self._token is not None else "empty"
        return f"TokenCache(token_url={self._request.target.url!r}, client_id={self._request.client_id!r}, token={state})"

    def token(self) -> Secret:
        """A token that is not due for renewal, fetching one if needed."""
        with self._lock:
            token = self._token
            if token is None or not token.usable(self._clock()):
                if token is not None:
                    logger.debug("access token is due for renewal; requesting a new one")
                token = self._fetch()
            return token.value

    def renew(self, refused: Secret) -> Secret:
        """Replace a token the API refused (401), unless another caller already did."""
        with self._lock:
            token = self._token
            if token is None or token.value == refused:
                logger.info(
                    "%s refused the access token (401); requesting a new one", self._request.target.what
                )
                token = self._fetch()
            return token.value

    def _fetch(self) -> AccessToken:
        self._token = None
        self._stats.token_requests += 1
        obtained_at = self._clock()
        answer = self._sender.send(self._build_request, self._request.target, _as_is)
        value, expires_in = _read_token(answer, self._request.target.url)
        self._obtained.append(value)
        renew_at: float | None = None
        if expires_in is not None:
            renew_at = obtained_at + expires_in - min(self._margin, expires_in / 2.0)
        self._token = AccessToken(value, obtained_at, expires_in, renew_at)
        logger.debug(
            "obtained an access token (expires in %s s)", "?" if expires_in is None else f"{expires_in:g}"
        )
        return self._token

    def _build_request(self) -> httpx.Request:
        request = self._request
        return self._http.build_request(
            "POST",
            request.url,
            data=_token_form(request.client_id, request.client_secret, request.scope),
            headers={"Accept": "application/json"},
        )


class ClientCredentialsAuth(httpx.Auth):
    """Bearer token from a :class:`TokenCache`; on a 401, a new token and one more send.

    A fresh token refused at once, before the API ever took one of ours, will stay refused (the
    auth URL issues tokens this API does not take): the 401 is then handed back to the caller.
    Once tokens have worked, a refusal means revoked or expired: renew, up to MAX_RENEWALS times.
    """

    def __init__(self, tokens: TokenCache, *, body_limit: int = _REFUSAL_BODY_LIMIT) -> None:
        self._tokens = tokens
        self._body_limit = body_limit
        self.accepted = False  # the API answered 2xx to one of our tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._tokens.token()
        renewals = 0
        while True:
            request.headers["Authorization"] = f"Bearer {token.reveal()}"
            response = yield request
            if response.status_code != 401:
                self.accepted = self.accepted or response.is_success
                return
            if renewals >= MAX_RENEWALS or (renewals and not self.accepted):
                return
            _keep_bounded_body(response, self._body_limit)
            token = self._tokens.renew(token)
            renewals += 1


def _keep_bounded_body(response: httpx.Response, limit: int) -> None:
    """Read a refusal's body within ``limit`` bytes before httpx reads it without one.

    httpx reads the whole body of a response its auth flow answers with another request (to
    keep it in the history); a hostile 401 could inflate to gigabytes. Setting ``_content``
    is what ``Response.read`` itself does once it has the bytes.
    """
    try:
        body = read_body(response, limit=limit, until=float("inf"))
    except Exception:
        body = b""
        response.close()
    response._content = body


def fault_reason(answer: Answer) -> str:
    """A short reason phrase from an Apigee fault, an OAuth error or an Emporix error body."""
    reason = ""
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        fault = body.get("fault")
        if isinstance(fault, dict) and isinstance(fault.get("faultstring"), str):
            reason = fault["faultstring"]
        else:
            reason = next(
                (body[k] for k in ("error_description", "error", "message") if isinstance(body.get(k), str)),
                "",
            )
    if not reason:
        reason = answer.reason_phrase or "no reason given"
    reason = " ".join(reason.split())
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _read_token(answer: Answer, url: str) -> tuple[Secret, float | None]:
    """The token and its lifetime from the token endpoint's answer; OeAuthError for anything else."""
    status = answer.status_code
    if status in (404, 405):
        raise OeAuthError.no_token_endpoint(url, status)
    if status in (400, 401, 403):
        raise OeAuthError.bad_credentials(url, status, fault_reason(answer))
    if not answer.is_success:
        raise OeAuthError(
            f"The token endpoint at {url} answered HTTP {status}: check OE_AUTH_URL.", url=url, status=status
        )
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        raise OeAuthError.bad_token_response(url, "JSON body") from None
    if not isinstance(body, dict):
        raise OeAuthError.bad_token_response(url, "JSON object")
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise OeAuthError.bad_token_response(url, "access_token")
    token = Secret(value)  # masked from here on, also in the errors below
    token_type = body.get("token_type")
    if isinstance(token_type, str) and token_type and token_type.lower() != "bearer":
        raise OeAuthError.bad_token_response(url, f"token type (got {token_type[:20]!r})")
    return token, _seconds(body.get("expires_in"))


def _as_is(answer: Answer) -> Answer:
    return answer


def _token_form(client_id: str, client_secret: Secret, scope: str | None) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret.reveal(),
    }
    if scope:
        form["scope"] = scope
    return form


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds != seconds or seconds <= 0 or seconds == float("inf"):
        return None
    return seconds
