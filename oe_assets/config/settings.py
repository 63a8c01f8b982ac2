"""Every OE_* environment variable, read in one place, into one :class:`Settings`.

Other tools rely on these names, so they are fixed here and nowhere else. Definitions read the
settings through :func:`current`: the environment, unless a command (``oe-assets demo``) builds
its graph with settings of its own (:func:`overriding`), so no command needs to change the
process environment to configure a run. Secrets are not read here: resources take them with
Dagster's ``EnvVar``, so that only the variable's name is ever stored or shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from oe_assets.core.loopback_http import is_loopback_host
from oe_assets.warehouse.postgres.url import PostgresUrl, PostgresUrlError, parse_postgres_url

API_URL = "OE_API_URL"
AUTH_URL = "OE_AUTH_URL"
CLIENT_ID = "OE_CLIENT_ID"
CLIENT_SECRET = "OE_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret
DIGITAL_PROCESS_IDS = "OE_DIGITAL_PROCESS_IDS"
WAREHOUSE = "OE_WAREHOUSE"
PGPASSWORD = "PGPASSWORD"
EXPORT_DIR = "OE_EXPORT_DIR"
START_DATE = "OE_START_DATE"
REQUEST_DEADLINE = "OE_REQUEST_DEADLINE_SECONDS"
RETRY_BUDGET = "OE_RETRY_BUDGET_SECONDS"
MAX_RESPONSE_MB = "OE_MAX_RESPONSE_MB"
SENSOR_INTERVAL = "OE_SENSOR_INTERVAL_SECONDS"
SENSOR_MAX_PARTITIONS = "OE_SENSOR_MAX_PARTITIONS_PER_TICK"
SENSOR_RUNNING = "OE_SENSOR_RUNNING"

CELONIS_URL = "CELONIS_URL"
CELONIS_POOL_ID = "CELONIS_POOL_ID"
CELONIS_CLIENT_ID = "CELONIS_CLIENT_ID"
CELONIS_CLIENT_SECRET = "CELONIS_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret
CELONIS_API_KEY = "CELONIS_API_KEY"
CELONIS_APP_KEY = "CELONIS_APP_KEY"
CELONIS_CONNECTION_ID = "CELONIS_CONNECTION_ID"
CELONIS_DATA_MODEL = "CELONIS_DATA_MODEL"
CELONIS_JOBS_PER_HOUR = "CELONIS_JOBS_PER_HOUR"
CELONIS_SECRETS = (CELONIS_CLIENT_SECRET, CELONIS_API_KEY, CELONIS_APP_KEY)
DEFAULT_DATA_MODEL = "OE Process Contexts"

DEFAULT_API_URL = "https://api.emporix.io"
DEFAULT_WAREHOUSE = "data/oe_warehouse.duckdb"
DEFAULT_START_DATE = date(2025, 1, 1)


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


def parse_digital_process_ids(raw: str | None) -> tuple[str, ...]:
    """Comma-separated ids; empty means every digital process the key can see."""
    if not raw:
        return ()
    ids = [part.strip() for part in raw.split(",")]
    return tuple(dict.fromkeys(i for i in ids if i))


def parse_day(name: str, raw: str | None, default: date) -> date:
    """A YYYY-MM-DD day from the variable ``name`` (unset or empty: ``default``)."""
    if raw is None or not raw.strip():
        return default
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a date: use YYYY-MM-DD.") from None


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://|^(md|motherduck):", re.IGNORECASE)
"""``scheme://…``, or MotherDuck's ``md:name``: what a driver would read as a URL, not a file path."""


def parse_warehouse(raw: str | None, name: str = WAREHOUSE) -> Path | PostgresUrl:
    """The warehouse from the setting ``name``: a DuckDB file (unset or empty: the default path),
    or a PostgreSQL database (``postgresql://user[:password]@host[:port]/database``).

    Any other URL is refused rather than handed to DuckDB, which would create a file named after
    it (``md:name`` became a file ``md:name``). Messages name the scheme only: a URL can carry a
    password.
    """
    text = (raw or "").strip()
    if not text:
        return Path(DEFAULT_WAREHOUSE)
    match = _URL_SCHEME.match(text)
    if match is None:
        return Path(text)
    scheme = (match.group(1) or match.group(2)).lower()
    if scheme not in ("postgres", "postgresql"):
        raise SettingsError(
            f"{name} is a URL ({scheme}:…), and a warehouse is a DuckDB file path such as {DEFAULT_WAREHOUSE} "
            "or a PostgreSQL URL (postgresql://user@host:port/database)."
        )
    try:
        return parse_postgres_url(text, name)
    except PostgresUrlError as error:
        raise SettingsError(str(error)) from None


def duckdb_warehouse(raw: str | None, name: str = WAREHOUSE, *, command: str) -> Path:
    """The warehouse's DuckDB file, for a ``command`` that reads DuckDB only; a PostgreSQL URL is
    refused in one sentence that says what to do instead."""
    warehouse = parse_warehouse(raw, name)
    if isinstance(warehouse, PostgresUrl):
        raise SettingsError(
            f"{name} is a PostgreSQL database ({warehouse.shown}), and {command} reads a DuckDB warehouse: "
            "give it a DuckDB file with --warehouse, or query PostgreSQL with psql."
        )
    return warehouse


def parse_positive(name: str, raw: str | None, default: float) -> float:
    """A positive number from the variable ``name`` (unset or empty: ``default``)."""
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number.") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name}={raw!r} must be a positive number.")
    return value


@dataclass(frozen=True)
class ApiSettings:
    """Where the OE API is, which digital processes to read, and what ends a hostile answer."""

    api_url: str = DEFAULT_API_URL
    auth_url: str = ""  # empty: the same as api_url
    digital_process_ids: tuple[str, ...] = ()
    request_deadline_seconds: float = 60.0  # longest time one HTTP exchange (headers and body) may take
    retry_budget_seconds: float = 120.0  # longest time one call may take, its retries included
    max_response_mb: float = 256.0  # largest decoded answer

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        defaults = cls()
        return cls(
            api_url=(env.get(API_URL) or DEFAULT_API_URL).rstrip("/"),
            auth_url=(env.get(AUTH_URL) or "").rstrip("/"),
            digital_process_ids=parse_digital_process_ids(env.get(DIGITAL_PROCESS_IDS)),
            request_deadline_seconds=parse_positive(
                REQUEST_DEADLINE, env.get(REQUEST_DEADLINE), defaults.request_deadline_seconds
            ),
            retry_budget_seconds=parse_positive(
                RETRY_BUDGET, env.get(RETRY_BUDGET), defaults.retry_budget_seconds
            ),
            max_response_mb=parse_positive(
                MAX_RESPONSE_MB, env.get(MAX_RESPONSE_MB), defaults.max_response_mb
            ),
        )


@dataclass(frozen=True)
class SensorSettings:
    interval_seconds: int = 60
    max_partitions_per_tick: int = 10
    running: bool = False  # declared running (otherwise switched on in the UI)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SensorSettings:
        defaults = cls()
        return cls(
            interval_seconds=int(
                parse_positive(SENSOR_INTERVAL, env.get(SENSOR_INTERVAL), defaults.interval_seconds)
            ),
            max_partitions_per_tick=int(
                parse_positive(
                    SENSOR_MAX_PARTITIONS, env.get(SENSOR_MAX_PARTITIONS), defaults.max_partitions_per_tick
                )
            ),
            running=env.get(SENSOR_RUNNING, "").strip().lower() in ("1", "true", "yes"),
        )


@dataclass(frozen=True)
class CelonisSettings:
    """Where to deliver the tables in Celonis (off while ``CELONIS_URL`` is unset).

    Only names are kept for the credentials: which variable holds the secret, so that the
    resources read it through ``EnvVar`` and no value is ever stored or shown.
    """

    url: str = ""
    pool_id: str = ""
    connection_id: str = ""
    data_model: str = DEFAULT_DATA_MODEL
    auth: str = ""  # "oauth", "api_key" or "app_key": which credential variables are set
    jobs_per_hour: int = 250  # Celonis allows 250 push-job submissions per team and UTC hour

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CelonisSettings:
        url = (env.get(CELONIS_URL) or "").strip().rstrip("/")
        if not url:
            return cls()
        check_celonis_url(url)
        pool_id = (env.get(CELONIS_POOL_ID) or "").strip()
        if not pool_id:
            raise SettingsError(
                f"{CELONIS_URL} is set but {CELONIS_POOL_ID} is not: name the data pool to push into."
            )
        return cls(
            url=url,
            pool_id=pool_id,
            connection_id=(env.get(CELONIS_CONNECTION_ID) or "").strip(),
            data_model=(env.get(CELONIS_DATA_MODEL) or "").strip() or DEFAULT_DATA_MODEL,
            auth=celonis_auth_kind(env),
            jobs_per_hour=int(parse_positive(CELONIS_JOBS_PER_HOUR, env.get(CELONIS_JOBS_PER_HOUR), 250)),
        )


def check_celonis_url(url: str) -> None:
    """An https team URL; plain http only to this machine (the stand-in), never across a network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{CELONIS_URL}={url!r} is not a team URL such as https://myteam.eu-1.celonis.cloud: check {CELONIS_URL}."
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise SettingsError(
            f"{CELONIS_URL} uses plain http to {parts.hostname}, which is not this machine: the credentials "
            f"and your data would travel unencrypted. Use the https team URL in {CELONIS_URL}."
        )


def celonis_auth_kind(env: Mapping[str, str]) -> str:
    """Which credential the variables give: OAuth client, API key or application key (exactly one)."""
    kinds = [
        kind
        for kind, names in (
            ("oauth", (CELONIS_CLIENT_ID, CELONIS_CLIENT_SECRET)),
            ("api_key", (CELONIS_API_KEY,)),
            ("app_key", (CELONIS_APP_KEY,)),
        )
        if any(env.get(name) for name in names)
    ]
    if len(kinds) != 1:
        raise SettingsError(
            f"{CELONIS_URL} is set: give one credential, either {CELONIS_CLIENT_ID} and {CELONIS_CLIENT_SECRET}, "
            f"or {CELONIS_API_KEY}, or {CELONIS_APP_KEY}"
            + (f" (found {len(kinds)})." if kinds else " (none is set).")
        )
    if kinds[0] == "oauth" and not (env.get(CELONIS_CLIENT_ID) and env.get(CELONIS_CLIENT_SECRET)):
        raise SettingsError(f"Set both {CELONIS_CLIENT_ID} and {CELONIS_CLIENT_SECRET} for the OAuth client.")
    return kinds[0]


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know: the API, the warehouse, the partitions, the sensor."""

    api: ApiSettings = field(default_factory=ApiSettings)
    warehouse: Path | PostgresUrl = Path(DEFAULT_WAREHOUSE)
    export_dir: Path | None = None
    """the exports' folder; None: `exports` beside the warehouse file (`data/exports` on PostgreSQL)"""
    start_date: date = DEFAULT_START_DATE
    sensor: SensorSettings = field(default_factory=SensorSettings)
    celonis: CelonisSettings = field(default_factory=CelonisSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            api=ApiSettings.from_env(env),
            warehouse=parse_warehouse(env.get(WAREHOUSE)),
            export_dir=Path(env[EXPORT_DIR]) if env.get(EXPORT_DIR) else None,
            start_date=parse_day(START_DATE, env.get(START_DATE), DEFAULT_START_DATE),
            sensor=SensorSettings.from_env(env),
            celonis=CelonisSettings.from_env(env),
        )

    def to_env(self) -> dict[str, str]:
        """These settings as the variables :meth:`from_env` reads (for a child process)."""
        api, sensor = self.api, self.sensor
        return {
            API_URL: api.api_url,
            AUTH_URL: api.auth_url,
            DIGITAL_PROCESS_IDS: ",".join(api.digital_process_ids),
            REQUEST_DEADLINE: str(api.request_deadline_seconds),
            RETRY_BUDGET: str(api.retry_budget_seconds),
            MAX_RESPONSE_MB: str(api.max_response_mb),
            **self._warehouse_env(),
            EXPORT_DIR: str(self.export_dir or ""),
            START_DATE: self.start_date.isoformat(),
            SENSOR_INTERVAL: str(sensor.interval_seconds),
            SENSOR_MAX_PARTITIONS: str(sensor.max_partitions_per_tick),
            SENSOR_RUNNING: "1" if sensor.running else "",
            **self._celonis_env(),
        }

    def _warehouse_env(self) -> dict[str, str]:
        """The warehouse; a PostgreSQL password as ``PGPASSWORD``, never inside the URL."""
        if not isinstance(self.warehouse, PostgresUrl):
            return {WAREHOUSE: str(self.warehouse)}
        password = self.warehouse.password
        return {WAREHOUSE: self.warehouse.shown, **({PGPASSWORD: password.reveal()} if password else {})}

    def _celonis_env(self) -> dict[str, str]:
        """The Celonis destination, without its credentials (a child process reads those itself)."""
        celonis = self.celonis
        if not celonis.enabled:
            return {}
        return {
            CELONIS_URL: celonis.url,
            CELONIS_POOL_ID: celonis.pool_id,
            CELONIS_CONNECTION_ID: celonis.connection_id,
            CELONIS_DATA_MODEL: celonis.data_model,
            CELONIS_JOBS_PER_HOUR: str(celonis.jobs_per_hour),
        }


_override: ContextVar[Settings | None] = ContextVar("oe_assets_settings", default=None)


def current() -> Settings:
    """The settings definitions are built with: a command's own, else the environment's."""
    return _override.get() or Settings.from_env()


@contextmanager
def overriding(settings: Settings) -> Iterator[Settings]:
    """Definitions built inside use ``settings`` instead of the environment."""
    token = _override.set(settings)
    try:
        yield settings
    finally:
        _override.reset(token)
