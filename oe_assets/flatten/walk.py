"""The walk: documents -> rows of every table, as Python lists and dicts (no Arrow yet).

One recursive walk per document appends every scalar into a per-table, per-path column (a
``{row index: value}`` dict, so a path missing from a row costs nothing); the flattener turns
each column into an Arrow array at the end of the batch. Tables and columns are met as the
documents bring them, named through the family's :class:`~oe_assets.flatten.registry.SchemaRegistry`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from oe_assets.flatten.naming import (
    ColumnPath,
    TableFamily,
    TablePath,
    child_table_name,
    child_table_path,
    column_name,
)
from oe_assets.flatten.registry import Collision, SchemaRegistry

Column = dict[int, Any]
"""Row index -> value; rows only ever grow, so a dense column's values are already in row order."""

_BULK_SCALARS = 8
"""Arrays longer than this are checked for holding only scalars, which then land in one update."""


class ObjectNode:
    """One object path inside one table's row element (a trie over keys).

    ``columns`` holds the scalar columns of the object's keys; ``children`` the nodes of keys
    holding objects or arrays; ``values`` the scalar elements when the node is a table's row
    element; ``table`` the child table of an array at this path.
    """

    __slots__ = ("children", "columns", "path", "table", "values")

    def __init__(self, path: ColumnPath) -> None:
        self.path = path
        self.children: dict[str, ObjectNode] = {}
        self.columns: dict[str, Column] = {}
        self.values: Column | None = None
        self.table: TableRows | None = None


class TableRows:
    """Rows of one table being built: each row's parent row and position, and the columns."""

    __slots__ = ("columns", "element", "name", "parent", "parent_rows", "path", "positions")

    def __init__(self, name: str, path: TablePath, parent: TableRows | None) -> None:
        self.name = name
        self.path = path
        self.parent = parent
        self.element = ObjectNode(())
        """the trie of the row element's object paths"""
        self.parent_rows: list[int] = []
        """per row, the index of its row in the parent table (child tables only)"""
        self.positions: list[int] = []
        """per row, its position in its array (child tables only)"""
        self.columns: list[tuple[str, ColumnPath, Column]] = []
        """(column name, path from the row element, values) in the order the columns were met"""


class Walk:
    """The rows of one batch of one table family: every table met so far, parents first."""

    __slots__ = (
        "child_system_columns",
        "collisions",
        "empty_arrays",
        "empty_objects",
        "registry",
        "root",
        "root_rows",
        "tables",
    )

    def __init__(self, registry: SchemaRegistry, family: TableFamily, system_columns: Iterable[str]) -> None:
        """``system_columns``: the names in every table besides the JSON paths' (the reserved
        ones and the constant columns); child tables also hold the family's root key column."""
        self.registry = registry
        self.root = TableRows(family.root_table, (), None)
        system_columns = tuple(system_columns)
        for name in system_columns:
            registry.reserve_system_column(family.root_table, name)
        self.child_system_columns = (family.root_key_column, *system_columns)
        self.tables: list[TableRows] = [self.root]
        self.root_rows = 0
        self.collisions: list[Collision] = []
        self.empty_objects = 0
        """``{}`` values seen (they produce no columns; the raw JSON keeps them)"""
        self.empty_arrays = 0
        """``[]`` values seen (they produce no rows)"""

    def add_document(self, doc: dict[str, Any]) -> str | None:
        """Walks ``doc`` into the next root row; the reason it cannot, its rows then taken out."""
        try:
            self._object(doc, self.root.element, self.root, self.root_rows)
        except Exception as exc:  # a record we cannot flatten: the caller quarantines it
            self._truncate(self.root_rows)
            if isinstance(exc, RecursionError):
                return "cannot flatten: nested deeper than the flattener supports"
            return f"cannot flatten: {type(exc).__name__}: {exc}"
        self.root_rows += 1
        return None

    # ------------------------------------------------------------ the hot path
    def _object(self, obj: dict[str, Any], node: ObjectNode, table: TableRows, row: int) -> None:
        columns = node.columns
        for key, value in obj.items():
            kind = type(value)
            if kind is dict or kind is list:
                if not value:
                    self._empty(kind)
                    continue
                child = node.children.get(key) or self._child(node, key)
                if kind is dict:
                    self._object(value, child, table, row)
                else:
                    self._array(value, child, table, row)
            else:
                try:
                    columns[key][row] = value
                except KeyError:
                    self._key_column(node, key, table)[row] = value

    def _array(self, arr: list[Any], node: ObjectNode, parent: TableRows, parent_row: int) -> None:
        table = node.table or self._table(node, parent)
        first = len(table.parent_rows)
        n = len(arr)
        table.parent_rows.extend([parent_row] * n)
        table.positions.extend(range(n))
        element = table.element
        if n > _BULK_SCALARS:
            kinds = set(map(type, arr))
            if dict not in kinds and list not in kinds:  # only scalars: one bulk update
                values = element.values if element.values is not None else self._values(table)
                values.update(zip(range(first, first + n), arr, strict=False))
                return
        for row, el in enumerate(arr, first):
            kind = type(el)
            if kind is dict or kind is list:
                if not el:
                    self._empty(kind)
                elif kind is dict:
                    self._object(el, element, table, row)
                else:
                    self._array(el, element, table, row)
            else:
                values = element.values if element.values is not None else self._values(table)
                values[row] = el

    def _empty(self, kind: type) -> None:
        if kind is dict:
            self.empty_objects += 1
        else:
            self.empty_arrays += 1

    # ---------------------------------------------------- first sight of a path
    def _child(self, node: ObjectNode, key: str) -> ObjectNode:
        if type(key) is not str:
            raise TypeError(f"object key {key!r} is not a string")
        child = node.children[key] = ObjectNode((*node.path, key))
        return child

    def _column(self, table: TableRows, path: ColumnPath) -> Column:
        raw, base = column_name(path)
        name, collision = self.registry.register_column(table.name, path, raw, base)
        if collision is not None:
            self.collisions.append(collision)
        column: Column = {}
        table.columns.append((name, path, column))
        return column

    def _key_column(self, node: ObjectNode, key: str, table: TableRows) -> Column:
        if type(key) is not str:
            raise TypeError(f"object key {key!r} is not a string")
        column = node.columns[key] = self._column(table, (*node.path, key))
        return column

    def _values(self, table: TableRows) -> Column:
        """The ``value`` column of an array's scalar elements."""
        column = table.element.values = self._column(table, ())
        return column

    def _table(self, node: ObjectNode, parent: TableRows) -> TableRows:
        raw, base = child_table_name(parent.name, node.path)
        path = child_table_path(parent.path, parent.parent is None, node.path)
        name, collision = self.registry.register_table(path, parent.name, raw, base)
        if collision is not None:
            self.collisions.append(collision)
        for system_name in self.child_system_columns:
            self.registry.reserve_system_column(name, system_name)
        table = node.table = TableRows(name, path, parent)
        self.tables.append(table)
        return table

    def _truncate(self, root_rows: int) -> None:
        """Drops every row added after the root table had ``root_rows`` rows.

        Rows are added depth-first in document order, so a child table's parent rows never
        decrease and the rows of the failed document are the tail of every table (and the last
        entries of every column dict).
        """
        lengths: dict[int, int] = {}
        for table in self.tables:
            if table.parent is None:
                n = root_rows
            else:
                n = bisect_left(table.parent_rows, lengths[id(table.parent)])
                del table.parent_rows[n:]
                del table.positions[n:]
            lengths[id(table)] = n
            for _name, _path, column in table.columns:
                while column and next(reversed(column)) >= n:
                    column.popitem()
