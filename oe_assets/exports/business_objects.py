"""Business objects found in the process contexts' payloads (orders, quotes, shipments, …).

The payloads have no schema, so the objects are found by one rule over what the flattener has
recorded (`_oe_columns`, `_oe_tables`), not by a hand-kept list that new payloads would outgrow.

The rule. A column of the `execution_context` family is an object id when its JSON path, from the
document's root, is `context.<key>.….<name>` and `<name>` is `id` or ends in `Id` (`quoteId`,
`orderId`, `shipmentId`, `metadata.formId`); ids under `context.metadata` and keys starting with
`_` are the run's own bookkeeping, not business objects. The object type is the name without `Id`
(`quoteId` → `quote`); for a plain `id` it is the object holding it (`order.created.order.id` →
`order`; an array's element, `contacts[].id` → `contact`). `<key>`, the event-type key whose payload
named the object, is the step that touched it. The object's attributes are the scalar values beside
its id and below that object, except those below another object with an id of its own
(`order.total.amount` is the order's `total.amount`; `order.customer.email` is the customer's); an
`xId` beside a plain `id` is a reference (`contact.companyId`): its object has no attributes there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import orjson

CONTEXT_FAMILY = "execution_context"
ROOT_KEY_COLUMN = "context$processid"

_NUMERIC = {
    "DOUBLE": "float",
    "FLOAT": "float",
    "DECIMAL": "float",
    "BIGINT": "integer",
    "INTEGER": "integer",
}


@dataclass(frozen=True)
class Attribute:
    """One attribute: its name in the export, the warehouse column, and its OCEL type."""

    name: str
    column: str
    ocel_type: str  # string | float | integer | boolean | time


@dataclass(frozen=True)
class ObjectSource:
    """Where objects of one type are named: a table, its id column, the step key, attributes."""

    object_type: str
    table: str
    id_column: str
    step_key: str
    attributes: tuple[Attribute, ...]


@dataclass(frozen=True)
class _Column:
    table: str
    column: str
    path: tuple[str | None, ...]  # from the document's root; None marks "an element of the array"
    data_type: str


def ocel_type(data_type: str) -> str:
    """The OCEL 2.0 attribute type for a DuckDB column type (anything else is text)."""
    upper = data_type.upper()
    if upper.startswith("DECIMAL"):
        return "float"
    if upper.startswith("TIMESTAMP") or upper == "DATE":
        return "time"
    if upper == "BOOLEAN":
        return "boolean"
    return _NUMERIC.get(upper, "string")


def _context_columns(conn: duckdb.DuckDBPyConnection) -> list[_Column]:
    """Every payload column of the contexts' tables with its whole JSON path."""
    rows = conn.execute(
        """SELECT c.table_name, c.column_name, c.json_path, c.data_type, t.json_path
           FROM _oe_columns c JOIN _oe_tables t USING (table_name)
           WHERE t.family = ? AND c.json_path IS NOT NULL ORDER BY c.table_name, c.column_name""",
        [CONTEXT_FAMILY],
    ).fetchall()
    found = []
    for table, column, column_path, data_type, table_path in rows:
        prefix = _path(table_path)
        path = (*prefix, None, *_path(column_path)) if prefix else _path(column_path)
        found.append(_Column(str(table), str(column), path, str(data_type)))
    return found


def _path(raw: object) -> tuple[str | None, ...]:
    value = orjson.loads(raw) if isinstance(raw, str) else raw
    return tuple(None if p is None else str(p) for p in value) if isinstance(value, list) else ()


def _is_id(path: tuple[str | None, ...]) -> bool:
    keys = [p for p in path if p is not None]
    if len(keys) < 3 or keys[0] != "context" or keys[1] == "metadata":
        return False
    if any(k.startswith("_") for k in keys):
        return False
    name = keys[-1]
    return name == "id" or (name.endswith("Id") and len(name) > 2)


def type_name(path: Sequence[str | None]) -> str:
    """`quoteId` → `quote`; `…order.id` → `order`; `…contacts[].id` → `contact`."""
    name = str(path[-1])
    if name != "id":
        base = name[:-2]
        return base[:1].lower() + base[1:]
    holder_is_array = len(path) >= 2 and path[-2] is None
    holder = next(p for p in reversed(path[:-1]) if p is not None)
    if holder_is_array and holder.endswith("s") and len(holder) > 1:
        holder = holder[:-1]
    if holder == path[1]:  # the id sits right under the event-type key: `order.found.id` → `order`
        holder = holder.replace("-", ".").split(".")[0]
    return holder[:1].lower() + holder[1:]


def find_object_sources(conn: duckdb.DuckDBPyConnection) -> list[ObjectSource]:
    """The object sources the rule (module docstring) finds in this warehouse."""
    columns = _context_columns(conn)
    ids = [c for c in columns if _is_id(c.path)]
    holders = {(c.table, c.path[:-1]) for c in ids}
    plain = {(c.table, c.path[:-1]) for c in ids if c.path[-1] == "id"}
    sources = []
    for id_col in ids:
        holder = id_col.path[:-1]
        attributes = []
        # `contact.companyId` beside `contact.id` is the contact's reference: the values are the contact's
        referenced = id_col.path[-1] != "id" and (id_col.table, holder) in plain
        for c in columns if not referenced else []:
            if c.table != id_col.table or c is id_col or c.path[: len(holder)] != holder:
                continue
            if any((c.table, c.path[:n]) in holders for n in range(len(holder) + 1, len(c.path))):
                continue  # below another object with an id: that object's attribute
            if _is_id(c.path):
                continue
            name = ".".join(p for p in c.path[len(holder) :] if p is not None)
            attributes.append(Attribute(name, c.column, ocel_type(c.data_type)))
        step = str(id_col.path[1])
        sources.append(
            ObjectSource(type_name(id_col.path), id_col.table, id_col.column, step, tuple(attributes))
        )
    return sources
