"""A holder for credentials that never prints its value."""

from __future__ import annotations

from typing import NoReturn


class Secret:
    """Wraps a secret string so that logs, reprs and exception texts cannot leak it.

    Only :meth:`reveal` returns the value; call it at the one place that must send it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

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
