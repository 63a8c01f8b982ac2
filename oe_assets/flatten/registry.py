"""SchemaRegistry: which JSON path owns which table and column name.

Names are resolved once and then kept: the first path registered owns a name, a later different
path that wants the same name (compared with ``str.casefold()``, since DuckDB identifiers are
case-insensitive) gets ``name~2``, ``name~3``, ... (the smallest free one). System columns are
registered before any JSON path of their table, so a JSON key can never take them.

The registry is a plain object: the warehouse keeps its names (``_oe_tables`` / ``_oe_columns``,
written with each batch) and :meth:`SchemaRegistry.from_rows` rebuilds it from them
(``warehouse.load_registry``), so the same path gets the same name in every later batch and
partition; :meth:`SchemaRegistry.to_rows` gives the rows back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from oe_assets.flatten.naming import ColumnPath, TablePath


@dataclass(frozen=True, slots=True)
class Collision:
    """A path that could not have the name it wanted.

    ``kind`` is ``"column"`` (``table`` is the column's table) or ``"table"`` (``table`` is the
    parent table whose namespace the child table's name was resolved in; ``json_path`` is then
    the absolute table path).
    """

    table: str
    json_path: tuple[str | None, ...]
    wanted_name: str
    given_name: str
    kind: str = "column"


@dataclass(frozen=True, slots=True)
class RegisteredTable:
    name: str
    parent: str | None
    json_path: TablePath


@dataclass(frozen=True, slots=True)
class RegisteredColumn:
    table: str
    name: str
    json_path: ColumnPath | None
    """``None`` for system columns (keys, constants), which come from no JSON path."""


@dataclass(slots=True)
class RegistryRows:
    tables: list[RegisteredTable] = field(default_factory=list)
    columns: list[RegisteredColumn] = field(default_factory=list)


class SchemaRegistry:
    """Table and column names of one table family, resolved deterministically."""

    def __init__(self) -> None:
        self._tables: dict[TablePath, RegisteredTable] = {}
        self._tables_by_name: dict[str, RegisteredTable] = {}
        self._table_names_cf: set[str] = set()
        # table -> column path -> name; and table -> casefolded names taken (JSON and system)
        self._columns: dict[str, dict[ColumnPath, str]] = {}
        self._system: dict[str, list[str]] = {}
        self._names_cf: dict[str, set[str]] = {}
        self.collisions: list[Collision] = []
        """Every resolution made by this registry object (not those of a persisted one)."""

    # ------------------------------------------------------------------ tables
    def register_table(
        self, json_path: TablePath, parent: str | None, raw: str, base: str | None = None
    ) -> tuple[str, Collision | None]:
        """The name of the table at ``json_path``; registers it on first sight."""
        known = self._tables.get(json_path)
        if known is not None:
            return known.name, None
        name = _free_name(base if base is not None else raw, self._table_names_cf)
        entry = RegisteredTable(name, parent, json_path)
        self._tables[json_path] = entry
        self._tables_by_name[name] = entry
        self._table_names_cf.add(name.casefold())
        self._columns.setdefault(name, {})
        self._system.setdefault(name, [])
        self._names_cf.setdefault(name, set())
        collision = None
        if name != raw:
            collision = Collision(parent or name, json_path, raw, name, "table")
            self.collisions.append(collision)
        return name, collision

    def table_name(self, json_path: TablePath) -> str | None:
        entry = self._tables.get(json_path)
        return None if entry is None else entry.name

    def table(self, name: str) -> RegisteredTable | None:
        return self._tables_by_name.get(name)

    @property
    def tables(self) -> list[RegisteredTable]:
        return list(self._tables.values())

    # ----------------------------------------------------------------- columns
    def reserve_system_column(self, table: str, name: str) -> None:
        """Registers a system column ``name`` in ``table`` (idempotent).

        Raises ``ValueError`` when a JSON path already owns the name: system columns must be
        reserved before JSON paths (the flattener does so for every table it creates).
        """
        system = self._system.setdefault(table, [])
        if name in system:
            return
        taken = self._names_cf.setdefault(table, set())
        if name.casefold() in taken:
            owner = next(
                (p for p, n in self._columns.get(table, {}).items() if n.casefold() == name.casefold()), None
            )
            raise ValueError(
                f"system column {name!r} of table {table!r} is already owned by JSON path {owner!r}"
            )
        system.append(name)
        taken.add(name.casefold())
        self._columns.setdefault(table, {})

    def register_column(
        self, table: str, json_path: ColumnPath, raw: str, base: str | None = None
    ) -> tuple[str, Collision | None]:
        """The name of the column at ``json_path`` (relative to the table's row element)."""
        cols = self._columns.setdefault(table, {})
        known = cols.get(json_path)
        if known is not None:
            return known, None
        taken = self._names_cf.setdefault(table, set())
        name = _free_name(base if base is not None else raw, taken)
        cols[json_path] = name
        taken.add(name.casefold())
        collision = None
        if name != raw:
            collision = Collision(table, json_path, raw, name, "column")
            self.collisions.append(collision)
        return name, collision

    def column_name(self, table: str, json_path: ColumnPath) -> str | None:
        return self._columns.get(table, {}).get(json_path)

    def columns(self, table: str) -> dict[ColumnPath, str]:
        """JSON columns of ``table``: path -> name (registration order)."""
        return dict(self._columns.get(table, {}))

    def system_columns(self, table: str) -> list[str]:
        return list(self._system.get(table, []))

    # ------------------------------------------------------------- persistence
    def to_rows(self) -> RegistryRows:
        rows = RegistryRows(tables=list(self._tables.values()))
        for table in self._tables_by_name:
            rows.columns.extend(RegisteredColumn(table, n, None) for n in self._system.get(table, []))
            rows.columns.extend(
                RegisteredColumn(table, n, p) for p, n in self._columns.get(table, {}).items()
            )
        return rows

    @classmethod
    def from_rows(
        cls, tables: Iterable[RegisteredTable], columns: Iterable[RegisteredColumn]
    ) -> SchemaRegistry:
        """Rebuilds a registry from persisted rows (names are taken as given, not re-resolved)."""
        reg = cls()
        for t in tables:
            path = tuple(t.json_path)
            entry = RegisteredTable(t.name, t.parent, path)
            reg._tables[path] = entry
            reg._tables_by_name[t.name] = entry
            reg._table_names_cf.add(t.name.casefold())
            reg._columns.setdefault(t.name, {})
            reg._system.setdefault(t.name, [])
            reg._names_cf.setdefault(t.name, set())
        for c in columns:
            taken = reg._names_cf.setdefault(c.table, set())
            if c.json_path is None:
                reg._system.setdefault(c.table, []).append(c.name)
            else:
                reg._columns.setdefault(c.table, {})[tuple(c.json_path)] = c.name
            taken.add(c.name.casefold())
        return reg


def _free_name(base: str, taken_cf: set[str]) -> str:
    if base.casefold() not in taken_cf:
        return base
    n = 2
    while f"{base}~{n}".casefold() in taken_cf:
        n += 1
    return f"{base}~{n}"
