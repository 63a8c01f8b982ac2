"""Fault switches for the Celonis stand-in: what goes wrong next, so a client's retry paths get exercised.

Counted switches (``status_429``, ``status_5xx``, ``fail_jobs``) are consumed one per event, so a test
states exactly how many failures it wants and the run after them is clean. They may be changed while the
server runs: plain attribute assignment, :meth:`CelonisFaults.update` or ``POST /_admin/faults``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

_COUNTED = ("status_429", "status_5xx", "fail_jobs")


@dataclass
class CelonisFaults:
    """Switches for injected faults (all off by default).

    - ``status_429``: the next N API requests (token requests excluded) answer 429 with ``Retry-After: 1``.
    - ``status_5xx``: the next N API requests answer 503.
    - ``fail_jobs``: the next N push-job executions end in ERROR (log ``Simulated failure``), pool unchanged.
    - ``load_error``: while true, every data-model load ends in ERROR.
    - :meth:`revoke_tokens`: every OAuth token issued so far stops working (401), so clients must renew.
    """

    status_429: int = 0
    status_5xx: int = 0
    fail_jobs: int = 0
    load_error: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _revoked_at: float | None = field(default=None, init=False, repr=False, compare=False)
    _revocations: int = field(default=0, init=False, repr=False, compare=False)

    def take_status(self) -> int | None:
        """Consume one injected status for an API request: 429 first, then 503; None when none is due."""
        with self._lock:
            if self.status_429 > 0:
                self.status_429 -= 1
                return 429
            if self.status_5xx > 0:
                self.status_5xx -= 1
                return 503
            return None

    def take_job_failure(self) -> bool:
        """Consume one ``fail_jobs``: True when this execution is to fail."""
        with self._lock:
            if self.fail_jobs > 0:
                self.fail_jobs -= 1
                return True
            return False

    def revoke_tokens(self) -> None:
        """Invalidate every OAuth token issued until now (static keys keep working)."""
        with self._lock:
            self._revoked_at = time.monotonic()
            self._revocations += 1

    def token_revoked(self, issued_at: float) -> bool:
        """True when a token issued at ``issued_at`` (monotonic) was issued before the last revocation."""
        with self._lock:
            return self._revoked_at is not None and issued_at <= self._revoked_at

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON object of switches (``revoke_tokens: true`` revokes); ValueError names a bad field.

        Validates everything before changing anything, so a bad request leaves the switches as they were.
        """
        known = {f.name for f in fields(self) if not f.name.startswith("_")}
        for name, value in changes.items():
            if name == "revoke_tokens":
                if not isinstance(value, bool):
                    raise ValueError("revoke_tokens must be true or false")
            elif name not in known:
                raise ValueError(f"unknown fault switch {name!r}; known: {', '.join(sorted(known))}")
            elif name in _COUNTED and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an integer >= 0")
            elif name == "load_error" and not isinstance(value, bool):
                raise ValueError("load_error must be true or false")
        with self._lock:
            for name, value in changes.items():
                if name != "revoke_tokens":
                    setattr(self, name, value)
        if changes.get("revoke_tokens"):
            self.revoke_tokens()

    def to_dict(self) -> dict[str, Any]:
        """The switches as JSON (plus how many revocations happened)."""
        with self._lock:
            state: dict[str, Any] = {
                f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")
            }
            state["revocations"] = self._revocations
        return state
