"""The flattening engine: naming, keys, types, collisions, quarantine (no DuckDB here)."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pytest

from oe_assets.flatten import (
    CONTEXTS,
    TEMPLATES,
    Collision,
    Flattener,
    SchemaRegistry,
    TableFamily,
    TypeConflict,
    reassemble,
)
from oe_assets_tests.support.helpers import SAMPLES

PID = "01HCJ2VRN61N7J5WQSYQ9Z1JEZ-01H7YP07GX9TFRK4S0RRGZ11WT-01HCVQ2M8X1D4W2T7K9B3N5P6R"
TID = "01K1DQS3CWHVTCQ9DN14SKXKYN"
ROOT = "execution_context"
FORMS = "execution_context$context&order.spotbuy.received$forms"
WAREHOUSES = "execution_context$context&check_stock&result$warehouses"
QUOTES = "execution_context$context&celonis_postaction_feedback$quotes"
FAM = TableFamily("t", ("id",), "t_id")


def load(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture
def context() -> dict[str, Any]:
    return load("process_context_spotbuy.json")


@pytest.fixture
def template() -> dict[str, Any]:
    return load("execution_template_order_splitting.json")


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def flat(docs: list[Any], family: TableFamily = FAM, **kw: Any):
    return Flattener(family).flatten(docs, **kw)


# ---------------------------------------------------------------------------- samples
def test_sample_context_tables_columns_and_values(context: dict[str, Any]) -> None:
    batch = Flattener(CONTEXTS).flatten([context])
    assert list(batch.tables) == [ROOT, FORMS, WAREHOUSES, QUOTES]
    assert batch.parents == {FORMS: ROOT, WAREHOUSES: ROOT, QUOTES: ROOT}
    root = batch.tables[ROOT]
    assert root.column_names == [
        "context$processid",
        "metadata$tenant",
        "metadata$createdAt",
        "metadata$updatedAt",
        "context$executionTemplateID",
        "context$executionTemplateVersionID",
        "context$instanceid",
        "context$_draft",
        "context$_executionEnvironment",
        "context$_replayid",
        "context$metadata$externalID",
        "context$metadata$scenarioid",
        "context$order.found$orderId",
        "context$order.spotbuy.received$contact$companyId",
        "context$order.spotbuy.received$contact$companyName",
        "context$order.spotbuy.received$contact$id",
        "context$order.spotbuy.received$contact$language",
        "context$order.spotbuy.received$contact$name",
        "context$order.spotbuy.received$contact$value",
        "context$check_stock$metadata$occurredAt",
        "context$check_stock$metadata$type",
        "context$check_stock$result$inStock",
        "context$celonis_postaction_feedback$productId",
        "context$celonis_postaction_feedback$stock",
        "status",
    ]
    assert rows(root) == [
        {
            "context$processid": PID,
            "metadata$tenant": "01H7YP07GX9TFRK4S0RRGZ11WT",
            "metadata$createdAt": datetime(2023, 10, 16, 10, 13, 42, 322000),
            "metadata$updatedAt": datetime(2023, 10, 16, 10, 14, 9, 354000),
            "context$executionTemplateID": "01HCD6ZYTDSBZ6KS1GNQYX529N",
            "context$executionTemplateVersionID": "01HCJ2VRN61N7J5WQSYQ9Z1JEZ",
            "context$instanceid": "691a4c2c-595b-4b3c-9cf3-0471f6e074c8",
            "context$_draft": False,
            "context$_executionEnvironment": "production",
            "context$_replayid": "",
            "context$metadata$externalID": "",
            "context$metadata$scenarioid": "",
            "context$order.found$orderId": "EON1075",
            "context$order.spotbuy.received$contact$companyId": "",
            "context$order.spotbuy.received$contact$companyName": "",
            "context$order.spotbuy.received$contact$id": "",
            "context$order.spotbuy.received$contact$language": "en",
            "context$order.spotbuy.received$contact$name": "",
            "context$order.spotbuy.received$contact$value": "",
            "context$check_stock$metadata$occurredAt": datetime(2023, 10, 16, 10, 13, 55),
            "context$check_stock$metadata$type": "cloud-function",
            "context$check_stock$result$inStock": False,
            "context$celonis_postaction_feedback$productId": "30610403",
            "context$celonis_postaction_feedback$stock": 0,
            "status": "finished",
        }
    ]
    assert root.schema.field("metadata$createdAt").type == pa.timestamp("us")
    assert root.schema.field("context$celonis_postaction_feedback$stock").type == pa.int64()
    assert root.schema.field("context$_draft").type == pa.bool_()
    assert rows(batch.tables[FORMS]) == [
        {
            "context$processid": PID,
            "_oe_row_id": "0",
            "_oe_parent_row_id": "",
            "_oe_position": 0,
            "metadata$formId": "01HAPCT5KS0T7METVDM4GBM0MC",
            "metadata$formName": "PO Form",
            "payload$businessNeed": "Spot Buy",
            "payload$expectedDeliveryDate": datetime(2023, 10, 18, 9, 0),
            "payload$item": "30610403",
            "payload$itemCost": 112.79,
            "payload$quantity": 4,
        }
    ]
    assert rows(batch.tables[WAREHOUSES]) == [
        {
            "context$processid": PID,
            "_oe_row_id": "0",
            "_oe_parent_row_id": "",
            "_oe_position": 0,
            "value": "DE-01",
        },
        {
            "context$processid": PID,
            "_oe_row_id": "1",
            "_oe_parent_row_id": "",
            "_oe_position": 1,
            "value": "PL-02",
        },
    ]
    assert rows(batch.tables[QUOTES]) == [
        {
            "context$processid": PID,
            "_oe_row_id": "0",
            "_oe_parent_row_id": "",
            "_oe_position": 0,
            "quoteId": "Q-1001",
            "supplier": "ACME",
            "price": 109.5,
            "currency": "EUR",
        },
        {
            "context$processid": PID,
            "_oe_row_id": "1",
            "_oe_parent_row_id": "",
            "_oe_position": 1,
            "quoteId": "Q-1002",
            "supplier": "Globex",
            "price": 114.0,
            "currency": "EUR",
        },
    ]
    assert batch.tables[QUOTES].schema.field("price").type == pa.float64()
    # order.spotbuy.pending is {} and contacts is []: no columns, no table, but counted
    assert batch.stats.empty_objects == 1
    assert batch.stats.empty_arrays == 1
    assert batch.stats.documents == batch.stats.flattened == 1
    assert batch.stats.rows == 6
    assert not batch.quarantined
    assert not batch.collisions
    assert not batch.type_conflicts
    assert not batch.duplicates
    assert batch.json_paths[ROOT]["context$order.found$orderId"] == ("context", "order.found", "orderId")
    assert batch.json_paths[QUOTES]["quoteId"] == ("quoteId",)
    assert batch.json_paths[WAREHOUSES]["value"] == ()
    assert batch.table_paths[QUOTES] == ("context", "celonis_postaction_feedback", "quotes")


def test_sample_template_tables_columns_and_values(template: dict[str, Any]) -> None:
    batch = Flattener(TEMPLATES).flatten([template])
    assert list(batch.tables) == [
        "execution_templates",
        "execution_templates$trigger",
        "execution_templates$steps",
        "execution_templates$steps$scenarios",
    ]
    assert batch.parents["execution_templates$steps$scenarios"] == "execution_templates$steps"
    assert rows(batch.tables["execution_templates"]) == [
        {
            "id": TID,
            "tenant": "01JWGS7BEJFCHJGCK108AT05K5",
            "name": "Order Splitting",
            "version$id": "01K1DSGN2V9SB6VQ038DH6JBJK",
            "version$number": 2,
            "metadata$createdAt": datetime(2025, 7, 30, 13, 49, 26, 491000),
            "metadata$activatedAt": datetime(1, 1, 1, 0, 0),  # the Go zero time is a timestamp
            "metadata$createdBy": "32c02132-94c1-45d1-bbc8-01569705bb04",
            "metadata$activatedBy": "",
            "metadata$createdByUser$user_id": "",
            "metadata$createdByUser$user_name": "",
            "metadata$createdByUser$user_email": "",
            "metadata$activatedByUser$user_id": "",
            "metadata$activatedByUser$user_name": "",
            "metadata$activatedByUser$user_email": "",
            "state": "active",
        }
    ]
    # the extractor's names: execution_templates$trigger.execution_templates_id
    assert rows(batch.tables["execution_templates$trigger"]) == [
        {
            "execution_templates_id": TID,
            "_oe_row_id": "0",
            "_oe_parent_row_id": "",
            "_oe_position": 0,
            "trigger_type": "webhook",
            "event_type": "order.created",
            "timeExpression": "",
        }
    ]
    assert rows(batch.tables["execution_templates$steps"]) == [
        {
            "execution_templates_id": TID,
            "_oe_row_id": "0",
            "_oe_parent_row_id": "",
            "_oe_position": 0,
            "stepType": "scenario",
        }
    ]
    assert rows(batch.tables["execution_templates$steps$scenarios"]) == [
        {
            "execution_templates_id": TID,
            "_oe_row_id": "0/0",
            "_oe_parent_row_id": "0",
            "_oe_position": 0,
            "scenario_id": "1865",
            "url": "",
            "method": "",
        }
    ]
    assert batch.stats.empty_arrays == 1  # scenario_ids: []


def test_seed_table_name_for_postaction_feedback_quotes(context: dict[str, Any]) -> None:
    batch = Flattener(CONTEXTS).flatten([context])
    assert "execution_context$context&celonis_postaction_feedback$quotes" in batch.tables
    assert batch.tables[QUOTES].column_names[0] == "context$processid"


def test_constant_columns_on_every_table(context: dict[str, Any]) -> None:
    consts = {"_oe_partition": date(2023, 10, 16), "_oe_loaded_at": datetime(2024, 1, 2, 3, 4, 5)}
    batch = Flattener(CONTEXTS).flatten([context], constant_columns=consts)
    for table in batch.tables.values():
        assert table.column_names[-2:] == ["_oe_partition", "_oe_loaded_at"]
        assert table.schema.field("_oe_partition").type == pa.date32()
        assert set(table.column("_oe_partition").to_pylist()) == {date(2023, 10, 16)}
        assert set(table.column("_oe_loaded_at").to_pylist()) == {datetime(2024, 1, 2, 3, 4, 5)}


def test_empty_batch_still_has_the_root_table() -> None:
    batch = Flattener(CONTEXTS).flatten([], constant_columns={"_oe_partition": date(2023, 1, 1)})
    assert list(batch.tables) == [ROOT]
    assert batch.tables[ROOT].num_rows == 0
    assert batch.tables[ROOT].column_names == ["context$processid", "_oe_partition"]


# ----------------------------------------------------------------------------- arrays
def test_nested_arrays_and_row_ids() -> None:
    doc = {
        "id": "k",
        "quotes": [
            {"q": 1, "lines": [{"sku": "a"}, {"sku": "b"}], "priceBreaks": [[1, 2], [3]]},
            {"q": 2, "lines": [{"sku": "c"}]},
        ],
    }
    batch = flat([doc])
    assert list(batch.tables) == [
        "t",
        "t$quotes",
        "t$quotes$lines",
        "t$quotes$priceBreaks",
        "t$quotes$priceBreaks$value",
    ]
    lines = rows(batch.tables["t$quotes$lines"])
    assert [
        (r["t_id"], r["_oe_row_id"], r["_oe_parent_row_id"], r["_oe_position"], r["sku"]) for r in lines
    ] == [
        ("k", "0/0", "0", 0, "a"),
        ("k", "0/1", "0", 1, "b"),
        ("k", "1/0", "1", 0, "c"),
    ]
    pb = rows(batch.tables["t$quotes$priceBreaks"])
    assert [(r["_oe_row_id"], r["_oe_parent_row_id"], r["_oe_position"]) for r in pb] == [
        ("0/0", "0", 0),
        ("0/1", "0", 1),
    ]
    assert batch.tables["t$quotes$priceBreaks"].column_names == [
        "t_id",
        "_oe_row_id",
        "_oe_parent_row_id",
        "_oe_position",
    ]
    vals = rows(batch.tables["t$quotes$priceBreaks$value"])
    assert [(r["_oe_row_id"], r["_oe_parent_row_id"], r["_oe_position"], r["value"]) for r in vals] == [
        ("0/0/0", "0/0", 0, 1),
        ("0/0/1", "0/0", 1, 2),
        ("0/1/0", "0/1", 0, 3),
    ]
    assert batch.table_paths["t$quotes$priceBreaks$value"] == ("quotes", None, "priceBreaks", None)
    assert reassemble(batch) == [doc]


def test_context_grandchild_table_names() -> None:
    doc = {
        "context": {
            "processid": "p",
            "celonis_postaction_feedback": {"quotes": [{"lines": [{"x": 1}], "priceBreaks": [[1]]}]},
        }
    }
    batch = Flattener(CONTEXTS).flatten([doc])
    assert set(batch.tables) == {
        ROOT,
        QUOTES,
        f"{QUOTES}$lines",
        f"{QUOTES}$priceBreaks",
        f"{QUOTES}$priceBreaks$value",
    }
    assert rows(batch.tables[f"{QUOTES}$lines"])[0]["context$processid"] == "p"


def test_array_of_scalars_and_mixed_array() -> None:
    doc = {"id": "k", "tags": ["a", "b"], "mixed": [1, {"a": 2}, 3, [4]]}
    batch = flat([doc])
    assert [r["value"] for r in rows(batch.tables["t$tags"])] == ["a", "b"]
    mixed = rows(batch.tables["t$mixed"])
    assert [(r["_oe_position"], r["value"], r["a"]) for r in mixed] == [
        (0, 1, None),
        (1, None, 2),
        (2, 3, None),
        (3, None, None),
    ]
    assert [(r["_oe_parent_row_id"], r["value"]) for r in rows(batch.tables["t$mixed$value"])] == [("3", 4)]
    assert reassemble(batch) == [doc]


def test_empty_arrays_and_objects_are_counted_not_landed() -> None:
    doc = {"id": "k", "e": [], "o": {}, "a": [[], {}, 1], "n": {"m": {}}}
    batch = flat([doc])
    assert batch.stats.empty_arrays == 2
    assert batch.stats.empty_objects == 3
    assert batch.tables["t"].column_names == ["id"]
    assert rows(batch.tables["t$a"]) == [
        {"t_id": "k", "_oe_row_id": "0", "_oe_parent_row_id": "", "_oe_position": 0, "value": None},
        {"t_id": "k", "_oe_row_id": "1", "_oe_parent_row_id": "", "_oe_position": 1, "value": None},
        {"t_id": "k", "_oe_row_id": "2", "_oe_parent_row_id": "", "_oe_position": 2, "value": 1},
    ]


def test_array_of_100k_scalars() -> None:
    doc = {"id": "big", "values": list(range(100_000))}
    batch = flat([doc])
    t = batch.tables["t$values"]
    assert t.num_rows == 100_000
    assert t.column("value").to_pylist() == list(range(100_000))
    assert t.column("_oe_position").to_pylist() == list(range(100_000))
    assert t.column("_oe_row_id")[99_999].as_py() == "99999"


def test_deep_nesting_100_levels() -> None:
    obj: Any = {"leaf": 1}
    for i in range(100):
        obj = {f"k{i}": obj}
    arr: Any = ["x"]
    for _ in range(100):
        arr = [arr]
    doc = {"id": "deep", "obj": obj, "arr": arr}
    batch = flat([doc])
    root = batch.tables["t"]
    deep_col = root.column_names[-1]
    assert deep_col == "obj$" + "$".join(f"k{i}" for i in reversed(range(100))) + "$leaf"
    assert root.column(deep_col).to_pylist() == [1]
    assert len(batch.tables) == 1 + 101  # t$arr, t$arr$value, t$arr$value$value, ...
    deepest = "t$arr" + "$value" * 100
    assert rows(batch.tables[deepest])[0]["value"] == "x"
    assert rows(batch.tables[deepest])[0]["_oe_row_id"] == "/".join(["0"] * 101)
    assert reassemble(batch) == [doc]


def test_too_deep_document_is_quarantined_and_others_land() -> None:
    obj: Any = 1
    for _ in range(5000):
        obj = {"a": obj}
    docs = [{"id": "ok1", "x": [1]}, {"id": "deep", "x": [2], "a": obj}, {"id": "ok2", "x": [3]}]
    batch = flat(docs)
    assert batch.tables["t"].column("id").to_pylist() == ["ok1", "ok2"]
    # the quarantined record's partial rows are gone from every table
    assert batch.tables["t$x"].column("value").to_pylist() == [1, 3]
    assert batch.tables["t$x"].column("t_id").to_pylist() == ["ok1", "ok2"]
    [q] = batch.quarantined
    assert q.record_key == "deep"
    assert "nested deeper" in q.reason
    assert not any(c.startswith("a$a$a") for c in batch.tables["t"].column_names)


def test_record_failing_mid_walk_leaves_no_partial_rows() -> None:
    bad = {"id": "bad", "x": [{"y": [5, 6]}], "z": {1: "not a str key"}}
    docs = [{"id": "a", "x": [{"y": [1]}]}, bad, {"id": "b", "x": [{"y": [2]}]}]
    batch = flat(docs)
    assert batch.tables["t"].column("id").to_pylist() == ["a", "b"]
    assert batch.tables["t$x$y"].column("value").to_pylist() == [1, 2]
    assert batch.tables["t$x$y"].column("t_id").to_pylist() == ["a", "b"]
    assert batch.tables["t$x$y"].column("_oe_row_id").to_pylist() == ["0/0", "0/0"]
    [q] = batch.quarantined
    assert q.record_key == "bad"
    assert "not a string" in q.reason


# ------------------------------------------------------------------------------ types
def test_column_types() -> None:
    docs = [
        {
            "id": "1",
            "b": True,
            "i": 1,
            "f": 1.5,
            "if": 1,
            "s": "x",
            "ts": "2023-10-16T10:13:42.322Z",
            "off": "2023-10-16T12:13:42+02:00",
            "zero": "0001-01-01T00:00:00Z",
            "big": 2**70,
            "null": None,
            "almost": "2023-10-16T10:13:42.322Z",
        },
        {
            "id": "2",
            "b": False,
            "i": None,
            "f": 2.0,
            "if": 2.5,
            "s": "y",
            "ts": None,
            "off": "2023-10-16T10:13:42.123456-01:30",
            "zero": "0001-01-01T00:00:00Z",
            "big": 5,
            "null": None,
            "almost": "2023-10-16 10:13:42Z",
        },
    ]
    batch = flat(docs)
    t = batch.tables["t"]
    types = {f.name: f.type for f in t.schema}
    assert types == {
        "id": pa.string(),
        "b": pa.bool_(),
        "i": pa.int64(),
        "f": pa.float64(),
        "if": pa.float64(),
        "s": pa.string(),
        "ts": pa.timestamp("us"),
        "off": pa.timestamp("us"),
        "zero": pa.timestamp("us"),
        "big": pa.string(),
        "null": pa.string(),
        "almost": pa.string(),
    }
    assert t.column("off").to_pylist() == [
        datetime(2023, 10, 16, 10, 13, 42),
        datetime(2023, 10, 16, 11, 43, 42, 123456),
    ]
    assert t.column("zero").to_pylist() == [datetime(1, 1, 1)] * 2
    assert t.column("big").to_pylist() == [str(2**70), "5"]
    assert t.column("if").to_pylist() == [1.0, 2.5]
    assert t.column("null").to_pylist() == [None, None]
    assert not batch.type_conflicts


def test_type_conflict_keeps_json_text() -> None:
    docs = [
        {"id": "1", "v": True},
        {"id": "2", "v": 1},
        {"id": "3", "v": "x"},
        {"id": "4", "v": 1.5},
        {"id": "5"},
    ]
    batch = flat(docs)
    assert batch.tables["t"].column("v").to_pylist() == ["true", "1", "x", "1.5", None]
    assert batch.type_conflicts == [TypeConflict("t", "v", ("bool", "float", "int", "str"))]
    # bool beside float is a conflict too (pyarrow alone would turn True into 1.0)
    batch = flat([{"id": "1", "v": 1.5}, {"id": "2", "v": True}])
    assert batch.tables["t"].column("v").to_pylist() == ["1.5", "true"]
    assert batch.type_conflicts == [TypeConflict("t", "v", ("bool", "float"))]


def test_invalid_calendar_date_stays_text() -> None:
    batch = flat([{"id": "1", "d": "2023-02-30T10:00:00Z"}])
    assert batch.tables["t"].column("d").to_pylist() == ["2023-02-30T10:00:00Z"]


# ------------------------------------------------------------------------- collisions
def test_dollar_key_collides_with_nested_path() -> None:
    batch = flat([{"id": "k", "a": {"b": 1}, "a$b": 2}])
    t = batch.tables["t"]
    assert t.column_names == ["id", "a$b", "a$b~2"]
    assert t.column("a$b").to_pylist() == [1]
    assert t.column("a$b~2").to_pylist() == [2]
    assert batch.collisions == [Collision("t", ("a$b",), "a$b", "a$b~2", "column")]
    assert batch.json_paths["t"] == {"id": ("id",), "a$b": ("a", "b"), "a$b~2": ("a$b",)}


def test_case_only_difference_collides() -> None:
    batch = flat([{"id": "k", "Status": "A", "status": "b", "STATUS": "c", "status~2": "d"}])
    t = batch.tables["t"]
    assert t.column_names == ["id", "Status", "status~2", "STATUS~3", "status~2~2"]
    assert rows(t) == [{"id": "k", "Status": "A", "status~2": "b", "STATUS~3": "c", "status~2~2": "d"}]
    assert [c.given_name for c in batch.collisions] == ["status~2", "STATUS~3", "status~2~2"]


def test_json_keys_colliding_with_system_columns() -> None:
    doc = {
        "context": {
            "processid": "p",
            "quotes": [{"_oe_row_id": "mine", "context": {"processid": "x"}, "value": 1}, 7],
        },
        "_oe_partition": "json",
    }
    batch = Flattener(CONTEXTS).flatten([doc], constant_columns={"_oe_partition": date(2023, 1, 1)})
    root = batch.tables[ROOT]
    assert root.column("_oe_partition").to_pylist() == [date(2023, 1, 1)]
    assert root.column("_oe_partition~2").to_pylist() == ["json"]
    q = rows(batch.tables["execution_context$context$quotes"])
    assert q[0]["_oe_row_id"] == "0"
    assert q[0]["_oe_row_id~2"] == "mine"
    assert q[0]["context$processid"] == "p"
    assert q[0]["context$processid~2"] == "x"
    assert (q[0]["value"], q[0]["value~2"]) == (1, None)  # the object key came first
    assert (q[1]["value"], q[1]["value~2"]) == (None, 7)
    assert {c.given_name for c in batch.collisions} == {
        "_oe_partition~2",
        "_oe_row_id~2",
        "context$processid~2",
        "value~2",
    }


def test_table_name_collisions() -> None:
    batch = flat([{"id": "k", "a": {"b": [1]}, "a$b": [2], "A": {"B": [3]}}])
    assert {n: rows(t)[0]["value"] for n, t in batch.tables.items() if n != "t"} == {
        "t$a$b": 1,
        "t$a$b~2": 2,
        "t$A$B~3": 3,
    }
    assert [(c.kind, c.wanted_name, c.given_name) for c in batch.collisions] == [
        ("table", "t$a$b", "t$a$b~2"),
        ("table", "t$A$B", "t$A$B~3"),
    ]


def test_empty_key_and_nul_get_representable_names() -> None:
    batch = flat([{"id": "k", "": 1, "o": {"": 2}, "n\x00ul": 3, "(empty)": 4, "arr": {"": [5]}}])
    t = batch.tables["t"]
    assert rows(t) == [{"id": "k", "(empty)": 1, "o$(empty)": 2, "n\\u0000ul": 3, "(empty)~2": 4}]
    assert "t$arr$(empty)" in batch.tables
    wanted = {(c.wanted_name, c.given_name) for c in batch.collisions}
    assert wanted == {
        ("", "(empty)"),
        ("o$", "o$(empty)"),
        ("n\x00ul", "n\\u0000ul"),
        ("(empty)", "(empty)~2"),
        ("t$arr$", "t$arr$(empty)"),
    }


def test_hostile_keys_are_plain_names() -> None:
    keys = [
        'x"; DROP TABLE execution_context; --',
        "semi;colon",
        "new\nline",
        "a&b",
        "a$b$c",
        "ünï©ødé 🚀",
        "k" * 300,
        "'q'",
    ]
    doc = {"id": "k", **{k: i for i, k in enumerate(keys)}}
    batch = flat([doc])
    assert batch.tables["t"].column_names == ["id", *keys]
    assert reassemble(batch) == [doc]


# ---------------------------------------------------------------------- registry/keys
def test_registry_keeps_names_across_batches_and_round_trips() -> None:
    reg = SchemaRegistry()
    fl = Flattener(FAM, reg)
    b1 = fl.flatten([{"id": "1", "a": {"b": 1}, "a$b": 2}])
    assert b1.tables["t"].column_names == ["id", "a$b", "a$b~2"]
    # the later batch sees the paths in the other order: names stay
    b2 = fl.flatten([{"id": "2", "a$b": 3, "a": {"b": 4}}])
    assert rows(b2.tables["t"]) == [{"id": "2", "a$b~2": 3, "a$b": 4}]
    assert b2.collisions == []  # resolved once, reported once
    rows_ = reg.to_rows()
    reg2 = SchemaRegistry.from_rows(rows_.tables, rows_.columns)
    b3 = Flattener(FAM, reg2).flatten([{"id": "3", "a$b": 5, "A": {"B": 6}}])
    assert rows(b3.tables["t"]) == [{"id": "3", "a$b~2": 5, "A$B~3": 6}]
    with pytest.raises(ValueError, match="already owned"):
        reg2.reserve_system_column("t", "A$b")


def test_quarantine_of_records_without_key() -> None:
    docs: list[Any] = [
        {"context": {"processid": "good1"}},
        {"context": {}},
        {"metadata": {}},
        {"context": "nope"},
        {"context": {"processid": 5}},
        {"context": {"processid": ""}},
        {"context": {"processid": None}},
        ["not", "an", "object"],
        {"context": {"processid": "good2"}},
    ]
    batch = Flattener(CONTEXTS).flatten(docs)
    assert batch.tables[ROOT].column("context$processid").to_pylist() == ["good1", "good2"]
    assert [q.reason for q in batch.quarantined] == [
        "context.processid is missing",
        "context is missing",
        "context is not an object (got string)",
        "context.processid is not a string (got number)",
        "context.processid is empty",
        "context.processid is not a string (got null)",
        "record is not a JSON object (got array)",
    ]
    assert {q.family for q in batch.quarantined} == {ROOT}
    assert json.loads(batch.quarantined[0].document) == {"context": {}}
    assert batch.stats.quarantined == 7
    assert batch.stats.documents == 9


def test_duplicate_keys_keep_newest() -> None:
    def ctx(pid: str, updated: str | None, v: int) -> dict[str, Any]:
        d: dict[str, Any] = {"context": {"processid": pid}, "v": v}
        if updated:
            d["metadata"] = {"updatedAt": updated}
        return d

    docs = [
        ctx("a", "2023-10-16T10:00:00.000Z", 1),
        ctx("b", None, 1),
        ctx("a", "2023-10-16T09:00:00.000Z", 2),  # older: loses
        ctx("b", None, 2),  # no updatedAt: the last wins
        ctx("c", "2023-10-16T10:00:00Z", 1),
        ctx("c", "2023-10-16T12:00:00+02:00", 2),  # same instant: the last wins
        ctx("a", "2023-10-16T11:00:00.000Z", 3),  # newer: wins
    ]
    batch = Flattener(CONTEXTS).flatten(docs)
    got = dict(
        zip(
            batch.root.column("context$processid").to_pylist(),
            batch.root.column("v").to_pylist(),
            strict=True,
        )
    )
    assert got == {"a": 3, "b": 2, "c": 2}
    assert batch.duplicates == ["a", "b", "c"]
    assert batch.stats.duplicates == 4


def test_reassemble_samples(context: dict[str, Any], template: dict[str, Any]) -> None:
    for doc, family in ((context, CONTEXTS), (template, TEMPLATES)):
        batch = Flattener(family).flatten([copy.deepcopy(doc)])
        assert reassemble(batch) == [normalise(doc)]


def normalise(value: Any) -> Any:
    """Drop empty containers and null-valued keys; ISO timestamps -> naive UTC datetimes."""
    from oe_assets.flatten.flattener import _TIMESTAMP_RE

    if isinstance(value, dict):
        out = {k: normalise(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str) and _TIMESTAMP_RE.match(value):
        ts = datetime.fromisoformat(value)
        if ts.tzinfo is not None:
            from datetime import UTC

            ts = ts.astimezone(UTC).replace(tzinfo=None)
        return ts
    return value
