"""The Celonis REST calls oe_assets needs: Data Push jobs, and the data model of the pool.

Built from the same small parts as the OE client: :class:`~oe_assets.client.retry.RetryingSender`
(one retry policy: 429 and 5xx retried with backoff and ``Retry-After`` inside a time budget),
the per-exchange deadline transport, and either OAuth client credentials
(:class:`~oe_assets.client.auth.TokenCache`, token renewed before expiry and on 401) or a static
key header. Every path is a field of :class:`CelonisPaths`, so a cluster with other prefixes
needs no code change. This module knows nothing of the warehouse or of Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from oe_assets.celonis.errors import CelonisError, CelonisHourlyLimit, CelonisRequestError
from oe_assets.client.auth import ClientCredentialsAuth, TokenCache, TokenRequest, fault_reason
from oe_assets.client.errors import OeAuthError, OeError, OeRetryBudgetExceeded
from oe_assets.client.retry import Answer, ClientStats, RetryingSender, RetryPolicy, Sleep, Target
from oe_assets.client.transport import DeadlineTransport
from oe_assets.config import settings
from oe_assets.config.secret import Secret, get_logger

logger = get_logger("oe_assets.celonis")

SCOPE = "integration.data-pools"
FINAL_JOB_STATES = frozenset({"DONE", "ERROR", "CANCELED"})


@dataclass(frozen=True)
class CelonisPaths:
    """Where each family of calls lives under the team URL (both push prefixes exist)."""

    token: str = "/oauth2/token"  # noqa: S105 - a path, not a secret
    push: str = "/integration/api/v1/data-push"
    pools: str = "/integration/api/pools"
    pools_v1: str = "/integration/api/v1/data-pools"


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: Secret


@dataclass(frozen=True)
class StaticKey:
    """A user API key (``Bearer``) or an application key (``AppKey``)."""

    scheme: str
    key: Secret


Credential = OAuthClient | StaticKey


@dataclass(frozen=True)
class CelonisConfig:
    url: str
    pool_id: str
    credential: Credential
    connection_id: str = ""
    paths: CelonisPaths = field(default_factory=CelonisPaths)
    scope: str = SCOPE  # what the OAuth client asks for
    request_deadline_seconds: float = 300.0  # one exchange; a chunk upload may be large
    retry_budget_seconds: float = 300.0
    max_attempts: int = 10
    poll_seconds: float = 0.2  # first wait between two looks at a job or a load (growing to 5 s)
    wait_limit_seconds: float = 3600.0  # longest wait for one job or one data-model load

    def __post_init__(self) -> None:
        settings.check_celonis_url(self.url)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            budget_seconds=self.retry_budget_seconds,
            request_deadline_seconds=self.request_deadline_seconds,
            max_response_bytes=64 << 20,
        )


class _StaticKeyAuth(httpx.Auth):
    def __init__(self, key: StaticKey) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"{self._key.scheme} {self._key.key.reveal()}"
        yield request


class CelonisApi:
    """One team's Celonis API for one data pool; a context manager closing its connections."""

    def __init__(
        self,
        config: CelonisConfig,
        *,
        sleep: Sleep = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.stats = ClientStats()
        self._base = config.url.rstrip("/")
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport or DeadlineTransport(),
            timeout=httpx.Timeout(60.0),
            headers={"User-Agent": "oe-assets (httpx)"},
            follow_redirects=False,
        )
        self._sender = RetryingSender(self._http, config.retry_policy(), stats=self.stats, sleep=sleep)
        self._auth = self._make_auth(config.credential)

    def _make_auth(self, credential: Credential) -> httpx.Auth:
        if isinstance(credential, StaticKey):
            return _StaticKeyAuth(credential)
        url = self._base + self.config.paths.token
        request = TokenRequest(
            url, self._target(url), credential.client_id, credential.client_secret, self.config.scope
        )
        tokens = TokenCache(
            request, sender=self._sender, http=self._http, refresh_margin_seconds=60.0, stats=self.stats
        )
        return ClientCredentialsAuth(tokens)

    def __enter__(self) -> CelonisApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ push jobs

    def _jobs(self, *rest: str) -> str:
        pool = quote(self.config.pool_id, safe="")
        return "/".join([f"{self.config.paths.push}/{pool}/jobs", *rest]) + ("/" if not rest else "")

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.config.connection_id:
            body = {**body, "connectionId": self.config.connection_id}
        job = self.call("POST", self._jobs(), json={**body, "dataPoolId": self.config.pool_id})
        if not isinstance(job, dict) or not isinstance(job.get("id"), str):
            raise CelonisError(
                f"Celonis answered the creation of a push job for {body.get('targetName')} without a job id."
            )
        return job

    def add_chunk(self, job_id: str, kind: str, data: bytes) -> None:
        """``kind``: ``upserted`` or ``deleted``; one multipart part named ``file``, as pycelonis sends."""
        self.call("POST", self._jobs(job_id, "chunks", kind), files={"file": ("file", data)})

    def execute_job(self, job_id: str) -> None:
        self.call("POST", self._jobs(job_id))

    def get_job(self, job_id: str) -> dict[str, Any]:
        job = self.call("GET", self._jobs(job_id))
        return job if isinstance(job, dict) else {}

    def delete_job(self, job_id: str) -> None:
        self.call("DELETE", self._jobs(job_id))

    def wait_for_job(self, job_id: str) -> dict[str, Any]:
        """The job once DONE, ERROR or CANCELED; polls with a growing interval (capped at 5 s)."""
        return self._wait(
            lambda: self.get_job(job_id),
            lambda job: job.get("status") in FINAL_JOB_STATES,
            f"push job {job_id}",
        )

    def _wait(self, look: Any, finished: Any, what: str) -> Any:
        interval, waited = self.config.poll_seconds, 0.0
        while True:
            state = look()
            if finished(state):
                return state
            if waited >= self.config.wait_limit_seconds:
                raise CelonisError(
                    f"Celonis did not finish {what} within {waited:.0f} s; the next run tries again."
                )
            self._sleep(interval)
            waited += interval
            interval = min(interval * 1.5, 5.0)

    # ------------------------------------------------------------------ data model

    def _pool(self, *rest: str, v1: bool = False) -> str:
        base = self.config.paths.pools_v1 if v1 else self.config.paths.pools
        return "/".join([base, quote(self.config.pool_id, safe=""), *rest])

    def list_data_models(self) -> list[dict[str, Any]]:
        return _items(self.call("GET", self._pool("data-models")))

    def create_data_model(self, name: str) -> dict[str, Any]:
        model = self.call(
            "POST", self._pool("data-models"), json={"name": name, "poolId": self.config.pool_id}
        )
        return model if isinstance(model, dict) else {}

    def update_data_model(self, model: dict[str, Any]) -> None:
        self.call("PUT", self._pool("data-models", str(model["id"])), json=model)

    def list_model_tables(self, model_id: str) -> list[dict[str, Any]]:
        return _items(self.call("GET", self._pool("data-model", model_id, "tables")))

    def add_model_tables(self, model_id: str, tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _items(self.call("POST", self._pool("data-model", model_id, "tables"), json=tables))

    def list_foreign_keys(self, model_id: str) -> list[dict[str, Any]]:
        return _items(self.call("GET", self._pool("data-models", model_id, "foreign-keys")))

    def add_foreign_key(self, model_id: str, key: dict[str, Any]) -> None:
        self.call("POST", self._pool("data-models", model_id, "foreign-keys"), json=key)

    def start_partial_reload(self, model_id: str, table_ids: list[str]) -> None:
        self.call(
            "POST", self._pool("data-models", model_id, "load", "partial-sync", v1=True), json=table_ids
        )

    def load_info(self, model_id: str) -> dict[str, Any]:
        info = self.call("GET", self._pool("data-models", model_id, "load-history", "load-info-sync"))
        return info if isinstance(info, dict) else {}

    def wait_for_load(self, model_id: str, after: str | None) -> dict[str, Any]:
        """The load info once the load started after ``after`` (a dataLoadId) is no longer RUNNING."""

        def finished(info: dict[str, Any]) -> bool:
            load = current_load(info)
            return (
                bool(load)
                and load.get("dataLoadId") != after
                and load.get("loadStatus") not in ("RUNNING", "CANCELLING", None)
            )

        return self._wait(lambda: self.load_info(model_id), finished, "the data model's load")

    # ------------------------------------------------------------------ one call

    def call(self, method: str, path: str, **request: Any) -> Any:
        """The parsed JSON answer (None when empty); one sentence naming the setting on refusal."""
        url = self._base + path
        target = self._target(url)
        try:
            return self._sender.send(
                lambda: self._http.build_request(method, url, **request),
                target,
                lambda a: _parse(a, method, path, self.config),
                auth=self._auth,
            )
        except OeAuthError as exc:
            raise _credentials_refused(self.config, exc.status) from None
        except OeRetryBudgetExceeded as exc:
            if exc.last_status == 429:
                raise CelonisHourlyLimit(exc.retry_after, f" ({method} {path})") from None
            raise CelonisError(str(exc)) from None
        except OeError as exc:
            raise CelonisError(str(exc)) from None

    def _target(self, url: str) -> Target:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        return Target(origin + parts.path, origin, setting=settings.CELONIS_URL, what="Celonis")


def current_load(info: dict[str, Any]) -> dict[str, Any]:
    load = (info.get("loadInfo") or {}).get("currentComputeLoad")
    return load if isinstance(load, dict) else {}


def _items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        value = value["content"]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _parse(answer: Answer, method: str, path: str, config: CelonisConfig) -> Any:
    if answer.is_success:
        if not answer.content.strip():
            return None
        try:
            return orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            return None
    raise _refusal(answer, method, path, config)


def _refusal(answer: Answer, method: str, path: str, config: CelonisConfig) -> CelonisError:
    status, said = answer.status_code, _server_text(answer)
    where = f"{method} {path} answered {status}: {said}"
    if status == 401:
        return _credentials_refused(config, status)
    if status == 403:
        return CelonisRequestError(
            f"Celonis refused permission ({where}): give the credential in the CELONIS_* variables the scope "
            f"{SCOPE} and the Data Push API and Edit permissions on data pool {config.pool_id}.",
            status=status,
        )
    if status == 404:
        what = f"{settings.CELONIS_POOL_ID} ({config.pool_id})"
        if config.connection_id:
            what += f" and {settings.CELONIS_CONNECTION_ID} ({config.connection_id})"
        return CelonisRequestError(
            f"Celonis does not know this resource ({where}): check {what}.", status=status
        )
    return CelonisRequestError(f"Celonis refused the request ({where}).", status=status)


def _credentials_refused(config: CelonisConfig, status: int | None) -> CelonisRequestError:
    if isinstance(config.credential, OAuthClient):
        names = f"{settings.CELONIS_CLIENT_ID} and {settings.CELONIS_CLIENT_SECRET}"
    elif config.credential.scheme == "AppKey":
        names = settings.CELONIS_APP_KEY
    else:
        names = settings.CELONIS_API_KEY
    return CelonisRequestError(
        f"Celonis at {config.url} refused the credentials (HTTP {status or 401}): check {names}.",
        status=status,
    )


def _server_text(answer: Answer) -> str:
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, str):
        text = body
    elif isinstance(body, dict) and isinstance(body.get("errorInformation"), str):
        text = body["errorInformation"]
    else:
        text = fault_reason(answer)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
