"""Errors of the OE client: each message is one sentence naming the setting to fix.

Messages are built here from plain values (URLs without credentials, paths, status codes, short
server texts); they never embed an httpx exception text, a request body or a header. A server
text may still quote a credential back, so every message is masked by value
(:func:`oe_assets.config.secret.redact`) when the error is made.
"""

from __future__ import annotations

from oe_assets.config.secret import redact


class OeError(Exception):
    """Base of every error the OE client raises on purpose; its message never holds a secret."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class OeAuthError(OeError):
    """The token endpoint refused the credentials, or the API refused a fresh token."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status

    @classmethod
    def bad_credentials(cls, url: str, status: int, reason: str) -> OeAuthError:
        return cls(
            f"OE rejected the client credentials at {url} ({status} {reason}): "
            "check OE_CLIENT_ID and OE_CLIENT_SECRET.",
            url=url,
            status=status,
        )

    @classmethod
    def no_token_endpoint(cls, url: str, status: int) -> OeAuthError:
        return cls(
            f"OE has no token endpoint at {url} (HTTP {status}): check OE_AUTH_URL.", url=url, status=status
        )

    @classmethod
    def bad_token_response(cls, url: str, what: str) -> OeAuthError:
        return cls(
            f"The token endpoint at {url} answered without a usable {what}: check OE_AUTH_URL.", url=url
        )

    @classmethod
    def token_refused(cls, method: str, path: str, status: int, reason: str) -> OeAuthError:
        return cls(
            f"OE refused a freshly issued access token for {method} {path} ({status} {reason}): "
            "check that OE_AUTH_URL issues tokens for OE_API_URL and that the API key may read "
            "the Orchestration Engine.",
            url=path,
            status=status,
        )


class OeNotFoundError(OeError):
    """An execution template (digital process) does not exist or is not visible."""

    def __init__(self, template_id: str) -> None:
        super().__init__(
            f"Digital process {template_id} does not exist or is not visible to this API key: "
            "check OE_DIGITAL_PROCESS_IDS."
        )
        self.template_id = template_id


class OeUnreachableError(OeError):
    """No connection could be made to a host the client never reached before."""

    def __init__(self, url: str, reason: str, *, setting: str = "OE_API_URL", what: str = "OE API") -> None:
        super().__init__(f"Cannot reach the {what} at {url} ({reason}): check {setting}.")
        self.url = url
        self.reason = reason
        self.setting = setting


class OeRetryBudgetExceeded(OeError):
    """A request kept failing with retryable errors until attempts or time ran out."""

    def __init__(
        self,
        url: str,
        last_reason: str,
        attempts: int,
        seconds: float,
        *,
        setting: str = "OE_API_URL",
        what: str = "OE API",
        last_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            f"{what} at {url} kept failing ({last_reason}) after {attempts} attempts in {seconds:.1f} s; "
            f"the run stops and the warehouse is unchanged. Check {setting} or try later."
        )
        self.url = url
        self.last_reason = last_reason
        self.last_status = last_status  # the last answer's HTTP status (None: no answer came)
        self.retry_after = retry_after  # the wait it asked for, when longer than what was left
        self.attempts = attempts
        self.seconds = seconds


class OeBadResponseError(OeError):
    """The API answered 2xx with a body that is not what the contract promises."""

    def __init__(self, message: str, *, path: str = "", page: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.page = page


class OeResponseTooLargeError(OeBadResponseError):
    """An answer's decoded body exceeded the configured cap (a runaway or hostile server)."""

    def __init__(self, where: str, limit: int, *, setting: str = "OE_API_URL") -> None:
        super().__init__(
            f"{where} answered with more than {limit / (1 << 20):g} MiB once decoded, the most one "
            f"answer may hold: the request was stopped. Check {setting}, or raise OE_MAX_RESPONSE_MB "
            "if such answers are expected.",
            path=where,
        )
        self.limit = limit


class OeRequestError(OeError):
    """The API rejected a request with a client error other than 401/404 (e.g. 400, 403)."""

    def __init__(self, message: str, *, path: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.status = status
