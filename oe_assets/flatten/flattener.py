"""JSON documents -> Celonis-shaped tables (pyarrow), with nothing lost silently.

One recursive walk per document appends every scalar into a per-table, per-path Python list
(padded with ``None`` lazily, so a path missing from a row costs nothing); at the end of the
batch each list becomes a pyarrow array in one call, typed columnar:

* bool -> BOOLEAN, int -> BIGINT (outside int64 -> VARCHAR text), float or int+float -> DOUBLE,
* strings that are all ISO-8601 timestamps (:data:`TIMESTAMP_PATTERN`: 0-9 fraction digits, an
  offset ``Z``/``+HH:MM``/``+HHMM``/``+HH`` or none = UTC) -> TIMESTAMP, the instant in naive UTC
  (digits beyond microseconds truncated), the same instant :func:`oe_assets.core.timestamps.parse_timestamp`
  reads; other strings -> VARCHAR,
* any other mix -> VARCHAR holding each value's JSON text, reported as a :class:`TypeConflict`,
* all-null -> VARCHAR.

Documents arrive parsed, or as :class:`UnparsableDocument` for a JSON text that did not parse
(NaN, ``1e400``, a lone surrogate, nesting deeper than orjson reads): those, records without a
usable key and records the walk cannot take (nesting deeper than Python's recursion allows) are
quarantined with the document's own text when the caller gives it (``sources``), so nothing of
a hostile document is lost and the rest of the batch lands. Big integers in a JSON text: orjson
gives one of 2**63 to 2**64-1 as an int (beyond BIGINT: its column holds the digits as text, as
above) and one beyond 64 bits as the nearest float (its column is DOUBLE, about 17 significant
digits; ``1e400``-sized ones do not parse at all); the raw layer keeps the digits.

Child-table row keys are built columnar too: ``_oe_row_id`` is the row's position path inside
its document (``2`` for the third element of an array on the document, ``2/0`` for the first
element of an array inside it), ``_oe_parent_row_id`` the parent's path (``""`` for the root
row). A child row is identified by (root key, ``_oe_row_id``): short keys, where repeating the
80-character process id in both key columns of every row tripled the warehouse's size.
"""

from __future__ import annotations

import contextlib
import json
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from oe_assets.core.timestamps import parse_timestamp
from oe_assets.flatten.naming import (
    PARENT_ROW_ID,
    POSITION,
    RESERVED_COLUMNS,
    ROW_ID,
    ColumnPath,
    TableFamily,
    TablePath,
    child_table_name,
    child_table_path,
    column_name,
)
from oe_assets.flatten.registry import Collision, SchemaRegistry

TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
"""Strings of this shape (in every non-null row of a column) land as TIMESTAMP (naive UTC), unless
one of them is no valid instant (``2023-02-30``, ``25:00:00``, a year beyond 9999 once in UTC):
then the column stays text. What lands is what :func:`oe_assets.core.timestamps.parse_timestamp` reads
(the parser also takes ``t``/``z``/a space, which the column typing leaves as text)."""
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
_LONG_FRACTION = r"(\.\d{6})\d+"
"""Fraction digits beyond microseconds, which Arrow's cast refuses: truncated first."""
_NO_OFFSET = r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)$"
"""A timestamp without offset, which Arrow's cast to UTC refuses: it is UTC, so ``Z`` is added."""
_MIN_US = (datetime(1, 1, 1) - datetime(1970, 1, 1)) // timedelta(microseconds=1)
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999) - datetime(1970, 1, 1)) // timedelta(microseconds=1)
_TS_UTC = pa.timestamp("us", tz="UTC")
_TS_NAIVE = pa.timestamp("us")
_NONE_TYPE = type(None)
_ROOT_ROW_PATH = pa.scalar("", pa.string())
"""``_oe_parent_row_id`` of rows whose parent is the document's root row (the empty path)."""


@dataclass(frozen=True, slots=True)
class TypeConflict:
    """A column whose values in one batch had types that share no column type.

    The column holds each value's JSON text (VARCHAR); ``types_seen`` are Python type names.
    """

    table: str
    column: str
    types_seen: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnparsableDocument:
    """A JSON text that did not parse, in place of its document: the flattener quarantines it."""

    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record that could not be flattened; ``document`` is its JSON text."""

    family: str
    record_key: str | None
    reason: str
    document: str


@dataclass(slots=True)
class FlatStats:
    documents: int = 0
    """records given to :meth:`Flattener.flatten`"""
    flattened: int = 0
    """root rows produced"""
    quarantined: int = 0
    duplicates: int = 0
    """records dropped because a later/newer record had the same root key"""
    empty_objects: int = 0
    """``{}`` values seen (they produce no columns; the raw JSON keeps them)"""
    empty_arrays: int = 0
    """``[]`` values seen (they produce no rows)"""
    rows: int = 0
    """rows over all tables"""
    tables: int = 0


@dataclass(slots=True)
class FlatBatch:
    """The tables of one flattened batch of one family, and what happened on the way."""

    family: TableFamily
    tables: dict[str, pa.Table]
    """table name -> rows; the root table first and always present, parents before children"""
    parents: dict[str, str]
    """child table -> parent table"""
    json_paths: dict[str, dict[str, ColumnPath]]
    """table -> JSON column -> path from the table's row element (``()`` = the element itself)"""
    table_paths: dict[str, TablePath]
    """table -> absolute path of its array (``None`` = each element; root: ``()``)"""
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    collisions: list[Collision] = field(default_factory=list)
    type_conflicts: list[TypeConflict] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    stats: FlatStats = field(default_factory=FlatStats)
    constants: dict[str, Any] = field(default_factory=dict)
    """the ``constant_columns`` given to flatten (in every table)"""

    @property
    def root(self) -> pa.Table:
        return self.tables[self.family.root_table]


class _Node:
    """One object path inside one table's row element (a trie over keys).

    ``cols`` holds the scalar columns of the object's keys as ``{row index: value}`` dicts (rows
    only ever grow, so a dense column's values are already in row order); ``kids`` the nodes of
    keys holding objects or arrays; ``value`` the scalar elements when the node is a table's row
    element; ``tbl`` the child table of an array at this path.
    """

    __slots__ = ("cols", "kids", "path", "tbl", "value")

    def __init__(self, path: ColumnPath) -> None:
        self.path = path
        self.kids: dict[str, _Node] = {}
        self.cols: dict[str, dict[int, Any]] = {}
        self.value: dict[int, Any] | None = None
        self.tbl: _Tab | None = None


class _Tab:
    """Rows of one table being built: parent row index and position per row, and its columns."""

    __slots__ = ("cols", "name", "parent", "path", "pidx", "pos", "root", "rootkey_arr", "rowid_arr")

    def __init__(self, name: str, path: TablePath, parent: _Tab | None) -> None:
        self.name = name
        self.path = path
        self.parent = parent
        self.root = _Node(())
        self.pidx: list[int] = []
        self.pos: list[int] = []
        self.cols: list[tuple[str, ColumnPath, dict[int, Any]]] = []
        self.rowid_arr: pa.Array | None = None
        self.rootkey_arr: pa.Array | None = None


class Flattener:
    """Flattens documents of one :class:`TableFamily` into a :class:`FlatBatch` per call.

    Keep one Flattener (and its registry) for all batches of a write, and start it from the
    warehouse's persisted registry (``warehouse.load_registry``) so names stay stable.
    """

    def __init__(self, family: TableFamily, registry: SchemaRegistry | None = None) -> None:
        self.family = family
        self.registry = registry if registry is not None else SchemaRegistry()
        root_name, _ = self.registry.register_table((), None, family.root_table)
        if root_name != family.root_table:
            raise ValueError(f"registry's root table {root_name!r} is not {family.root_table!r}")
        for name in RESERVED_COLUMNS:
            self.registry.reserve_system_column(root_name, name)
        raw, base = column_name(family.root_key_path)
        key_name, _ = self.registry.register_column(root_name, family.root_key_path, raw, base)
        if key_name != raw:
            raise ValueError(f"root key column is registered as {key_name!r}, expected {raw!r}")
        self.root_key_name = key_name

    # ------------------------------------------------------------------ keys
    def _key_of(self, doc: Any) -> tuple[str | None, str | None]:
        """``(key, None)`` or ``(key_or_None, reason)`` for a record that cannot be flattened."""
        if type(doc) is UnparsableDocument:
            return _key_hint(doc.text, self.family.root_key_path[-1]), doc.reason
        if type(doc) is not dict:
            return None, f"record is not a JSON object (got {_json_type_name(doc)})"
        path = self.family.root_key_path
        v: Any = doc
        for i, k in enumerate(path):
            if type(v) is not dict:
                return None, f"{'.'.join(path[:i])} is not an object (got {_json_type_name(v)})"
            if k not in v:
                return None, f"{'.'.join(path[: i + 1])} is missing"
            v = v[k]
        if type(v) is not str:
            return None, f"{self.family.root_key_dotted} is not a string (got {_json_type_name(v)})"
        if not v:
            return None, f"{self.family.root_key_dotted} is empty"
        return v, None

    # --------------------------------------------------------------- flatten
    def flatten(
        self,
        docs: Iterable[Any],
        *,
        constant_columns: Mapping[str, object] | None = None,
        sources: Sequence[object] | None = None,
    ) -> FlatBatch:
        """The tables of ``docs``; ``sources[i]``, when given, is what ``docs[i]`` was parsed from.

        A quarantined record keeps its source when that is a JSON text (``str``/``bytes``): the
        document exactly as it came, which re-serialising cannot give (duplicate keys, big
        integers, nesting beyond orjson's 255 levels). Otherwise its JSON is written anew.
        """
        family = self.family
        reg = self.registry
        constants = dict(constant_columns or {})
        stats = FlatStats()
        quarantined: list[QuarantinedRecord] = []
        collisions: list[Collision] = []
        conflicts: list[TypeConflict] = []
        duplicates: list[str] = []
        system_names = (*RESERVED_COLUMNS, *constants)
        for name in constants:
            if not isinstance(name, str) or not name:
                raise ValueError(f"constant column name {name!r} must be a non-empty string")

        # 1. keys: quarantine what has none, keep one record per key
        kept: dict[str, tuple[Any, int]] = {}  # key -> (document, its position in docs)
        dup_seen: set[str] = set()
        for position, doc in enumerate(docs):
            stats.documents += 1
            key, reason = self._key_of(doc)
            if reason is not None or key is None:
                text = _quarantine_text(doc, sources, position)
                quarantined.append(QuarantinedRecord(family.root_table, key, reason or "no key", text))
                continue
            prev = kept.get(key)
            if prev is None:
                kept[key] = (doc, position)
                continue
            stats.duplicates += 1
            if key not in dup_seen:
                dup_seen.add(key)
                duplicates.append(key)
            if not _is_older(doc, prev[0]):
                kept[key] = (doc, position)

        # 2. the walk
        root = _Tab(family.root_table, (), None)
        for name in system_names:
            reg.reserve_system_column(root.name, name)
        tabs: list[_Tab] = [root]
        empty_objects = 0
        empty_arrays = 0

        def new_kid(node: _Node, k: str) -> _Node:
            if type(k) is not str:
                raise TypeError(f"object key {k!r} is not a string")
            kid = _Node((*node.path, k))
            node.kids[k] = kid
            return kid

        def new_col(tab: _Tab, path: ColumnPath) -> dict[int, Any]:
            raw, base = column_name(path)
            name, coll = reg.register_column(tab.name, path, raw, base)
            if coll is not None:
                collisions.append(coll)
            col: dict[int, Any] = {}
            tab.cols.append((name, path, col))
            return col

        def new_key_col(node: _Node, k: str, tab: _Tab) -> dict[int, Any]:
            if type(k) is not str:
                raise TypeError(f"object key {k!r} is not a string")
            col = node.cols[k] = new_col(tab, (*node.path, k))
            return col

        def new_tab(node: _Node, tab: _Tab) -> _Tab:
            raw, base = child_table_name(tab.name, node.path)
            path = child_table_path(tab.path, tab.parent is None, node.path)
            name, coll = reg.register_table(path, tab.name, raw, base)
            if coll is not None:
                collisions.append(coll)
            reg.reserve_system_column(name, family.root_key_column)
            for sys_name in system_names:
                reg.reserve_system_column(name, sys_name)
            ct = _Tab(name, path, tab)
            node.tbl = ct
            tabs.append(ct)
            return ct

        def walk_obj(obj: dict[str, Any], node: _Node, tab: _Tab, r: int) -> None:
            nonlocal empty_objects, empty_arrays
            cols = node.cols
            for k, v in obj.items():
                t = type(v)
                if t is dict:
                    if v:
                        try:
                            kid = node.kids[k]
                        except KeyError:
                            kid = new_kid(node, k)
                        walk_obj(v, kid, tab, r)
                    else:
                        empty_objects += 1
                elif t is list:
                    if v:
                        try:
                            kid = node.kids[k]
                        except KeyError:
                            kid = new_kid(node, k)
                        walk_list(v, kid, tab, r)
                    else:
                        empty_arrays += 1
                else:
                    try:
                        cols[k][r] = v
                    except KeyError:
                        new_key_col(node, k, tab)[r] = v

        def walk_list(arr: list[Any], node: _Node, tab: _Tab, r: int) -> None:
            nonlocal empty_objects, empty_arrays
            ct = node.tbl
            if ct is None:
                ct = new_tab(node, tab)
            pidx = ct.pidx
            base = len(pidx)
            n = len(arr)
            pidx.extend([r] * n)
            ct.pos.extend(range(n))
            croot = ct.root
            if n > 8:
                types = set(map(type, arr))
                if dict not in types and list not in types:  # only scalars: one bulk update
                    col = croot.value
                    if col is None:
                        col = croot.value = new_col(ct, ())
                    col.update(zip(range(base, base + n), arr, strict=False))
                    return
            for i, el in enumerate(arr):
                t = type(el)
                if t is dict:
                    if el:
                        walk_obj(el, croot, ct, base + i)
                    else:
                        empty_objects += 1
                elif t is list:
                    if el:
                        walk_list(el, croot, ct, base + i)
                    else:
                        empty_arrays += 1
                else:
                    col = croot.value
                    if col is None:
                        col = croot.value = new_col(ct, ())
                    col[base + i] = el

        rnode = root.root
        r = 0
        for key, (doc, position) in kept.items():
            try:
                walk_obj(doc, rnode, root, r)
            except Exception as exc:  # a record we cannot flatten: quarantine it, keep the rest
                _truncate(tabs, r)
                if isinstance(exc, RecursionError):
                    reason = "cannot flatten: nested deeper than the flattener supports"
                else:
                    reason = f"cannot flatten: {type(exc).__name__}: {exc}"
                text = _quarantine_text(doc, sources, position)
                quarantined.append(QuarantinedRecord(family.root_table, key, reason, text))
                continue
            r += 1
        kept.clear()
        n_root = r

        # 3. columnar typing and keys
        const_scalars = {name: _constant_scalar(v) for name, v in constants.items()}
        tables: dict[str, pa.Table] = {}
        parents: dict[str, str] = {}
        json_paths: dict[str, dict[str, ColumnPath]] = {}
        table_paths: dict[str, TablePath] = {}
        key_path = family.root_key_path
        for tab in tabs:
            names: list[str] = []
            arrays: list[pa.Array] = []
            cols = tab.cols
            paths: dict[str, ColumnPath] = {}
            if tab.parent is None:
                n = n_root
                key_col = next((c for _, p, c in cols if p == key_path), {})
                key_arr = pa.array(list(key_col.values()), pa.string())
                tab.rootkey_arr = key_arr
                names.append(self.root_key_name)
                arrays.append(key_arr)
                paths[self.root_key_name] = key_path
                cols = [c for c in cols if c[1] != key_path]
            else:
                n = len(tab.pidx)
                if n == 0:
                    continue
                parent = tab.parent
                assert parent.rootkey_arr is not None
                pidx_arr = pa.array(tab.pidx, pa.int64())
                pos_arr = pa.array(tab.pos, pa.int64())
                tab.rootkey_arr = parent.rootkey_arr.take(pidx_arr)
                positions = pc.cast(pos_arr, pa.string())
                if parent.parent is None:  # the parent is the document itself: its path is ""
                    parent_ids = pa.repeat(_ROOT_ROW_PATH, n)
                    tab.rowid_arr = positions
                else:
                    assert parent.rowid_arr is not None
                    parent_ids = parent.rowid_arr.take(pidx_arr)
                    tab.rowid_arr = pc.binary_join_element_wise(parent_ids, positions, "/")
                names += [family.root_key_column, ROW_ID, PARENT_ROW_ID, POSITION]
                arrays += [tab.rootkey_arr, tab.rowid_arr, parent_ids, pos_arr]
                parents[tab.name] = parent.name
            for name, path, col in cols:
                if not col:
                    continue  # only touched by a record that was quarantined
                values = list(col.values()) if len(col) == n else list(map(col.get, range(n)))
                arr, seen = _to_arrow(values)
                if seen is not None:
                    conflicts.append(TypeConflict(tab.name, name, seen))
                names.append(name)
                arrays.append(arr)
                paths[name] = path
            for name, scalar in const_scalars.items():
                names.append(name)
                arrays.append(pa.repeat(scalar, n))
            tables[tab.name] = pa.Table.from_arrays(arrays, names=names)
            json_paths[tab.name] = paths
            table_paths[tab.name] = tab.path
            stats.rows += n
        for tab in tabs:  # drop the per-batch buffers
            tab.pidx = tab.pos = []
            tab.rowid_arr = tab.rootkey_arr = None

        stats.flattened = n_root
        stats.quarantined = len(quarantined)
        stats.empty_objects = empty_objects
        stats.empty_arrays = empty_arrays
        stats.tables = len(tables)
        return FlatBatch(
            family=family,
            tables=tables,
            parents=parents,
            json_paths=json_paths,
            table_paths=table_paths,
            quarantined=quarantined,
            collisions=collisions,
            type_conflicts=conflicts,
            duplicates=duplicates,
            stats=stats,
            constants=constants,
        )


# ---------------------------------------------------------------------- helpers
def _truncate(tabs: list[_Tab], n_root: int) -> None:
    """Drops every row added after the root table had ``n_root`` rows.

    Rows are added depth-first in document order, so a child table's parent indexes never
    decrease and the rows of the failed document are the tail of every table (and the last
    entries of every column dict).
    """
    lengths: dict[int, int] = {}
    for tab in tabs:
        if tab.parent is None:
            n = n_root
        else:
            n = bisect_left(tab.pidx, lengths[id(tab.parent)])
            del tab.pidx[n:]
            del tab.pos[n:]
        lengths[id(tab)] = n
        for _name, _path, col in tab.cols:
            while col and next(reversed(col)) >= n:
                col.popitem()


_SIMPLE_TYPES = {pa.string(): str, pa.int64(): int, pa.bool_(): bool}


def _to_arrow(values: list[Any]) -> tuple[pa.Array, tuple[str, ...] | None]:
    """One column: ``(array, None)``, or ``(JSON-text array, types seen)`` on a type conflict.

    pyarrow's own inference is tried first (one C++ pass); it is exact for strings, ints and
    bools (a mix raises), but turns ``True`` beside a float into ``1.0``, so a DOUBLE result is
    checked for bools.
    """
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return _to_arrow_slow(values)
    t = arr.type
    if t == pa.string():
        return _string_array(values, arr), None
    if t in _SIMPLE_TYPES:
        return arr, None
    if t == pa.float64():
        types = set(map(type, values))
        if bool not in types and types <= {int, float, _NONE_TYPE}:
            return arr, None
        return _to_arrow_slow(values)
    if t == pa.null():
        return pa.nulls(len(values), pa.string()), None
    return _to_arrow_slow(values)  # other inferred types (Python objects that are not JSON)


def _to_arrow_slow(values: list[Any]) -> tuple[pa.Array, tuple[str, ...] | None]:
    types = set(map(type, values))
    types.discard(_NONE_TYPE)
    if len(types) == 1:
        t = next(iter(types))
        if t is str:
            return _string_array(values, pa.array(values, pa.string())), None
        if t is bool:
            return pa.array(values, pa.bool_()), None
        if t is int:
            try:
                return pa.array(values, pa.int64()), None
            except (OverflowError, pa.ArrowInvalid):  # outside int64: keep the digits as text
                return pa.array([None if v is None else str(v) for v in values], pa.string()), None
        if t is float:
            return pa.array(values, pa.float64()), None
        # not a JSON scalar type (a caller passed Python objects): keep its JSON text
        return pa.array([None if v is None else _json_text(v) for v in values], pa.string()), None
    if not types:
        return pa.nulls(len(values), pa.string()), None
    if types == {int, float}:
        with contextlib.suppress(OverflowError, pa.ArrowInvalid):
            return pa.array(values, pa.float64()), None
    texts = [v if v is None or type(v) is str else _json_text(v) for v in values]
    return pa.array(texts, pa.string()), tuple(sorted(t.__name__ for t in types))


def _string_array(values: list[Any], arr: pa.Array) -> pa.Array:
    """``arr`` (the strings of ``values``), or TIMESTAMP when every value is an ISO timestamp."""
    first = next((v for v in values if v is not None), "")
    if (
        len(first) >= 19
        and first[10] == "T"
        and _TIMESTAMP_RE.match(first)  # cheap test of one value before the columnar one
        and pc.all(pc.match_substring_regex(arr, TIMESTAMP_PATTERN)).as_py()
    ):
        return _timestamp_array(arr)
    return arr


def _timestamp_array(texts: pa.Array) -> pa.Array:
    """``texts`` (all matching :data:`TIMESTAMP_PATTERN`) as naive UTC instants, or ``texts``
    itself when one is no valid instant.

    Arrow's cast reads every offset form, but neither more than 6 fraction digits nor a value
    without offset (in a cast to UTC): the usual column (OE's ``...322Z``) casts at once, others
    are normalised first (columnar: 2-4 ms more per 5,000 values, measured; the usual 0.4 ms).
    """
    try:
        utc = pc.cast(texts, _TS_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        normalised = pc.replace_substring_regex(texts, _LONG_FRACTION, r"\1")
        normalised = pc.replace_substring_regex(normalised, _NO_OFFSET, r"\1Z")
        try:
            utc = pc.cast(normalised, _TS_UTC)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. 2023-02-30: stays text
            return texts
    bounds = pc.min_max(utc.cast(pa.int64()))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is not None and (low < _MIN_US or high > _MAX_US):  # not a datetime Python can read
        return texts
    return utc.cast(_TS_NAIVE)


def _json_text(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if type(v) is int:
        return str(v)
    if type(v) is float:
        return json.dumps(v)
    try:
        return orjson.dumps(v, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(v, default=str)


def _quarantine_text(doc: Any, sources: Sequence[object] | None, position: int) -> str:
    """The text a quarantine row keeps: the document's source text, else its JSON written anew."""
    if type(doc) is UnparsableDocument:
        return _storable_text(doc.text)
    source = sources[position] if sources is not None else None
    if isinstance(source, str):
        return _storable_text(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source).decode("utf-8", "replace")
    return _document_text(doc)


def _storable_text(text: str) -> str:
    """``text``, with lone surrogates (which UTF-8, DuckDB and Arrow refuse) as ``\\udXXX`` escapes."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def _key_hint(text: str, key: str) -> str | None:
    """The first ``"<key>": "<plain string>"`` of an unparsable text: its record key, best effort."""
    found = re.search(rf'"{re.escape(key)}"\s*:\s*"([^"\\]{{1,200}})"', text)
    return found.group(1) if found else None


def _document_text(doc: Any) -> str:
    """The record's JSON text for the quarantine (best effort for what JSON cannot say)."""
    with contextlib.suppress(Exception):  # integers beyond 64 bits, nesting beyond 255 levels
        return orjson.dumps(doc, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    with contextlib.suppress(Exception):
        return json.dumps(doc, default=repr, ensure_ascii=False)
    try:
        return repr(doc)
    except Exception as exc:  # deeper than the interpreter can recurse
        return f"<{type(doc).__name__} not serialisable: {type(exc).__name__}>"


def _json_type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _updated_at(doc: Any) -> datetime | None:
    meta = doc.get("metadata") if type(doc) is dict else None
    return parse_timestamp(meta.get("updatedAt")) if type(meta) is dict else None


def _is_older(doc: Any, prev: Any) -> bool:
    """True when ``doc`` (seen later) loses against ``prev``: it has a smaller updatedAt."""
    new, old = _updated_at(doc), _updated_at(prev)
    return new is not None and old is not None and new < old


def _constant_scalar(value: object) -> pa.Scalar:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return pa.scalar(value, _TS_NAIVE)
    if isinstance(value, date):
        return pa.scalar(value, pa.date32())
    if isinstance(value, pa.Scalar):
        return value
    return pa.scalar(value)
