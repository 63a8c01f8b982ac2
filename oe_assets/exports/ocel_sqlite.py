"""OCEL 2.0 SQLite: the standard's relational schema, written with the standard library.

Tables: `event`/`object` (id, type), `event_map_type`/`object_map_type` (type → the suffix of its
table), one `event_<suffix>` per activity (id, time, attributes) and one `object_<suffix>` per
object type: a first row per object with its values that have no change time (`ocel_time` the
epoch, `ocel_changed_field` NULL), then one row per timed value (a context's statuses) naming the
changed field. `event_object` and `object_object` hold the relations with their qualifiers.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from oe_assets.exports.ocel_model import EVENT_ATTRIBUTES, OcelData
from oe_assets.exports.rows import iter_rows, typed_value, with_related

_SQL_TYPES = {"float": "REAL", "integer": "INTEGER", "boolean": "INTEGER"}
EPOCH_SQL = "1970-01-01 00:00:00"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_suffixes(names: Iterable[str]) -> dict[str, str]:
    """A distinct, letters-and-digits suffix per type name (`process context` → `ProcessContext`)."""
    found: dict[str, str] = {}
    for name in sorted(set(names)):
        base = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^0-9A-Za-z]+", name) if p) or "Type"
        suffix, n = base, 1
        while suffix in found.values():
            n += 1
            suffix = f"{base}{n}"
        found[name] = suffix
    return found


def write_ocel_sqlite(data: OcelData, path: Path) -> None:
    """The whole log as one OCEL 2.0 SQLite file at ``path`` (which must not exist)."""
    conn = sqlite3.connect(path)
    try:
        _write_events(conn, data)
        _write_objects(conn, data)
        conn.execute(
            "CREATE TABLE event_object (ocel_event_id TEXT, ocel_object_id TEXT, ocel_qualifier TEXT)"
        )
        conn.executemany(
            "INSERT INTO event_object VALUES (?, ?, ?)",
            _tuples(data.e2o, ("event_id", "object_id", "qualifier")),
        )
        conn.execute(
            "CREATE TABLE object_object (ocel_source_id TEXT, ocel_target_id TEXT, ocel_qualifier TEXT)"
        )
        conn.executemany(
            "INSERT INTO object_object VALUES (?, ?, ?)",
            _tuples(data.o2o, ("source_id", "target_id", "qualifier")),
        )
        conn.commit()
    finally:
        conn.close()


def _tuples(table: Any, columns: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    for row in iter_rows(table.select(list(columns))):
        yield tuple(row[c] for c in columns)


def _write_events(conn: sqlite3.Connection, data: OcelData) -> None:
    suffixes = table_suffixes(data.event_types())
    conn.execute("CREATE TABLE event (ocel_id TEXT PRIMARY KEY, ocel_type TEXT)")
    conn.execute("CREATE TABLE event_map_type (ocel_type TEXT PRIMARY KEY, ocel_type_map TEXT)")
    conn.executemany("INSERT INTO event_map_type VALUES (?, ?)", suffixes.items())
    attrs = ", ".join(f"{_q(a)} TEXT" for a in EVENT_ATTRIBUTES)
    for suffix in suffixes.values():
        conn.execute(
            f"CREATE TABLE {_q('event_' + suffix)} (ocel_id TEXT PRIMARY KEY, ocel_time TIMESTAMP, {attrs})"
        )
    conn.executemany("INSERT INTO event VALUES (?, ?)", _tuples(data.events, ("ocel_id", "ocel_type")))
    marks = ", ".join("?" for _ in range(2 + len(EVENT_ATTRIBUTES)))
    for suffix_type, suffix in suffixes.items():
        rows = data.events.filter(pc.equal(data.events.column("ocel_type"), suffix_type))
        conn.executemany(
            f"INSERT INTO {_q('event_' + suffix)} VALUES ({marks})",
            (
                (
                    r["ocel_id"],
                    r["ocel_time"].strftime("%Y-%m-%d %H:%M:%S.%f"),
                    *(r[a] for a in EVENT_ATTRIBUTES),
                )
                for r in iter_rows(rows)
            ),
        )


def _write_objects(conn: sqlite3.Connection, data: OcelData) -> None:
    suffixes = table_suffixes(data.objects_per_type())
    conn.execute("CREATE TABLE object (ocel_id TEXT PRIMARY KEY, ocel_type TEXT)")
    conn.execute("CREATE TABLE object_map_type (ocel_type TEXT PRIMARY KEY, ocel_type_map TEXT)")
    conn.executemany("INSERT INTO object_map_type VALUES (?, ?)", suffixes.items())
    conn.executemany("INSERT INTO object VALUES (?, ?)", _tuples(data.objects, ("ocel_id", "ocel_type")))
    for object_type, suffix in suffixes.items():
        kinds = data.attribute_types.get(object_type, {})
        columns = "".join(f", {_q(a)} {_SQL_TYPES.get(t, 'TEXT')}" for a, t in kinds.items())
        table = _q("object_" + suffix)
        conn.execute(
            f"CREATE TABLE {table} (ocel_id TEXT, ocel_time TIMESTAMP, ocel_changed_field TEXT{columns})"
        )
        names = list(kinds)
        marks = ", ".join("?" for _ in range(3 + len(names)))
        conn.executemany(
            f"INSERT INTO {table} VALUES ({marks})", _object_rows(data, object_type, names, kinds)
        )


def _object_rows(
    data: OcelData, object_type: str, names: list[str], kinds: dict[str, str]
) -> Iterator[tuple[Any, ...]]:
    """Per object: its first row (values with no change time), then a row per timed value."""
    objects = data.objects.filter(pc.equal(data.objects.column("ocel_type"), object_type))
    attributes = data.attributes.filter(pc.equal(data.attributes.column("ocel_type"), object_type))
    for obj, attrs in with_related(objects, "ocel_id", attributes, "ocel_id"):
        static = {
            a["name"]: typed_value(a["value"], kinds.get(a["name"], "")) for a in attrs if a["time"] is None
        }
        yield (obj["ocel_id"], EPOCH_SQL, None, *(static.get(n) for n in names))
        for a in attrs:
            if a["time"] is not None:
                values = [
                    typed_value(a["value"], kinds.get(n, "")) if n == a["name"] else None for n in names
                ]
                yield (obj["ocel_id"], a["time"].strftime("%Y-%m-%d %H:%M:%S.%f"), a["name"], *values)
