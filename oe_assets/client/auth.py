"""OAuth2 client-credentials token cache for the OE API.

``POST {auth_url}{token_path}`` with a form (``grant_type=client_credentials``, ``client_id``,
``client_secret``, optional ``scope``). The token is cached and renewed
``refresh_margin_seconds`` before ``expires_in`` runs out (at most halfway through the token's
life, so short-lived tokens are not fetched for every call); :meth:`TokenManager.renew` replaces
a token the API refused. There are no refresh tokens: a new token is simply requested.

The client secret is a :class:`~oe_assets.secret.Secret`; :func:`_token_form` is the one place
that reveals it. Access tokens are kept in a ``Secret`` too, so no repr can show them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson

from oe_assets.client.errors import OeAuthError
from oe_assets.client.retry import ClientStats, Clock, RetryingSender, Target
from oe_assets.secret import Secret

logger = logging.getLogger("oe_assets.client")


@dataclass(frozen=True)
class AccessToken:
    value: Secret
    obtained_at: float  # clock() when the token request was sent
    expires_in: float | None  # seconds, as the token endpoint said; None when it did not say
    renew_at: float | None  # clock() from which the cache asks for a new token

    def usable(self, now: float) -> bool:
        return self.renew_at is None or now < self.renew_at


class TokenManager:
    """Fetches, caches and renews the bearer token for data calls."""

    def __init__(
        self,
        *,
        sender: RetryingSender,
        http: httpx.Client,
        token_url: str,
        target: Target,
        client_id: str,
        client_secret: Secret,
        scope: str | None,
        refresh_margin_seconds: float,
        stats: ClientStats,
        clock: Clock = time.monotonic,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self._sender = sender
        self._http = http
        self._token_url = token_url
        self._target = target
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._margin = max(0.0, refresh_margin_seconds)
        self._stats = stats
        self._clock = clock
        self._redact = redact
        self._lock = threading.Lock()
        self._token: AccessToken | None = None

    def __repr__(self) -> str:
        state = "cached" if self._token is not None else "empty"
        return f"TokenManager(token_url={self._token_url!r}, client_id={self._client_id!r}, token={state})"

    @property
    def current(self) -> Secret | None:
        """The cached token (possibly stale), for redaction; never for sending."""
        token = self._token
        return token.value if token is not None else None

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
                logger.info("OE API refused the access token (401); requesting a new one")
                token = self._fetch()
            return token.value

    def _fetch(self) -> AccessToken:
        self._token = None
        self._stats.token_requests += 1
        obtained_at = self._clock()
        response = self._sender.send(self._build_request, self._target)
        status = response.status_code
        if status == 404 or status == 405:
            raise OeAuthError.no_token_endpoint(self._target.url, status)
        if status in (400, 401, 403):
            raise OeAuthError.bad_credentials(self._target.url, status, self._fault_reason(response))
        if not 200 <= status < 300:
            raise OeAuthError(
                f"The token endpoint at {self._target.url} answered HTTP {status}: check OE_AUTH_URL.",
                url=self._target.url,
                status=status,
            )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise OeAuthError.bad_token_response(self._target.url, "JSON body") from None
        if not isinstance(body, dict):
            raise OeAuthError.bad_token_response(self._target.url, "JSON object")
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise OeAuthError.bad_token_response(self._target.url, "access_token")
        token_type = body.get("token_type")
        if isinstance(token_type, str) and token_type and token_type.lower() != "bearer":
            raise OeAuthError.bad_token_response(self._target.url, f"token type (got {token_type[:20]!r})")
        expires_in = _seconds(body.get("expires_in"))
        renew_at: float | None = None
        if expires_in is not None:
            margin = min(self._margin, expires_in / 2.0)
            renew_at = obtained_at + expires_in - margin
        self._token = AccessToken(Secret(value), obtained_at, expires_in, renew_at)
        logger.debug(
            "obtained an access token (expires in %s s)", "?" if expires_in is None else f"{expires_in:g}"
        )
        return self._token

    def _build_request(self) -> httpx.Request:
        return self._http.build_request(
            "POST",
            self._token_url,
            data=_token_form(self._client_id, self._client_secret, self._scope),
            headers={"Accept": "application/json"},
        )

    def _fault_reason(self, response: httpx.Response) -> str:
        """The server's short reason (``fault.faultstring``, ``error``, ``message``), redacted."""
        return self._redact(fault_reason(response))


def fault_reason(response: httpx.Response) -> str:
    """A short reason phrase from an Apigee fault, an OAuth error or an Emporix error body."""
    reason = ""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        fault = body.get("fault")
        if isinstance(fault, dict) and isinstance(fault.get("faultstring"), str):
            reason = fault["faultstring"]
        elif isinstance(body.get("error_description"), str):
            reason = body["error_description"]
        elif isinstance(body.get("error"), str):
            reason = body["error"]
        elif isinstance(body.get("message"), str):
            reason = body["message"]
    if not reason:
        reason = response.reason_phrase or "no reason given"
    reason = " ".join(reason.split())
    return reason if len(reason) <= 160 else reason[:157] + "..."


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
