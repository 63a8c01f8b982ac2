"""Rebuild documents from a :class:`FlatBatch` (the inverse of flattening, for tests and audits).

For a document without empty objects/arrays, type conflicts, collisions or null-valued keys
this gives the document back exactly, except that TIMESTAMP columns come back as naive UTC
``datetime`` objects and integers that shared a column with floats come back as floats. A key
whose value is JSON ``null`` cannot be told apart from a missing key and is omitted; a ``null``
element of an array comes back as ``None``.
"""

from __future__ import annotations

from typing import Any

from oe_assets.flatten.flattener import FlatBatch
from oe_assets.flatten.naming import PARENT_ROW_ID, POSITION, ROW_ID, TableFamily, relative_table_path

_MISSING = object()

Elements = dict[Any, Any]
"""A table's rows by key: a root row's key is its root key, a child row's (root key, row id)."""
Children = dict[Any, list[tuple[int, "_Element"]]]
"""A child table's elements grouped by their parent row's key, each with its position."""


def reassemble(batch: FlatBatch, family: TableFamily | None = None) -> list[dict[str, Any]]:
    """Documents of the batch's root table, in row order."""
    family = family or batch.family
    docs, elements = _root_documents(batch, family)
    children: dict[str, Children] = {}
    for name in batch.tables:  # children in creation order (parents first)
        if name != family.root_table:
            elements[name], children[name] = _child_elements(batch, family, name)
    for name in reversed(list(children)):  # deepest first: containers are complete when attached
        _attach(batch, family, name, children[name], elements[batch.parents[name]])
    return docs


def _root_documents(
    batch: FlatBatch, family: TableFamily
) -> tuple[list[dict[str, Any]], dict[str, Elements]]:
    """The root rows as documents (in row order), and the elements of each table so far."""
    root = batch.tables[family.root_table]
    paths = batch.json_paths.get(family.root_table, {})
    columns = {name: root.column(name).to_pylist() for name in paths}
    docs: list[dict[str, Any]] = []
    by_key: Elements = {}
    for i, key in enumerate(root.column(family.root_key_natural_column).to_pylist()):
        doc: dict[str, Any] = {}
        for name, path in paths.items():
            v = columns[name][i]
            if v is not None:
                _set(doc, path, v)
        docs.append(doc)
        by_key[key] = doc
    return docs, {family.root_table: by_key}


def _child_elements(batch: FlatBatch, family: TableFamily, name: str) -> tuple[Elements, Children]:
    """A child table's elements by row key, and grouped by their parent's key."""
    table = batch.tables[name]
    paths = batch.json_paths.get(name, {})
    data = {c: table.column(c).to_pylist() for c in paths}
    root_keys = table.column(family.root_key_column).to_pylist()
    parent_ids = table.column(PARENT_ROW_ID).to_pylist()
    positions = table.column(POSITION).to_pylist()
    parent_is_root = batch.parents[name] == family.root_table
    by_id: Elements = {}
    groups: Children = {}
    for i, row_id in enumerate(table.column(ROW_ID).to_pylist()):
        holder = _Element(_element({c: data[c][i] for c in paths}, paths))
        by_id[root_keys[i], row_id] = holder
        parent_key = root_keys[i] if parent_is_root else (root_keys[i], parent_ids[i])
        groups.setdefault(parent_key, []).append((positions[i], holder))
    return by_id, groups


def _element(values: dict[str, Any], paths: dict[str, tuple[str, ...]]) -> Any:
    """One row's element: its scalar (the ``value`` column), else the object of its columns."""
    el: Any = _MISSING
    obj: dict[str, Any] = {}
    for c, path in paths.items():
        v = values[c]
        if v is None:
            continue
        if path == ():
            el = v
        else:
            _set(obj, path, v)
    return el if el is not _MISSING else (obj if obj else None)


def _attach(batch: FlatBatch, family: TableFamily, name: str, children: Children, parents: Elements) -> None:
    """Each parent row gets the array of its children, in position order."""
    parent = batch.parents[name]
    parent_is_root = parent == family.root_table
    rel = relative_table_path(batch.table_paths[name], batch.table_paths[parent], parent_is_root)
    for parent_id, items in children.items():
        items.sort(key=lambda it: it[0])
        arr = [_unwrap(h) for _, h in items]
        target = parents[parent_id]
        if parent_is_root:
            _set(target, rel, arr)
        elif rel == ():
            target.value = arr  # an array inside an array
        else:
            if not isinstance(target.value, dict):
                target.value = {}
            _set(target.value, rel, arr)


class _Element:
    """A child row's element, mutable so that grandchildren can be attached after the fact."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _unwrap(h: Any) -> Any:
    return h.value if isinstance(h, _Element) else h


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for k in path[:-1]:
        nxt = obj.get(k)
        if not isinstance(nxt, dict):
            nxt = obj[k] = {}
        obj = nxt
    obj[path[-1]] = value
