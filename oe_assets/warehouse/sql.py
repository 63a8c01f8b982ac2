"""Quoting for SQL built from untrusted names (JSON keys become table and column names)."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier: double quotes, inner quotes doubled.

    Any string becomes a valid identifier (quotes, semicolons, ``$``, newlines, non-ASCII);
    only the empty string and strings holding NUL, which DuckDB cannot represent, raise
    ``ValueError`` (the flattener never produces either).
    """
    if not isinstance(name, str):
        raise TypeError(f"identifier must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("an identifier cannot be empty")
    if "\x00" in name:
        raise ValueError(f"an identifier cannot contain NUL: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as a SQL string literal: single quotes, inner quotes doubled.

    Prefer bound parameters (``?``); this is for the few places where DuckDB takes none
    (DDL such as ``ALTER ... USING`` or ``COMMENT ON``).
    """
    if not isinstance(value, str):
        raise TypeError(f"literal must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("a string literal cannot contain NUL")
    return "'" + value.replace("'", "''") + "'"


def qualified(*parts: str) -> str:
    """``"a"."b"`` from parts."""
    return ".".join(quote_ident(p) for p in parts)
