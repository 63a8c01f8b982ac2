"""The exports' pure pieces: object type names, text escaping, SQLite table suffixes, the format."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from oe_assets.exports.business_objects import ocel_type, type_name
from oe_assets.exports.ocel import ocel_format
from oe_assets.exports.ocel_sqlite import table_suffixes
from oe_assets.exports.sanitize import escape_text, sanitize_tables


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("context", "quote.requested", "quoteId"), "quote"),
        (("context", "order.created", "order", "id"), "order"),
        (("context", "order.spotbuy.received", "contacts", None, "id"), "contact"),
        (("context", "x", "forms", None, "metadata", "formId"), "form"),
        (("context", "order.found", "id"), "order"),
    ],
)
def test_type_names(path: tuple[str | None, ...], expected: str) -> None:
    assert type_name(path) == expected


def test_ocel_types() -> None:
    assert [ocel_type(t) for t in ("DOUBLE", "BIGINT", "VARCHAR", "TIMESTAMP", "DECIMAL(10,2)")] == [
        "float",
        "integer",
        "string",
        "time",
        "float",
    ]


def test_control_characters_are_escaped_and_counted() -> None:
    assert escape_text("a\x01b\tc\n") == "a\\u0001b\tc\n"
    table = pa.table({"v": ["ok", "bad\x1b", None, "also\x0b"], "n": [1, 2, 3, 4]})
    out, changed = sanitize_tables({"t": table})
    assert changed == 2
    assert out["t"].column("v").to_pylist() == ["ok", "bad\\u001b", None, "also\\u000b"]


def test_sqlite_suffixes_are_distinct_letters_and_digits() -> None:
    found = table_suffixes(["process context", "process-context", "Status: finished"])
    assert len(set(found.values())) == 3
    assert all(s.isalnum() for s in found.values())


def test_format_from_extension() -> None:
    assert [ocel_format(Path(p)) for p in ("a.jsonocel", "a.JSON", "a.sqlite", "a.xml")] == [
        "json",
        "json",
        "sqlite",
        "xml",
    ]
    with pytest.raises(ValueError, match="extension"):
        ocel_format(Path("a.csv"))
