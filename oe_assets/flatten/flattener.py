"""JSON documents -> Celonis-shaped tables (pyarrow), with nothing lost silently.

:meth:`Flattener.flatten` keeps one record per key, walks the records into rows
(:mod:`oe_assets.flatten.walk`: every scalar into a per-table, per-path column), then makes each
column a pyarrow array in one call, typed columnar:

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
    column_name,
)
from oe_assets.flatten.registry import Collision, SchemaRegistry
from oe_assets.flatten.walk import Column, TableRows, Walk

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
    """records kept out of the tables: no usable key, not parsable, or too deep to walk"""
    duplicates: int = 0
    """records dropped because a later/newer record had the same root key"""
    empty_objects: int = 0
    """``{}`` values seen (they produce no columns; the raw JSON keeps them)"""
    empty_arrays: int = 0
    """``[]`` values seen (they produce no rows)"""
    rows: int = 0
    """rows over all tables"""
    tables: int = 0
    """tables with rows (the root table always counts)"""


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
        Three steps: one record per key, the walk into rows, the rows typed into Arrow tables.
        """
        constants = _checked_constants(constant_columns)
        batch = FlatBatch(self.family, {}, {}, {}, {}, constants=constants)
        kept = self._one_per_key(docs, sources, batch)
        walk = Walk(self.registry, self.family, (*RESERVED_COLUMNS, *constants))
        for key, (doc, position) in kept.items():
            reason = walk.add_document(doc)
            if reason is not None:
                batch.quarantined.append(self._quarantined(key, reason, doc, sources, position))
        kept.clear()  # the documents are no longer needed while the arrays are built
        self._build_tables(batch, walk)
        batch.collisions = walk.collisions
        stats = batch.stats
        stats.flattened = walk.root_rows
        stats.quarantined = len(batch.quarantined)
        stats.empty_objects = walk.empty_objects
        stats.empty_arrays = walk.empty_arrays
        stats.tables = len(batch.tables)
        return batch

    # ------------------------------------------------------------------ keys
    def _one_per_key(
        self, docs: Iterable[Any], sources: Sequence[object] | None, batch: FlatBatch
    ) -> dict[str, tuple[Any, int]]:
        """Key -> (document, its position in ``docs``), the newest record of each key.

        A record without a usable key is quarantined; of records with the same key the last one
        is kept, unless its ``metadata.updatedAt`` is older than the one kept so far.
        """
        kept: dict[str, tuple[Any, int]] = {}
        duplicate_keys: set[str] = set()
        stats = batch.stats
        for position, doc in enumerate(docs):
            stats.documents += 1
            key, reason = self._key_of(doc)
            if reason is not None or key is None:
                batch.quarantined.append(self._quarantined(key, reason or "no key", doc, sources, position))
                continue
            previous = kept.get(key)
            if previous is None:
                kept[key] = (doc, position)
                continue
            stats.duplicates += 1
            if key not in duplicate_keys:
                duplicate_keys.add(key)
                batch.duplicates.append(key)
            if not _is_older(doc, previous[0]):
                kept[key] = (doc, position)
        return kept

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

    def _quarantined(
        self, key: str | None, reason: str, doc: Any, sources: Sequence[object] | None, position: int
    ) -> QuarantinedRecord:
        return QuarantinedRecord(
            self.family.root_table, key, reason, _quarantine_text(doc, sources, position)
        )

    # ---------------------------------------------------------------- arrow
    def _build_tables(self, batch: FlatBatch, walk: Walk) -> None:
        """Each table of the walk as an Arrow table: its key columns, its JSON columns typed
        columnar (:func:`_to_arrow`), then the constant columns; a table without rows is left out."""
        constants = {name: _constant_scalar(v) for name, v in batch.constants.items()}
        keys: dict[str, _RowKeys] = {}
        key_path = self.family.root_key_path
        for rows in walk.tables:
            if rows.parent is None:
                n = walk.root_rows
                names, arrays = self._root_key_columns(rows, keys)
                paths: dict[str, ColumnPath] = {self.root_key_name: key_path}
            elif rows.parent_rows:
                n = len(rows.parent_rows)
                names, arrays = self._child_key_columns(rows, keys)
                paths = {}
                batch.parents[rows.name] = rows.parent.name
            else:
                continue  # only met by a record that was quarantined
            for name, path, values in rows.columns:
                if not values or (rows.parent is None and path == key_path):
                    continue  # the key is in already; no values: only a quarantined record's
                array, types_seen = _to_arrow(_row_values(values, n))
                if types_seen is not None:
                    batch.type_conflicts.append(TypeConflict(rows.name, name, types_seen))
                names.append(name)
                arrays.append(array)
                paths[name] = path
            for name, scalar in constants.items():
                names.append(name)
                arrays.append(pa.repeat(scalar, n))
            batch.tables[rows.name] = pa.Table.from_arrays(arrays, names=names)
            batch.json_paths[rows.name] = paths
            batch.table_paths[rows.name] = rows.path
            batch.stats.rows += n

    def _root_key_columns(
        self, rows: TableRows, keys: dict[str, _RowKeys]
    ) -> tuple[list[str], list[pa.Array]]:
        """The root table's key column, first."""
        key_path = self.family.root_key_path
        values = next((column for _, path, column in rows.columns if path == key_path), {})
        root_keys = pa.array(list(values.values()), pa.string())
        keys[rows.name] = (root_keys, None)
        return [self.root_key_name], [root_keys]

    def _child_key_columns(
        self, rows: TableRows, keys: dict[str, _RowKeys]
    ) -> tuple[list[str], list[pa.Array]]:
        """A child table's root key, row id (its position path), parent row id and position."""
        assert rows.parent is not None
        parent_root_keys, parent_row_ids = keys[rows.parent.name]
        parent_rows = pa.array(rows.parent_rows, pa.int64())
        positions = pa.array(rows.positions, pa.int64())
        root_keys = parent_root_keys.take(parent_rows)
        position_texts = pc.cast(positions, pa.string())
        if parent_row_ids is None:  # the parent is the document itself: its path is ""
            parent_ids = pa.repeat(_ROOT_ROW_PATH, len(rows.parent_rows))
            row_ids = position_texts
        else:
            parent_ids = parent_row_ids.take(parent_rows)
            row_ids = pc.binary_join_element_wise(parent_ids, position_texts, "/")
        keys[rows.name] = (root_keys, row_ids)
        return (
            [self.family.root_key_column, ROW_ID, PARENT_ROW_ID, POSITION],
            [root_keys, row_ids, parent_ids, positions],
        )


_RowKeys = tuple[pa.Array, pa.Array | None]
"""A built table's root key and row id (None: the root table's, the empty path) of every row."""


# ---------------------------------------------------------------------- helpers
def _row_values(column: Column, rows: int) -> list[Any]:
    """The column's values of rows ``0 .. rows-1``, None where a row has none."""
    return list(column.values()) if len(column) == rows else list(map(column.get, range(rows)))


def _checked_constants(constant_columns: Mapping[str, object] | None) -> dict[str, Any]:
    constants = dict(constant_columns or {})
    for name in constants:
        if not isinstance(name, str) or not name:
            raise ValueError(f"constant column name {name!r} must be a non-empty string")
    return constants


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
    are normalised first, columnar (its cost: ``docs/bench/findings.md``, "Loader rules").
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
