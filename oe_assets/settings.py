"""The OE_* environment variables, read in one place.

Other tools rely on these names, so they are fixed here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from oe_assets.secret import Secret

API_URL = "OE_API_URL"
AUTH_URL = "OE_AUTH_URL"
CLIENT_ID = "OE_CLIENT_ID"
CLIENT_SECRET = "OE_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret
DIGITAL_PROCESS_IDS = "OE_DIGITAL_PROCESS_IDS"
WAREHOUSE = "OE_WAREHOUSE"
START_DATE = "OE_START_DATE"
REQUEST_DEADLINE = "OE_REQUEST_DEADLINE_SECONDS"
RETRY_BUDGET = "OE_RETRY_BUDGET_SECONDS"
MAX_RESPONSE_MB = "OE_MAX_RESPONSE_MB"

DEFAULT_API_URL = "https://api.emporix.io"
DEFAULT_WAREHOUSE = "data/oe_warehouse.duckdb"
DEFAULT_START_DATE = "2025-01-01"
DEFAULT_REQUEST_DEADLINE_SECONDS = 60.0
DEFAULT_RETRY_BUDGET_SECONDS = 120.0
DEFAULT_MAX_RESPONSE_MB = 256

ALL_VARIABLES = (API_URL, AUTH_URL, CLIENT_ID, CLIENT_SECRET, DIGITAL_PROCESS_IDS, WAREHOUSE, START_DATE)


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


def parse_digital_process_ids(raw: str | None) -> tuple[str, ...]:
    """Comma-separated ids; empty means every digital process the key can see."""
    if not raw:
        return ()
    ids = [part.strip() for part in raw.split(",")]
    return tuple(dict.fromkeys(i for i in ids if i))


def parse_start_date(raw: str | None) -> date:
    value = (raw or DEFAULT_START_DATE).strip()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SettingsError(f"{START_DATE}={value!r} is not a date: use YYYY-MM-DD.") from None


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
class ApiBounds:
    """How long and how much one OE API call may take: what ends a hostile or broken answer."""

    request_deadline_seconds: float = DEFAULT_REQUEST_DEADLINE_SECONDS
    retry_budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS
    max_response_mb: float = DEFAULT_MAX_RESPONSE_MB

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiBounds:
        env = os.environ if env is None else env
        return cls(
            parse_positive(REQUEST_DEADLINE, env.get(REQUEST_DEADLINE), DEFAULT_REQUEST_DEADLINE_SECONDS),
            parse_positive(RETRY_BUDGET, env.get(RETRY_BUDGET), DEFAULT_RETRY_BUDGET_SECONDS),
            parse_positive(MAX_RESPONSE_MB, env.get(MAX_RESPONSE_MB), DEFAULT_MAX_RESPONSE_MB),
        )


@dataclass(frozen=True)
class OeSettings:
    """Everything the pipeline needs to know about where OE and the warehouse are."""

    api_url: str = DEFAULT_API_URL
    auth_url: str = DEFAULT_API_URL
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    digital_process_ids: tuple[str, ...] = ()
    warehouse: Path = Path(DEFAULT_WAREHOUSE)
    start_date: date = field(default_factory=lambda: date.fromisoformat(DEFAULT_START_DATE))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OeSettings:
        env = os.environ if env is None else env
        api_url = env.get(API_URL) or DEFAULT_API_URL
        return cls(
            api_url=api_url.rstrip("/"),
            auth_url=(env.get(AUTH_URL) or api_url).rstrip("/"),
            client_id=env.get(CLIENT_ID, ""),
            client_secret=Secret(env.get(CLIENT_SECRET, "")),
            digital_process_ids=parse_digital_process_ids(env.get(DIGITAL_PROCESS_IDS)),
            warehouse=Path(env.get(WAREHOUSE) or DEFAULT_WAREHOUSE),
            start_date=parse_start_date(env.get(START_DATE)),
        )
