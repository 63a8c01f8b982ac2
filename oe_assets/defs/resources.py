"""Dagster resources: the OE API and the DuckDB warehouse.

Values come from the OE_* environment variables through `EnvVar`, so the UI and the run config
show variable names, never the secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from oe_assets import settings
from oe_assets.client import OeClient, OeClientConfig
from oe_assets.locking import exclusive_file_lock, lock_path_for
from oe_assets.secret import Secret
from oe_assets.warehouse.connection import WAREHOUSE_SETTINGS

_MASKED_FIELDS = frozenset({"client_secret"})

DUCKDB_POOL = "duckdb"
"""Every op that opens the warehouse joins this pool; the instance's dagster.yaml limits it to 1."""


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
        default=settings.DEFAULT_REQUEST_DEADLINE_SECONDS,
        description=f"Longest time one request (headers and body) may take ({settings.REQUEST_DEADLINE}).",
    )
    retry_budget_seconds: float = Field(
        default=settings.DEFAULT_RETRY_BUDGET_SECONDS,
        description=f"Longest time one call may take, its retries included ({settings.RETRY_BUDGET}).",
    )
    max_response_megabytes: float = Field(
        default=settings.DEFAULT_MAX_RESPONSE_MB,
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


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse file; one writer at a time, connections always closed."""

    connection_config: dict[str, Any] = Field(
        default_factory=lambda: dict(WAREHOUSE_SETTINGS),
        description="DuckDB settings (memory_limit, checkpoint_threshold, ...) for every connection.",
    )
    lock_timeout_seconds: float = Field(default=900.0, description="How long to wait for another writer.")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database == ":memory:":
            conn = duckdb.connect(self.database, config=self.connection_config)
            try:
                yield conn
            finally:
                conn.close()
            return
        with exclusive_file_lock(lock_path_for(self.database), timeout_seconds=self.lock_timeout_seconds):
            conn = duckdb.connect(self.database, config=self.connection_config)
            try:
                yield conn
            finally:
                conn.close()


def env_or_default(name: str, default: str) -> str:
    """`EnvVar(name)` when the variable is set (the UI shows its name), else the default value."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def default_resources() -> dict[str, dg.ConfigurableResource]:
    bounds = settings.ApiBounds.from_env()
    return {
        "oe_api": OeApiResource(
            request_deadline_seconds=bounds.request_deadline_seconds,
            retry_budget_seconds=bounds.retry_budget_seconds,
            max_response_megabytes=bounds.max_response_mb,
            api_url=env_or_default(settings.API_URL, settings.DEFAULT_API_URL),
            auth_url=env_or_default(settings.AUTH_URL, ""),
            client_id=dg.EnvVar(settings.CLIENT_ID),
            client_secret=dg.EnvVar(settings.CLIENT_SECRET),
            digital_process_ids=env_or_default(settings.DIGITAL_PROCESS_IDS, ""),
        ),
        "warehouse": WarehouseResource(
            database=env_or_default(settings.WAREHOUSE, settings.DEFAULT_WAREHOUSE)
        ),
    }
