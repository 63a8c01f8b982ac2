"""Errors of the Celonis delivery: one sentence each, naming the setting, table or column to look at.

Messages are masked by value when made (:func:`oe_assets.config.secret.redact`), as the OE
client's are: Celonis may quote a credential back in an error body.
"""

from __future__ import annotations

from oe_assets.config.secret import redact


class CelonisError(Exception):
    """Base of every error the Celonis delivery raises on purpose; never holds a secret."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class CelonisRequestError(CelonisError):
    """Celonis refused a request (credentials, permission, a missing pool, a refused table or value)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CelonisJobFailed(CelonisError):
    """A push job ended in ERROR (or CANCELED): Celonis's own log lines are in the message."""

    def __init__(self, table: str, status: str, logs: list[str]) -> None:
        shown = "; ".join(line.strip() for line in logs[:20] if line.strip()) or "Celonis gave no log"
        super().__init__(
            f"Celonis push of table {table} ended in {status}: {shown}. Nothing of it is recorded as "
            "delivered; the next run pushes it again."
        )
        self.table = table
        self.status = status
        self.logs = logs


class CelonisHourlyLimit(CelonisError):
    """Celonis accepts no more push-job submissions this hour (250 per team and UTC hour)."""

    def __init__(self, wait_seconds: float | None, detail: str = "") -> None:
        when = f" (Celonis asked to wait {wait_seconds:.0f} s)" if wait_seconds else ""
        super().__init__(
            "Celonis accepts no more push jobs this hour: at most 250 submissions per team and UTC "
            f"hour{when}{detail}. Nothing is lost: the next run pushes what is still undelivered."
        )
        self.wait_seconds = wait_seconds


class CelonisLoadFailed(CelonisError):
    """The data model's load ended in ERROR (Celonis's message is in this one)."""
