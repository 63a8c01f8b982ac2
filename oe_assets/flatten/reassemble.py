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


def reassemble(batch: FlatBatch, family: TableFamily | None = None) -> list[dict[str, Any]]:
    """Documents of the batch's root table, in row order."""
    family = family or batch.family
    root_name = family.root_table
    root = batch.tables[root_name]
    root_paths = batch.json_paths.get(root_name, {})
    key_col = family.root_key_natural_column

    # row key -> element (a dict, list, scalar or None) per table; a child row's key is
    # (root key, row id), a root row's its root key
    elements: dict[str, dict[Any, Any]] = {}
    docs: list[dict[str, Any]] = []
    root_by_id: dict[Any, Any] = {}
    cols = {name: root.column(name).to_pylist() for name in root_paths}
    keys = root.column(key_col).to_pylist()
    for i, key in enumerate(keys):
        doc: dict[str, Any] = {}
        for name, path in root_paths.items():
            v = cols[name][i]
            if v is not None:
                _set(doc, path, v)
        docs.append(doc)
        root_by_id[key] = doc
    elements[root_name] = root_by_id

    # children in creation order (parents first); rows carry their parent's row id and position
    pending: dict[str, dict[str, list[tuple[int, Any]]]] = {}
    for name, table in batch.tables.items():
        if name == root_name:
            continue
        paths = batch.json_paths.get(name, {})
        data = {c: table.column(c).to_pylist() for c in paths}
        root_keys = table.column(family.root_key_column).to_pylist()
        row_ids = table.column(ROW_ID).to_pylist()
        parent_ids = table.column(PARENT_ROW_ID).to_pylist()
        positions = table.column(POSITION).to_pylist()
        parent_is_root = batch.parents[name] == root_name
        by_id: dict[Any, Any] = {}
        groups: dict[Any, list[tuple[int, Any]]] = {}
        for i, row_id in enumerate(row_ids):
            el: Any = _MISSING
            obj: dict[str, Any] = {}
            for c, path in paths.items():
                v = data[c][i]
                if v is None:
                    continue
                if path == ():
                    el = v
                else:
                    _set(obj, path, v)
            holder = _Element(el if el is not _MISSING else (obj if obj else None))
            by_id[root_keys[i], row_id] = holder
            parent_key = root_keys[i] if parent_is_root else (root_keys[i], parent_ids[i])
            groups.setdefault(parent_key, []).append((positions[i], holder))
        elements[name] = by_id
        pending[name] = groups

    # attach children to parents, deepest first so that containers are complete when attached
    for name in reversed(list(pending)):
        parent = batch.parents[name]
        parent_is_root = parent == root_name
        rel = relative_table_path(batch.table_paths[name], batch.table_paths[parent], parent_is_root)
        for parent_id, items in pending[name].items():
            items.sort(key=lambda it: it[0])
            arr = [_unwrap(h) for _, h in items]
            target = elements[parent][parent_id]
            if parent_is_root:
                _set(target, rel, arr)
            elif rel == ():
                target.value = arr  # an array inside an array
            else:
                if not isinstance(target.value, dict):
                    target.value = {}
                _set(target.value, rel, arr)
    return docs


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
