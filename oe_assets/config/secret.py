"""Credentials that never print, and redaction of their values wherever text is built.

A :class:`Secret` hides its value from ``repr``, ``str`` and pickling. That alone does not stop a
server from echoing the value back (a token endpoint quoting the client secret in its error, an
API quoting the bearer token), so every secret alive in the process is also known to
:func:`redact`, which replaces each occurrence of its value, and of the forms a server may echo
it in (URL-encoded, JSON-escaped), by ``***``. Error messages and log records pass through it
before anyone sees them; matching is by value, not by word, so a secret followed by a full stop,
or one containing ``=`` or a space, is found as well.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import weakref
from typing import NoReturn
from urllib.parse import quote, quote_plus

MASK = "***"


class Secret:
    """Wraps a secret string so that logs, reprs and exception texts cannot leak it.

    Only :meth:`reveal` returns the value; call it at the one place that must send it. A
    non-empty value is known to :func:`redact` for as long as the Secret is alive.
    """

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            _registry.add(self)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:  # pickling would copy the value into run storage
        raise TypeError("Secret values are not picklable")


class _Registry:
    """The live secrets, and one compiled pattern matching every form of every value."""

    def __init__(self) -> None:
        # Keyed by identity: equal Secrets are distinct holders, each alive on its own.
        self._secrets: weakref.WeakValueDictionary[int, Secret] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._values: frozenset[str] = frozenset()

    def add(self, secret: Secret) -> None:
        with self._lock:
            self._secrets[id(secret)] = secret

    def pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            values = frozenset(s.reveal() for s in self._secrets.values())
            if values != self._values:
                self._values = values
                self._pattern = _pattern_for(values)
            return self._pattern


def _pattern_for(values: frozenset[str]) -> re.Pattern[str] | None:
    """Longest forms first, so a value inside another is not half-replaced; percent-encodings
    match in either case (``%3d`` as well as ``%3D``)."""
    exact: set[str] = set()
    encoded: set[str] = set()
    for value in values:
        exact.add(value)
        exact.add(json.dumps(value)[1:-1])
        exact.add(json.dumps(value, ensure_ascii=False)[1:-1])
        encoded.update({quote(value, safe=""), quote_plus(value, safe=""), quote(value)})
    encoded -= exact
    if not exact:
        return None
    alternatives = [re.escape(v) for v in sorted(exact, key=len, reverse=True) if v]
    alternatives += [f"(?i:{re.escape(v)})" for v in sorted(encoded, key=len, reverse=True) if v]
    return re.compile("|".join(alternatives))


_registry = _Registry()


def redact(text: str) -> str:
    """``text`` with every live secret value (and its URL-encoded and JSON-escaped forms) masked."""
    if not text:
        return text
    pattern = _registry.pattern()
    return text if pattern is None else pattern.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Formats a record's message and masks every live secret in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message or record.args:
            record.msg, record.args = masked, ()
        return True


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with secrets masked in its records (filters do not inherit,
    so each of the project's named loggers gets its own)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
