"""DuckDB's memory limit, raised for the transaction that writes wide tables and restored after.

Why: an insert needs DuckDB memory for EVERY column of its table, whatever the batch holds (a
2,048-value vector per column in each chunk of the statement, and the transaction's segment per
column until commit), so under the warehouse's own limit a wide enough table cannot be written
at all (a hostile document with 5,000 keys failed its whole run). Copying rows into a wider
table costs on top a few bytes per value of a row group until the group is written out. The
constants below are the measured costs, rounded up (figures in ``docs/bench/findings.md``,
"Loader rules").

The raise covers the widths written in the transaction and never goes beyond 80 % of the
machine's memory (DuckDB's own default); it is undone when the write ends, committed or not.
"""

from __future__ import annotations

import os
import re

import duckdb

from oe_assets.warehouse.connection import WAREHOUSE_SETTINGS

PER_COLUMN_BYTES = 128 * 1024
"""DuckDB memory an insert may take per column of its table (measured, rounded up)."""
PER_COPIED_VALUE_BYTES = 24
"""Per value of the rows copied into a rebuilt table, up to one row group (measured, rounded up)."""
ROW_GROUP_ROWS = 122_880
"""DuckDB writes a transaction's rows out per row group: the copy's memory stops growing there."""
FLOOR_BYTES = 128 * 1024 * 1024
"""Kept besides the columns' share, for everything else the transaction holds."""

_UNITS = {"bytes": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
_UNITS |= {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}
_SIZE = re.compile(r"^\s*([0-9.]+)\s*([A-Za-z]+)\s*$")


class MemoryLimit:
    """Raises ``conn``'s ``memory_limit`` as wide tables are written; :meth:`restore` undoes it.

    One object per write transaction: the widths it covers are those of that transaction.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self._widths: dict[str, int] = {}
        self._copy_bytes = 0
        self._setting: tuple[str | None, int | None] | None = None  # (text to restore, bytes), once read
        self.raised_to: int | None = None
        """bytes the limit was last raised to (None: never raised)"""

    def cover(self, table: str, columns: int, copied_rows: int = 0) -> None:
        """Makes room for an insert into ``table`` of ``columns`` columns (and a copy of rows)."""
        self._widths[table] = max(columns, self._widths.get(table, 0))
        copied = min(copied_rows, ROW_GROUP_ROWS) * columns * PER_COPIED_VALUE_BYTES
        self._copy_bytes = max(self._copy_bytes, copied)
        need = FLOOR_BYTES + sum(self._widths.values()) * PER_COLUMN_BYTES + self._copy_bytes
        if need <= _USUAL_BYTES:
            return  # the warehouse's own limit covers it: nothing to ask DuckDB
        if self._setting is None:
            self._setting = self._current()
        limit = self.raised_to or self._setting[1]
        ceiling = _machine_ceiling()
        need = min(need, ceiling) if ceiling is not None else need
        if limit is not None and need > limit:
            self.conn.execute(f"SET memory_limit = '{need}B'")
            self.raised_to = need

    def restore(self) -> None:
        """The limit as it was before the first raise (call it once the transaction has ended)."""
        if self.raised_to is not None and self._setting is not None and self._setting[0] is not None:
            self.conn.execute(f"SET memory_limit = '{self._setting[0]}'")
            self.raised_to = None

    def _current(self) -> tuple[str | None, int | None]:
        """The setting to restore, and its bytes. DuckDB shows the limit rounded (``244.1 MiB``
        for 256 MB): when that is the warehouse's own limit, its exact text is restored."""
        row = self.conn.execute("SELECT current_setting('memory_limit')").fetchone()
        shown = None if row is None else str(row[0])
        size = _parse_size(shown)
        if size is not None and abs(size - _USUAL_BYTES) <= _SHOWN_ROUNDING:
            return WAREHOUSE_SETTINGS["memory_limit"], _USUAL_BYTES
        return shown, size


def _parse_size(text: str | None) -> int | None:
    """Bytes of a size as DuckDB shows it (``244.1 MiB``); None when not understood."""
    found = _SIZE.match(text or "")
    if found is None or found.group(2) not in _UNITS:
        return None
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def _machine_ceiling() -> int | None:
    """80 % of the machine's memory (DuckDB's default limit), None when the OS does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.8)
    except (AttributeError, ValueError, OSError):
        return None


_USUAL_BYTES = _parse_size(WAREHOUSE_SETTINGS["memory_limit"]) or FLOOR_BYTES
_SHOWN_ROUNDING = 2**20 // 10
"""DuckDB shows a size with one decimal of its unit (MiB for the warehouse's limit)."""
