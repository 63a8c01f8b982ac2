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

DEFAULT_API_URL = "https://api.emporix.io"
DEFAULT_WAREHOUSE = "data/oe_warehouse.duckdb"
DEFAULT_START_DATE = "2025-01-01"

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
