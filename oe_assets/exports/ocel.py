"""OCEL 2.0 export of the warehouse: JSON, SQLite or XML, chosen by the file's extension.

Written by our own code (no pm4py at runtime: it is AGPL; the tests read our files back with it).
The content comes from :mod:`~oe_assets.exports.ocel_model`; each writer streams it to a temporary
file beside the target and renames it over, so a reader never sees half an export.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import orjson

from oe_assets.exports.ocel_model import EVENT_ATTRIBUTES, OcelData, build_ocel
from oe_assets.exports.ocel_sqlite import write_ocel_sqlite
from oe_assets.exports.ocel_xml import write_ocel_xml
from oe_assets.exports.rows import iso_utc, typed_value, with_related

FORMATS = {".jsonocel": "json", ".json": "json", ".sqlite": "sqlite", ".xmlocel": "xml", ".xml": "xml"}


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: for the CLI's line and the asset's metadata."""

    path: Path
    events: int
    objects_per_type: dict[str, int]
    bytes: int
    dropped: dict[str, int]


def ocel_format(path: Path) -> str:
    """`json`, `sqlite` or `xml` from the extension; anything else is one sentence."""
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"{path.name}: the extension says which OCEL 2.0 format to write; use one of {', '.join(FORMATS)}"
        )
    return found


def export_ocel(conn: duckdb.DuckDBPyConnection, path: Path) -> ExportReport:
    """Write the warehouse's OCEL 2.0 to ``path`` (format from its extension)."""
    kind = ocel_format(path)
    data = build_ocel(conn)
    return write_ocel(data, path, kind)


def write_ocel(data: OcelData, path: Path, kind: str) -> ExportReport:
    """Write already built content (the asset writes several formats from one build)."""
    with replacing(path) as tmp:
        if kind == "sqlite":
            write_ocel_sqlite(data, tmp)
        else:
            with tmp.open("wb") as out:
                (write_ocel_json if kind == "json" else write_ocel_xml)(data, out)
    return ExportReport(
        path, data.events.num_rows, data.objects_per_type(), path.stat().st_size, dict(data.dropped)
    )


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block succeeds, removed if not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _types_json(types: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {"name": name, "attributes": [{"name": a, "type": t} for a, t in attrs.items()]}
        for name, attrs in sorted(types.items())
    ]


def write_ocel_json(data: OcelData, out: IO[bytes]) -> None:
    """OCEL 2.0 JSON: object and event types, then objects and events, one at a time."""
    event_types = {t: dict(EVENT_ATTRIBUTES) for t in data.event_types()}
    object_types = {t: data.attribute_types.get(t, {}) for t in data.objects_per_type()}
    out.write(b'{"objectTypes":' + orjson.dumps(_types_json(object_types)))
    out.write(b',"eventTypes":' + orjson.dumps(_types_json(event_types)) + b',"objects":[')
    _write_list(out, _json_objects(data))
    out.write(b'],"events":[')
    _write_list(out, _json_events(data))
    out.write(b"]}\n")


def _write_list(out: IO[bytes], items: Iterator[dict[str, Any]]) -> None:
    for i, item in enumerate(items):
        out.write((b",\n" if i else b"\n") + orjson.dumps(item))


def _json_objects(data: OcelData) -> Iterator[dict[str, Any]]:
    relations = {
        source: [{"objectId": target, "qualifier": q} for target, q in pairs]
        for source, pairs in data.o2o_by_source().items()
    }
    for obj, attrs in with_related(data.objects, "ocel_id", data.attributes, "ocel_id"):
        kinds = data.attribute_types.get(obj["ocel_type"], {})
        yield {
            "id": obj["ocel_id"],
            "type": obj["ocel_type"],
            "attributes": [
                {
                    "name": a["name"],
                    "time": iso_utc(a["time"]),
                    "value": typed_value(a["value"], kinds.get(a["name"], "")),
                }
                for a in attrs
            ],
            "relationships": relations.get(obj["ocel_id"], []),
        }


def _json_events(data: OcelData) -> Iterator[dict[str, Any]]:
    for event, related in with_related(data.events, "ocel_id", data.e2o, "event_id"):
        yield {
            "id": event["ocel_id"],
            "type": event["ocel_type"],
            "time": iso_utc(event["ocel_time"]),
            "attributes": [{"name": n, "value": event[n]} for n in EVENT_ATTRIBUTES if event[n] is not None],
            "relationships": [{"objectId": r["object_id"], "qualifier": r["qualifier"]} for r in related],
        }
