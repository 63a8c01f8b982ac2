"""A PostgreSQL URL as the user gives it, and the one way we show it: without its password.

``postgresql://user[:password]@host[:port]/database``. The password may instead come from
``PGPASSWORD`` (libpq reads it, as ``psql`` does), so that no file or shell history holds it.
Either way it is wrapped in a :class:`~oe_assets.config.secret.Secret`: every message built while
it is alive is redacted by value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from oe_assets.config.secret import Secret

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432


class PostgresUrlError(ValueError):
    """The value is no PostgreSQL URL we can connect with; the message names the setting."""


@dataclass(frozen=True)
class PostgresUrl:
    host: str
    port: int
    user: str
    database: str
    password: Secret

    @property
    def shown(self) -> str:
        """The URL without its password: what messages and metadata name."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def connect_kwargs(self) -> dict[str, str | int]:
        """psycopg's keywords (no password keyword when there is none: libpq may find one in ~/.pgpass)."""
        kwargs: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.database,
        }
        if self.password:
            kwargs["password"] = self.password.reveal()
        return kwargs


def parse_postgres_url(text: str, setting: str) -> PostgresUrl:
    """``text`` as a :class:`PostgresUrl`; a :class:`PostgresUrlError` naming ``setting`` (never
    repeating the value, which may hold a password) when it is none."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise PostgresUrlError(f"{setting} is no URL: use postgresql://user@host:port/database") from None
    password = Secret(unquote(parts.password or "") or os.environ.get("PGPASSWORD", ""))
    if parts.scheme not in SCHEMES:
        raise PostgresUrlError(
            f"{setting} must start with postgresql:// (it starts with {parts.scheme or 'no scheme'})"
        )
    missing = [
        what
        for what, value in (
            ("user", parts.username),
            ("host", parts.hostname),
            ("database", parts.path.strip("/")),
        )
        if not value
    ]
    if missing:
        raise PostgresUrlError(
            f"{setting} names no {' and no '.join(missing)}: use postgresql://user@host:port/database"
        )
    return PostgresUrl(
        host=parts.hostname or "",
        port=port,
        user=unquote(parts.username or ""),
        database=unquote(parts.path.strip("/")),
        password=password,
    )
