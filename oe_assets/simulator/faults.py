"""Fault switches for the simulator: what goes wrong, how often, and how often it did.

All switches are off by default and may be changed while the server runs (plain attribute
assignment, :meth:`FaultSwitches.update` or the ``/_admin/faults`` endpoint). Random decisions
come from a private rng seeded with ``seed``, so a given request sequence meets the same faults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields
from typing import Any

NORMAL_TOKEN_TTL_SECONDS = 14399

_RATES = ("rate_429", "rate_5xx", "slow_rate", "drop_connection_rate", "corrupt_page_rate")
_COUNTERS = (
    "rate_limited",  # 429 answered
    "server_error",  # 5xx answered
    "slow",  # answers delayed
    "dropped",  # connections closed without an answer
    "revoked",  # 401 by revoke_tokens_every (tokens invalidated)
    "expired_token",  # 401 for a token past its (possibly shortened) lifetime
    "mutated",  # collection changes made by mutate_while_paging
    "corrupted",  # process-context pages served cut short (not valid JSON)
)


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What the fault layer does to one request before it is served."""

    drop: bool = False
    delay_seconds: float = 0.0
    status: int | None = None  # 429 or a 5xx to answer instead of serving


@dataclass
class FaultSwitches:
    """Switches for injected faults (all off by default).

    - ``rate_429``: share of API requests answered 429 with ``Retry-After: retry_after_seconds``.
    - ``rate_5xx``: share answered 500/502/503/504.
    - ``slow_rate`` / ``slow_seconds``: share delayed by ``slow_seconds`` before answering.
    - ``token_ttl_seconds``: tokens issued from now on expire after this many seconds; the token
      response still says ``expires_in: 14399`` while ``lie_about_expiry`` is true.
    - ``revoke_tokens_every``: every Nth authenticated data request is answered 401
      "Access Token expired" and every issued token becomes invalid.
    - ``drop_connection_rate``: share of requests whose connection is closed without an answer.
    - ``mutate_while_paging``: before each process-context page is served, a context of that
      template is created, another updated and another deleted.
    - ``corrupt_page_rate``: share of process-context pages answered 200 with the JSON body cut
      in half (Content-Length matches, so only the body is invalid); drawn from its own rng, so
      turning it on does not shift the other faults' sequence.
    - ``seed``: seed of the fault rng (changing it restarts the random sequence).
    """

    rate_429: float = 0.0
    retry_after_seconds: float = 1.0
    rate_5xx: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    token_ttl_seconds: int | None = None
    lie_about_expiry: bool = True
    revoke_tokens_every: int | None = None
    drop_connection_rate: float = 0.0
    mutate_while_paging: bool = False
    corrupt_page_rate: float = 0.0
    seed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _rng: random.Random = field(default_factory=random.Random, init=False, repr=False, compare=False)
    _rng_seed: int | None = field(default=None, init=False, repr=False, compare=False)
    _corrupt_rng: random.Random = field(default_factory=random.Random, init=False, repr=False, compare=False)
    _corrupt_seed: int | None = field(default=None, init=False, repr=False, compare=False)
    _counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(_COUNTERS, 0), init=False, repr=False, compare=False
    )
    _data_requests: int = field(default=0, init=False, repr=False, compare=False)

    # ------------------------------------------------------------ configuration

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The public switch names (what to_dict/from_dict use)."""
        return tuple(f.name for f in fields(cls) if not f.name.startswith("_"))

    def to_dict(self) -> dict[str, Any]:
        """The switches as a JSON-ready dict."""
        return {name: getattr(self, name) for name in self.field_names()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FaultSwitches:
        """Switches from a (partial) dict; unknown names or bad values raise ValueError."""
        switches = cls()
        switches.update(values)
        return switches

    def update(self, values: dict[str, Any]) -> None:
        """Change some switches at once; all are validated before any is applied."""
        if not isinstance(values, dict):
            raise ValueError("fault switches must be a JSON object")
        clean = {name: _validate(name, value) for name, value in values.items()}
        with self._lock:
            for name, value in clean.items():
                setattr(self, name, value)

    def reset(self) -> None:
        """All switches off and all counters back to zero."""
        defaults = FaultSwitches()
        with self._lock:
            for name in self.field_names():
                setattr(self, name, getattr(defaults, name))
            self._rng_seed = None
            self._corrupt_seed = None
            self._counters = dict.fromkeys(_COUNTERS, 0)
            self._data_requests = 0

    # ------------------------------------------------------------ decisions

    def _rand(self) -> float:
        if self._rng_seed != self.seed:
            self._rng.seed(f"oe-sim-faults:{self.seed}")
            self._rng_seed = self.seed
        return self._rng.random()

    def draw(self) -> FaultDecision:
        """Decide the faults for one API request (and count them).

        Four numbers are drawn per request whatever the switches say, so turning one switch does
        not shift the random sequence of the others.
        """
        with self._lock:
            r_drop, r_slow, r_429, r_5xx = self._rand(), self._rand(), self._rand(), self._rand()
            pick = self._rand()
            if r_drop < self.drop_connection_rate:
                self._counters["dropped"] += 1
                return FaultDecision(drop=True)
            delay = 0.0
            if r_slow < self.slow_rate and self.slow_seconds > 0:
                self._counters["slow"] += 1
                delay = float(self.slow_seconds)
            status: int | None = None
            if r_429 < self.rate_429:
                self._counters["rate_limited"] += 1
                status = 429
            elif r_5xx < self.rate_5xx:
                self._counters["server_error"] += 1
                status = (500, 502, 503, 504)[int(pick * 4)]
            return FaultDecision(delay_seconds=delay, status=status)

    def corrupts_page(self) -> bool:
        """Decide (and count) whether the process-context page being served is cut short."""
        with self._lock:
            if self.corrupt_page_rate <= 0:
                return False
            if self._corrupt_seed != self.seed:
                self._corrupt_rng.seed(f"oe-sim-corrupt:{self.seed}")
                self._corrupt_seed = self.seed
            if self._corrupt_rng.random() < self.corrupt_page_rate:
                self._counters["corrupted"] += 1
                return True
            return False

    def data_request_revokes(self) -> bool:
        """Count an authenticated data request; True when this one must revoke all tokens."""
        with self._lock:
            self._data_requests += 1
            every = self.revoke_tokens_every
            if every and self._data_requests % every == 0:
                self._counters["revoked"] += 1
                return True
            return False

    def token_lifetime(self) -> tuple[float, int]:
        """(real lifetime in seconds, ``expires_in`` to announce) for a token issued now."""
        with self._lock:
            ttl = self.token_ttl_seconds
            if ttl is None:
                return float(NORMAL_TOKEN_TTL_SECONDS), NORMAL_TOKEN_TTL_SECONDS
            return float(ttl), NORMAL_TOKEN_TTL_SECONDS if self.lie_about_expiry else int(ttl)

    def derive_rng(self) -> random.Random:
        """A fresh rng drawn from the fault rng (for mutations), keeping runs reproducible."""
        with self._lock:
            return random.Random(int(self._rand() * 2**53))

    def retry_after_header(self) -> str:
        """``Retry-After`` value: whole seconds when whole, else a decimal (clients should parse float)."""
        value = max(0.0, float(self.retry_after_seconds))
        return str(int(value)) if value.is_integer() else f"{value:g}"

    # ------------------------------------------------------------ counters

    def count(self, name: str, n: int = 1) -> None:
        """Add to a fault counter (the server counts expired tokens and mutations here)."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def counters(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        with self._lock:
            return dict(self._counters)


def _validate(name: str, value: Any) -> Any:
    """Check one switch value; ValueError naming the switch when it is wrong."""
    if name not in FaultSwitches.field_names():
        raise ValueError(f"unknown fault switch {name!r}; known: {', '.join(FaultSwitches.field_names())}")
    if name in ("mutate_while_paging", "lie_about_expiry"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if name in ("token_ttl_seconds", "revoke_tokens_every"):
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < (0 if name == "token_ttl_seconds" else 1)
        ):
            raise ValueError(
                f"{name} must be null or an integer >= {0 if name == 'token_ttl_seconds' else 1}"
            )
        return value
    if name == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("seed must be an integer")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if name in _RATES and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return float(value)
