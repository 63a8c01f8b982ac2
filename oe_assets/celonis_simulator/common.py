"""Small pieces the stand-in's modules share: the error a handler raises, ids and Celonis' time format."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from oe_assets.core.timestamps import format_oe_timestamp


class Reply(Exception):
    """Raised anywhere below a handler to answer with ``code`` and the JSON ``payload``.

    Celonis' error bodies vary by route: a JSON string (404, 429, 403), ``FrontendHandledBackendError``
    (``{frontendErrorKey, errorInformation}``, 400) or an OAuth error object on the token endpoint."""

    def __init__(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(payload if isinstance(payload, str) else str(payload))
        self.code = code
        self.payload = payload
        self.headers = headers or {}


def bad_request(message: str, key: str = "DATA_PUSH_INVALID_REQUEST") -> Reply:
    """A 400 with Celonis' ``FrontendHandledBackendError`` body."""
    return Reply(400, {"frontendErrorKey": key, "errorInformation": message})


def new_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Aware UTC now, cut to milliseconds (what the wire format shows)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds, ``2024-01-31T12:00:00.000Z`` (a stand-in choice; undocumented)."""
    return None if value is None else format_oe_timestamp(value)
