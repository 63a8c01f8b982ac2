"""Table and column naming rules of ``docs/table-model.md``.

* An object's fields become columns named by their JSON path joined with ``$``
  (``metadata.updatedAt`` -> ``metadata$updatedAt``). JSON keys are kept exactly.
* An array becomes a child table named ``<parent table>$<hops joined with &>$<array key>``
  (``execution_context$context&celonis_postaction_feedback$quotes``); an array directly at the
  parent row is ``<parent table>$<array key>`` (``execution_templates$trigger``).
* An array of scalars keeps its values in the column ``value``; arrays inside arrays become a
  grandchild table whose "key" is ``value`` (``...$quotes$priceBreaks$value``).

Two JSON paths can want the same name (``a$b`` beside ``a.b``, keys differing only in case,
a key named like a system column). The :class:`~oe_assets.flatten.registry.SchemaRegistry`
resolves that; this module only says what each path *wants* to be called.

Path conventions used throughout the package:

* a *column path* is a tuple of object keys from the table's row element to the value;
  ``()`` is the row element itself (the ``value`` column of an array of scalars);
* a *table path* is the absolute path of the array whose elements are the table's rows, from
  the root document: object keys, with ``None`` for "each element of the array" (JSONPath
  ``[*]``). The root table's path is ``()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from oe_assets.model.declaration import MODEL, FamilyDeclaration

COLUMN_SEP = "$"
"""Joins the keys of a column path, and a child table's name to its parent's."""
HOP_SEP = "&"
"""Joins the object hops between a parent row and an array in a child table's name."""
VALUE_COLUMN = "value"
"""Column holding the scalar elements of an array; also the "key" of arrays inside arrays."""
EMPTY_SEGMENT = "(empty)"
"""Name segment used for the empty JSON key (DuckDB rejects zero-length identifiers)."""
NUL_SEGMENT = "\\u0000"
"""Text that replaces a NUL character inside a key (DuckDB identifiers cannot hold NUL)."""

ROW_ID = "_oe_row_id"
PARENT_ROW_ID = "_oe_parent_row_id"
POSITION = "_oe_position"
PARTITION = "_oe_partition"
LOADED_AT = "_oe_loaded_at"
DELETED_AT = "_oe_deleted_at"
"""When the API stopped returning the document (set on the root table by the landing, not the flattener)."""
RESERVED_COLUMNS: tuple[str, ...] = (ROW_ID, PARENT_ROW_ID, POSITION, PARTITION, LOADED_AT, DELETED_AT)
"""System column names reserved in every table before any JSON path is registered."""

ColumnPath = tuple[str, ...]
TablePath = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class TableFamily:
    """A root table and the child tables built from its documents' arrays.

    ``root_key_path`` is where each document keeps its primary key; in the root table the key
    lands in its natural column (``context$processid``, ``id``); every child table carries it in
    ``root_key_column``.
    """

    root_table: str
    root_key_path: tuple[str, ...]
    root_key_column: str

    @property
    def root_key_natural_column(self) -> str:
        """The root table's key column (the key's own JSON path joined with ``$``)."""
        return column_name(self.root_key_path)[1]

    @property
    def root_key_dotted(self) -> str:
        return ".".join(self.root_key_path)


def table_family(declared: FamilyDeclaration) -> TableFamily:
    """What the flattener needs of a family declared in the data-model file."""
    return TableFamily(declared.root_table, declared.root_key_path, declared.root_key_column)


FAMILIES: dict[str, TableFamily] = {f.root_table: table_family(f) for f in MODEL.families}
"""The families of the data-model file (``oe_assets/model/model.json``), by root table."""
CONTEXTS = FAMILIES["execution_context"]
TEMPLATES = FAMILIES["execution_templates"]
ACCOUNTS = FAMILIES["accounts"]


def segment(key: str) -> str:
    """The name segment for one JSON key: the key itself, unless DuckDB cannot hold it."""
    if not key:
        return EMPTY_SEGMENT
    if "\x00" in key:
        return key.replace("\x00", NUL_SEGMENT)
    return key


def column_name(path: ColumnPath) -> tuple[str, str]:
    """``(raw, base)`` names wanted by a column path.

    ``raw`` is the plain ``$``-join (what a reader expects); ``base`` is the same with empty keys
    and NUL characters made representable. The registry reports a collision whenever the name it
    gives differs from ``raw``.
    """
    if not path:
        return VALUE_COLUMN, VALUE_COLUMN
    raw = COLUMN_SEP.join(path)
    return raw, COLUMN_SEP.join(map(segment, path))


def child_table_name(parent_table: str, relpath: ColumnPath) -> tuple[str, str]:
    """``(raw, base)`` names wanted by an array at ``relpath`` from a row of ``parent_table``.

    ``relpath == ()`` is an array that is itself an element of the parent table's array.
    """
    if not relpath:
        name = parent_table + COLUMN_SEP + VALUE_COLUMN
        return name, name
    if len(relpath) == 1:
        return (
            parent_table + COLUMN_SEP + relpath[0],
            parent_table + COLUMN_SEP + segment(relpath[0]),
        )
    raw = parent_table + COLUMN_SEP + HOP_SEP.join(relpath[:-1]) + COLUMN_SEP + relpath[-1]
    base = (
        parent_table
        + COLUMN_SEP
        + HOP_SEP.join(map(segment, relpath[:-1]))
        + COLUMN_SEP
        + segment(relpath[-1])
    )
    return raw, base


def child_table_path(parent_path: TablePath, parent_is_root: bool, relpath: ColumnPath) -> TablePath:
    """Absolute table path of an array at ``relpath`` from a row of the parent table."""
    if parent_is_root:
        return relpath
    return (*parent_path, None, *relpath)


def relative_table_path(table_path: TablePath, parent_path: TablePath, parent_is_root: bool) -> ColumnPath:
    """Inverse of :func:`child_table_path`: the path from a parent row to the child's array."""
    rel = table_path if parent_is_root else table_path[len(parent_path) + 1 :]
    return tuple(k for k in rel if k is not None)  # never None by construction
