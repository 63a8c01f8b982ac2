"""The data-model file: one declaration read by every layer; readable, unique and stable asset keys."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from oe_assets.flatten import CONTEXTS, FAMILIES, TEMPLATES, Flattener
from oe_assets.landing.raw_catalog import RAW_ACCOUNTS, RAW_TEMPLATES
from oe_assets.landing.raw_contexts import RAW_CONTEXTS
from oe_assets.model.declaration import MODEL, MODEL_FILE, load_model
from oe_assets.model.schema_file import infer_declared_tables, shown_names, write_schema_file
from oe_assets.simulator import World
from oe_assets.warehouse import load_registry, replace_all

ITEMS_OF_A_QUOTE = ("context", "quote.requested", "items")
ITEMS_IN_STOCK = ("context", "fetch_inventory", "result", "items")


def test_every_layer_reads_the_families_of_the_one_model_file() -> None:
    assert list(FAMILIES) == [f.root_table for f in MODEL.families]
    assert CONTEXTS.root_key_path == ("context", "processid")
    assert CONTEXTS.root_key_natural_column == "context$processid"
    assert TEMPLATES.root_key_column == "execution_templates_id"
    # the raw tables the families are flattened from are the ones the landing writes
    assert [f.raw_table for f in MODEL.families] == [RAW_CONTEXTS, RAW_TEMPLATES, RAW_ACCOUNTS]


def test_a_child_tables_key_is_its_json_path_under_its_parent() -> None:
    keys = {t.name: t.asset_key for t in MODEL.declared_tables}
    quotes = "execution_context$context&celonis_postaction_feedback$quotes"
    assert keys["execution_context"] == ("execution_context",)
    assert keys[quotes] == ("execution_context", "context", "celonis_postaction_feedback", "quotes")
    assert keys[quotes + "$lines"] == (*keys[quotes], "lines")
    assert keys[quotes + "$priceBreaks$value"] == (*keys[quotes], "priceBreaks", "priceBreaks.value")
    assert keys["execution_templates$trigger"] == ("execution_templates", "trigger")
    # two arrays of one parent named `items`: each shows where it comes from
    assert keys["execution_context$context&quote.requested$items"][-1] == "quote.requested.items"
    assert keys["execution_context$context&fetch_inventory&result$items"][-1] == "fetch_inventory.items"


def test_arrays_sharing_a_name_show_the_json_key_that_tells_them_apart() -> None:
    paths = {"a": ITEMS_OF_A_QUOTE, "b": ITEMS_IN_STOCK, "a_value": (*ITEMS_OF_A_QUOTE, None)}
    names = shown_names(paths, {})
    assert names["a"] == "quote.requested.items"
    assert names["b"] == "fetch_inventory.items"
    assert names["a_value"] == "items.value"  # an array inside an array shows the array it sits in


def test_a_declared_name_never_changes_when_an_array_with_the_same_name_appears() -> None:
    names = shown_names({"a": ITEMS_OF_A_QUOTE, "b": ITEMS_IN_STOCK}, {"a": "items"})
    assert names == {"a": "items", "b": "fetch_inventory.items"}
    # an array directly at the row beside one deeper down: the deeper one is qualified
    names = shown_names({"a": ("items",), "b": ("x", "items")}, {})
    assert (names["a"], names["b"]) == ("items", "x.items")


def test_no_two_tables_of_the_model_show_the_same_name_in_the_lineage() -> None:
    shown = [t.asset_key[-1] for t in MODEL.declared_tables]
    assert len(shown) == len(set(shown))


def _warehouse_of(world: World) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    for family, documents in ((CONTEXTS, world.contexts()), (TEMPLATES, world.templates())):
        replace_all(conn, family, [Flattener(family, load_registry(conn, family)).flatten(documents)])
    return conn


def test_schema_infer_gives_a_fresh_warehouse_the_keys_the_model_file_declares() -> None:
    conn = _warehouse_of(World(seed=7, days=3, contexts_per_day=25))
    undeclared = dataclasses.replace(
        MODEL, families=tuple(dataclasses.replace(f, tables=f.tables[:1]) for f in MODEL.families)
    )
    inferred = {
        c["table"]: tuple(c["asset_key"])
        for cs in infer_declared_tables(conn, undeclared).values()
        for c in cs
    }
    declared = {t.name: t.asset_key for t in MODEL.declared_tables if t.parent is not None}
    assert len(inferred) > 25
    assert {table: declared.get(table) for table in inferred} == inferred
    kept = infer_declared_tables(conn, MODEL)
    assert {c["table"]: tuple(c["asset_key"]) for cs in kept.values() for c in cs} == inferred


def test_the_model_file_is_in_the_form_schema_infer_writes(tmp_path: Path) -> None:
    children = {
        f.root_table: [
            {"table": t.name, "parent": t.parent, "asset_key": list(t.asset_key)} for t in f.tables[1:]
        ]
        for f in MODEL.families
    }
    written = tmp_path / "model.json"
    write_schema_file(children, written)
    assert written.read_text() == MODEL_FILE.read_text()  # `schema infer` changes only what changed
    assert load_model(written) == MODEL


QUOTES = "execution_context$context&celonis_postaction_feedback$quotes"
ITEMS = "execution_context$context&fetch_inventory&result$items"


def _lines_take_the_key_of_price_breaks(children: dict[str, dict]) -> None:
    children[QUOTES + "$lines"]["asset_key"] = children[QUOTES + "$priceBreaks"]["asset_key"]


def _items_show_the_name_of_their_sibling(children: dict[str, dict]) -> None:
    children[ITEMS]["asset_key"] = [*children[ITEMS]["asset_key"][:-1], "quote.requested.items"]


def _lines_leave_their_parent(children: dict[str, dict]) -> None:
    children[QUOTES + "$lines"]["asset_key"] = ["accounts", "lines"]


def _lines_come_first(children: dict[str, dict]) -> None:
    lines = children.pop(QUOTES + "$lines")
    rest = dict(children)
    children.clear()
    children.update({QUOTES + "$lines": lines, **rest})


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_lines_take_the_key_of_price_breaks, "of another table"),
        (
            _items_show_the_name_of_their_sibling,
            "the same name in the lineage as another table: 'quote.requested.items'",
        ),
        (_lines_leave_their_parent, "does not extend its parent's"),
        (_lines_come_first, "is declared before its parent"),
    ],
)
def test_the_loader_refuses_keys_that_clash_or_break_the_lineage(
    tmp_path: Path, change: Callable[[dict[str, dict]], None], problem: str
) -> None:
    data = json.loads(MODEL_FILE.read_text())
    family = data["families"]["execution_context"]
    children = {child["table"]: child for child in family["children"]}
    change(children)
    family["children"] = list(children.values())
    broken = tmp_path / "model.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(problem)):
        load_model(broken)
