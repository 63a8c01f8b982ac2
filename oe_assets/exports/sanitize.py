"""Text the export formats cannot carry, made carriable, and counted.

XML 1.0 cannot hold most control characters even as character references (`&#1;` is not
well-formed), and tools choke on them in JSON and SQLite too. So every text value of an export,
in every format alike, has its control characters (other than tab, newline, carriage return) and
the non-characters U+FFFE/U+FFFF written out as the six characters `\\uXXXX`; each value changed
is counted. Most text needs nothing, so the search runs vectorised in Arrow and only the values
it flags are rewritten in Python.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

_BAD = "[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"
_BAD_RE = re.compile(_BAD)


def escape_text(value: str) -> str:
    """``value`` with each character XML 1.0 cannot carry written as ``\\uXXXX``."""
    return _BAD_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def sanitize_column(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, int]:
    """The column with every flagged value escaped, and how many values were changed."""
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return column, 0
    flagged = pc.match_substring_regex(column, _BAD)
    count = int(pc.sum(flagged).as_py() or 0)
    if not count:
        return column, 0
    values = column.to_pylist()
    marks = flagged.to_pylist()
    fixed = [escape_text(v) if mark else v for v, mark in zip(values, marks, strict=True)]
    return pa.chunked_array([pa.array(fixed, type=column.type)]), count


def sanitize_tables(tables: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], int]:
    """Every text column of every table sanitized; the number of values changed in all of them."""
    total = 0
    out = {}
    for name, table in tables.items():
        for i, field in enumerate(table.schema):
            column, changed = sanitize_column(table.column(i))
            if changed:
                table = table.set_column(i, field, column)
                total += changed
        out[name] = table
    return out, total
