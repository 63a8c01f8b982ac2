"""OCEL 2.0 XML, streamed: types first, then each object and each event with its relationships.

Text is escaped for XML here; characters XML 1.0 cannot carry at all were already escaped as
text by :mod:`~oe_assets.exports.sanitize`, so the file is always well-formed.
"""

from __future__ import annotations

from typing import IO
from xml.sax.saxutils import escape, quoteattr

from oe_assets.exports.ocel_model import EVENT_ATTRIBUTES, OcelData
from oe_assets.exports.rows import iso_utc, with_related


def _types_xml(tag: str, types: dict[str, dict[str, str]]) -> str:
    parts = [f"<{tag}s>"]
    for name, attrs in sorted(types.items()):
        parts.append(f"<{tag} name={quoteattr(name)}><attributes>")
        parts.extend(f"<attribute name={quoteattr(a)} type={quoteattr(t)}/>" for a, t in attrs.items())
        parts.append(f"</attributes></{tag}>")
    parts.append(f"</{tag}s>\n")
    return "".join(parts)


def _relationships(pairs: list[tuple[str, str]]) -> str:
    inner = "".join(f"<relationship object-id={quoteattr(o)} qualifier={quoteattr(q)}/>" for o, q in pairs)
    return f"<objects>{inner}</objects>"


def write_ocel_xml(data: OcelData, out: IO[bytes]) -> None:
    """The whole log as OCEL 2.0 XML (UTF-8)."""
    object_types = {t: data.attribute_types.get(t, {}) for t in data.objects_per_type()}
    out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<log>\n')
    out.write(_types_xml("object-type", object_types).encode())
    out.write(_types_xml("event-type", {t: dict(EVENT_ATTRIBUTES) for t in data.event_types()}).encode())
    out.write(b"<objects>\n")
    o2o = data.o2o_by_source()
    for obj, attrs in with_related(data.objects, "ocel_id", data.attributes, "ocel_id"):
        values = "".join(
            f"<attribute name={quoteattr(a['name'])} time={quoteattr(iso_utc(a['time']))}>{escape(a['value'])}</attribute>"
            for a in attrs
        )
        head = f"<object id={quoteattr(obj['ocel_id'])} type={quoteattr(obj['ocel_type'])}>"
        relations = _relationships(o2o.get(obj["ocel_id"], []))
        out.write(f"{head}<attributes>{values}</attributes>{relations}</object>\n".encode())
    out.write(b"</objects>\n<events>\n")
    for event, related in with_related(data.events, "ocel_id", data.e2o, "event_id"):
        values = "".join(
            f"<attribute name={quoteattr(n)}>{escape(str(event[n]))}</attribute>"
            for n in EVENT_ATTRIBUTES
            if event[n] is not None
        )
        head = (
            f"<event id={quoteattr(event['ocel_id'])} type={quoteattr(event['ocel_type'])} "
            f"time={quoteattr(iso_utc(event['ocel_time']))}>"
        )
        relations = _relationships([(r["object_id"], r["qualifier"]) for r in related])
        out.write(f"{head}<attributes>{values}</attributes>{relations}</event>\n".encode())
    out.write(b"</events>\n</log>\n")
