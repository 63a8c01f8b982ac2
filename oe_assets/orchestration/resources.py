"""The resources' classes: the OE API and the DuckDB warehouse (their instances are built in
``oe_assets/defs/resources.py`` from the settings; the client id and secret through ``EnvVar``, so
the UI and the run storage show variable names, never the secret)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from oe_assets.celonis import CelonisApi, CelonisConfig, OAuthClient, StaticKey
from oe_assets.client import OeClient, OeClientConfig
from oe_assets.config import settings
from oe_assets.config.secret import Secret
from oe_assets.warehouse.connection import WAREHOUSE_SETTINGS, open_warehouse
from oe_assets.warehouse.postgres.connect import OLDEST_SERVER, PgConnection, connected
from oe_assets.warehouse.postgres.url import PostgresUrl

_MASKED_FIELDS = frozenset({"client_secret", "api_key", "app_key", "postgres_password"})

DUCKDB_POOL = "duckdb"
"""Every op that opens the warehouse joins this pool; the one-machine dagster.yaml limits it to 1
(a DuckDB file has one writer), the team's to 4 (PostgreSQL takes writers at once). Its name stays
the one the instances' limits are set for."""


def warehouse_kind() -> str:
    """The kind the UI shows on the assets that live in the warehouse the settings name."""
    return "postgres" if isinstance(settings.current().warehouse, PostgresUrl) else "duckdb"


class OeApiResource(dg.ConfigurableResource):
    """Connection to the Emporix Orchestration Engine API (the Celonis connector's parameters)."""

    api_url: str = Field(
        default=settings.DEFAULT_API_URL, description=f"Base URL of data calls ({settings.API_URL})."
    )
    auth_url: str = Field(
        default="", description=f"Base URL of the token endpoint ({settings.AUTH_URL}); empty = api_url."
    )
    client_id: str = Field(description=f"OAuth2 client id ({settings.CLIENT_ID}).")
    client_secret: str = Field(description=f"OAuth2 client secret ({settings.CLIENT_SECRET}); never logged.")
    digital_process_ids: str = Field(
        default="",
        description=f"Comma-separated digital process ids ({settings.DIGITAL_PROCESS_IDS}); empty = all visible.",
    )
    page_size: int = Field(default=1000, description="Records per API page (the API allows at most 1000).")
    timeout_seconds: float = Field(
        default=30.0, description="Longest silence of the server within one request."
    )
    request_deadline_seconds: float = Field(
        default=settings.ApiSettings.request_deadline_seconds,
        description=f"Longest time one request (headers and body) may take ({settings.REQUEST_DEADLINE}).",
    )
    retry_budget_seconds: float = Field(
        default=settings.ApiSettings.retry_budget_seconds,
        description=f"Longest time one call may take, its retries included ({settings.RETRY_BUDGET}).",
    )
    max_response_megabytes: float = Field(
        default=settings.ApiSettings.max_response_mb,
        description=f"Largest answer, once decoded, in MiB; a larger one fails its request ({settings.MAX_RESPONSE_MB}).",
    )
    backoff_base_seconds: float = Field(
        default=0.5, description="First retry waits up to this long (full jitter, doubling per retry)."
    )

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield (name, "***" if name in _MASKED_FIELDS else value)

    def client_config(self) -> OeClientConfig:
        return OeClientConfig(
            api_url=self.api_url.rstrip("/"),
            auth_url=(self.auth_url or self.api_url).rstrip("/"),
            client_id=self.client_id,
            client_secret=Secret(self.client_secret),
            page_size=self.page_size,
            timeout_seconds=self.timeout_seconds,
            request_deadline_seconds=self.request_deadline_seconds,
            retry_budget_seconds=self.retry_budget_seconds,
            max_response_bytes=int(self.max_response_megabytes * (1 << 20)),
            backoff_base_seconds=self.backoff_base_seconds,
        )

    @contextmanager
    def open_client(self) -> Iterator[OeClient]:
        with OeClient(self.client_config()) as client:
            yield client

    def configured_template_ids(self) -> tuple[str, ...]:
        return settings.parse_digital_process_ids(self.digital_process_ids)

    def template_ids_to_read(self, client: OeClient) -> list[str]:
        """The configured digital processes (each checked to exist), else every one the key can see."""
        configured = self.configured_template_ids()
        if configured:
            client.get_execution_templates(configured)  # a clear error for an unknown id
            return list(configured)
        return [str(t["id"]) for t in client.list_execution_templates() if isinstance(t.get("id"), str)]


class WarehouseResource(DuckDBResource):
    """The warehouse: a DuckDB file (one writer at a time), or a PostgreSQL database that runs on
    many machines write at once (:mod:`oe_assets.warehouse.postgres`); connections always closed."""

    database: str = Field(
        description=f"DuckDB file, or postgresql://user@host:port/database ({settings.WAREHOUSE})."
    )
    postgres_password: str = Field(
        default="", description=f"PostgreSQL password ({settings.PGPASSWORD}); never logged."
    )
    connection_config: dict[str, Any] = Field(
        default_factory=lambda: dict(WAREHOUSE_SETTINGS),
        description="DuckDB settings (memory_limit, checkpoint_threshold, ...) for every connection.",
    )
    lock_timeout_seconds: float = Field(default=900.0, description="How long to wait for another writer.")
    export_dir: str = Field(
        default="",
        description=f"Folder of the exports and the process map ({settings.EXPORT_DIR}); empty = `exports` "
        "beside the warehouse file (`data/exports` for PostgreSQL).",
    )

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield (name, "***" if name in _MASKED_FIELDS else value)

    @property
    def on_postgres(self) -> bool:
        return isinstance(settings.parse_warehouse(self._database()), PostgresUrl)

    def _database(self) -> str:
        return _resolved(self.database)

    def postgres_target(self) -> PostgresUrl:
        target = settings.parse_warehouse(self._database())
        if not isinstance(target, PostgresUrl):
            raise settings.SettingsError(f"{settings.WAREHOUSE} is a DuckDB file, not a PostgreSQL database")
        password = _resolved(self.postgres_password)
        return replace(target, password=Secret(password)) if password else target

    def exports_folder(self) -> Path:
        """Where the exports go: beside this warehouse unless set, so a test's warehouse or a second
        project's never writes into another one's folder."""
        if self.export_dir:
            return Path(self.export_dir)
        if self.on_postgres:
            return Path(settings.DEFAULT_WAREHOUSE).parent / "exports"
        return Path(self.database).resolve().parent / "exports"

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.on_postgres:
            raise settings.SettingsError(
                f"{settings.WAREHOUSE} is a PostgreSQL database: this step reads DuckDB"
            )
        with open_warehouse(
            self.database, lock_timeout=self.lock_timeout_seconds, settings=self.connection_config
        ) as conn:
            yield conn

    @contextmanager
    def postgres(self) -> Iterator[PgConnection]:
        """A connection to the PostgreSQL warehouse (15 or newer); every failure one sentence naming
        the setting, never the password."""
        with connected(
            self.postgres_target(), settings.WAREHOUSE, work="write", oldest=OLDEST_SERVER
        ) as conn:
            yield conn


def _resolved(value: str) -> str:
    """A field's value, also in a resource not yet resolved (the field an ``EnvVar``, as the
    definitions hold it before a run starts)."""
    return (value.get_value() or "") if isinstance(value, dg.EnvVar) else value


def warehouse_resource(config: settings.Settings) -> WarehouseResource:
    """The warehouse as ``config`` says. A PostgreSQL password reaches the resource only through
    ``EnvVar``: ``PGPASSWORD``, or ``OE_WAREHOUSE`` itself when the URL holds it."""
    export_dir = str(config.export_dir or "")
    target = config.warehouse
    if not isinstance(target, PostgresUrl):
        return WarehouseResource(database=str(target), export_dir=export_dir)
    from_url = bool(target.password) and target.password.reveal() != os.environ.get(settings.PGPASSWORD)
    if from_url:
        return WarehouseResource(database=dg.EnvVar(settings.WAREHOUSE), export_dir=export_dir)
    password = (
        {"postgres_password": dg.EnvVar(settings.PGPASSWORD)} if os.environ.get(settings.PGPASSWORD) else {}
    )
    return WarehouseResource(database=target.shown, export_dir=export_dir, **password)  # type: ignore[arg-type]


class CelonisResource(dg.ConfigurableResource):
    """The Celonis data pool the tables are delivered to (idle while ``url`` is empty)."""

    url: str = Field(default="", description=f"Team URL ({settings.CELONIS_URL}); empty = no delivery.")
    pool_id: str = Field(default="", description=f"Data pool id ({settings.CELONIS_POOL_ID}).")
    connection_id: str = Field(
        default="",
        description=f"Data connection to push into ({settings.CELONIS_CONNECTION_ID}); empty = the pool's global schema.",
    )
    data_model: str = Field(
        default=settings.DEFAULT_DATA_MODEL, description=f"Data model name ({settings.CELONIS_DATA_MODEL})."
    )
    retry_budget_seconds: float = Field(
        default=300.0, description="Longest time one Celonis call may take, its retries and waits included."
    )
    jobs_per_hour: int = Field(
        default=250,
        description=f"Push jobs this pool may submit per UTC hour ({settings.CELONIS_JOBS_PER_HOUR}).",
    )
    client_id: str = Field(default="", description=f"OAuth client id ({settings.CELONIS_CLIENT_ID}).")
    client_secret: str = Field(
        default="", description=f"OAuth client secret ({settings.CELONIS_CLIENT_SECRET}); never logged."
    )
    api_key: str = Field(default="", description=f"User API key ({settings.CELONIS_API_KEY}); never logged.")
    app_key: str = Field(
        default="", description=f"Application key ({settings.CELONIS_APP_KEY}); never logged."
    )

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield (name, "***" if name in _MASKED_FIELDS else value)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def api_config(self) -> CelonisConfig:
        if not self.enabled:
            raise settings.SettingsError(
                f"{settings.CELONIS_URL} is not set: there is no Celonis data pool to push to "
                "(README, section Celonis)."
            )
        credential: OAuthClient | StaticKey
        if self.client_id:
            credential = OAuthClient(self.client_id, Secret(self.client_secret))
        elif self.api_key:
            credential = StaticKey("Bearer", Secret(self.api_key))
        else:
            credential = StaticKey("AppKey", Secret(self.app_key))
        return CelonisConfig(
            self.url,
            self.pool_id,
            credential,
            connection_id=self.connection_id,
            retry_budget_seconds=self.retry_budget_seconds,
        )

    @contextmanager
    def open_api(self) -> Iterator[CelonisApi]:
        with CelonisApi(self.api_config()) as api:
            yield api


def celonis_resource(config: settings.CelonisSettings) -> CelonisResource:
    """The destination as ``config`` says; only the credential variables that are set, as ``EnvVar``."""
    if not config.enabled:
        return CelonisResource()
    names = {
        "oauth": {"client_id": settings.CELONIS_CLIENT_ID, "client_secret": settings.CELONIS_CLIENT_SECRET},
        "api_key": {"api_key": settings.CELONIS_API_KEY},
        "app_key": {"app_key": settings.CELONIS_APP_KEY},
    }[config.auth]
    return CelonisResource(
        url=config.url,
        pool_id=config.pool_id,
        connection_id=config.connection_id,
        data_model=config.data_model,
        jobs_per_hour=config.jobs_per_hour,
        **{field_name: dg.EnvVar(variable) for field_name, variable in names.items()},  # type: ignore[arg-type]
    )


def resources_for(config: settings.Settings) -> dict[str, dg.ConfigurableResource]:
    """The OE API, the warehouse and Celonis as ``config`` says; the credentials through ``EnvVar``."""
    api = config.api
    return {
        "celonis": celonis_resource(config.celonis),
        "oe_api": OeApiResource(
            api_url=api.api_url,
            auth_url=api.auth_url,
            client_id=dg.EnvVar(settings.CLIENT_ID),
            client_secret=dg.EnvVar(settings.CLIENT_SECRET),
            digital_process_ids=",".join(api.digital_process_ids),
            request_deadline_seconds=api.request_deadline_seconds,
            retry_budget_seconds=api.retry_budget_seconds,
            max_response_megabytes=api.max_response_mb,
        ),
        "warehouse": warehouse_resource(config),
    }
