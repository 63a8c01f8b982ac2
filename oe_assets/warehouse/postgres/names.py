"""Names PostgreSQL can hold: identifiers are cut at 63 bytes, with only a NOTICE.

Several Celonis names are longer (``execution_context$context&celonis_postaction_feedback$quotes$
priceBreaks$value`` has 78 bytes), and two long names that share their first 63 bytes would
silently become one table. A name that fits is kept; a longer one becomes its first bytes (cut at
a character boundary), ``~`` and the start of its SHA-256: the same name always gets the same
short form, and a short form is never one another name already has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

MAX_IDENTIFIER_BYTES = 63
HASH_DIGITS = 10


def physical_names(names: Iterable[str]) -> dict[str, str]:
    """Each of ``names`` -> the name it gets in PostgreSQL, distinct for distinct names.

    Names that fit are placed first, so that a short form never takes a name that exists as it is;
    the long ones follow in sorted order, so the result does not depend on the order given.
    """
    unique = sorted(set(names))
    placed = {name: name for name in unique if _fits(name)}
    taken = set(placed.values())
    for name in (n for n in unique if not _fits(n)):
        digits = HASH_DIGITS
        short = _short_form(name, digits)
        while short in taken:  # a clash of hash prefixes: take more of the hash
            digits += 2
            short = _short_form(name, digits)
        placed[name] = short
        taken.add(short)
    return placed


def _fits(name: str) -> bool:
    return len(name.encode()) <= MAX_IDENTIFIER_BYTES


def _short_form(name: str, digits: int) -> str:
    suffix = "~" + hashlib.sha256(name.encode()).hexdigest()[:digits]
    head = name.encode()[: MAX_IDENTIFIER_BYTES - len(suffix)].decode(errors="ignore")
    return head + suffix


def physical_name_for(name: str, taken: set[str]) -> str:
    """The name ``name`` gets beside the physical names already ``taken`` (by other names): itself
    when it fits and is free, else its short form, lengthened until it is free."""
    if _fits(name) and name not in taken:
        return name
    digits = HASH_DIGITS
    short = _short_form(name, digits)
    while short in taken:
        digits += 2
        short = _short_form(name, digits)
    return short
