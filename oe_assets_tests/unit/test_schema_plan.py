"""The schema-change planner alone: what a batch's table needs of the warehouse (no DuckDB here)."""

from __future__ import annotations

import copy

import pytest

from oe_assets.warehouse.plan import BatchColumn, Retype, TableState, plan_table
from oe_assets.warehouse.schema import SchemaChange

KEYS = {"id"}


def col(data_type: str | None, *path: str) -> BatchColumn:
    return BatchColumn(data_type, path or None)


def registered(columns: dict[str, str], seen: dict[str, bool] | None = None) -> TableState:
    """A registered root table ``t`` holding ``columns`` (every one at its own key's path)."""
    return TableState(
        registered=(None, ()),
        columns=dict(columns),
        paths={c: (c,) for c in columns},
        seen=seen if seen is not None else dict.fromkeys(columns, True),
    )


def plan(state: TableState, **batch: BatchColumn):
    return plan_table("t", parent=None, path=(), batch=batch, state=state, key_columns=KEYS)


def test_a_new_table_is_created_registered_and_its_columns_entered() -> None:
    p = plan(TableState(), id=col("VARCHAR", "id"), n=col(None, "n"), at=col("TIMESTAMP", "at"))
    assert p.create == [("id", "VARCHAR", True), ("n", "VARCHAR", False), ("at", "TIMESTAMP", False)]
    assert p.register == (None, ())
    assert p.new_columns == [("id", ("id",), "VARCHAR"), ("n", ("n",), None), ("at", ("at",), "TIMESTAMP")]
    assert (p.add, p.retype, p.casts, p.typed_columns) == ({}, [], {}, [])
    assert p.after.columns == {"id": "VARCHAR", "n": "VARCHAR", "at": "TIMESTAMP"}
    assert p.after.seen == {"id": True, "n": False, "at": True}
    assert p.after.registered == (None, ())
    assert p.select(["id", "n", "at"]) == "*"


def test_a_table_dropped_by_hand_is_created_anew_and_its_registered_columns_retyped() -> None:
    state = registered({"id": "VARCHAR", "v": "BIGINT"})
    state.columns = None  # registered, but no longer in the warehouse
    p = plan(state, id=col("VARCHAR", "id"), v=col(None, "v"))
    assert p.create == [("id", "VARCHAR", True), ("v", "VARCHAR", False)]
    assert p.register is None
    assert p.new_columns == []
    assert p.typed_columns == [("id", "VARCHAR"), ("v", None)]
    assert p.after.seen == {"id": True, "v": False}


def test_new_keys_become_added_columns() -> None:
    p = plan(registered({"id": "VARCHAR"}), id=col("VARCHAR", "id"), x=col("BIGINT", "x"), y=col(None, "y"))
    assert p.create is None
    assert p.register is None
    assert p.add == {"x": "BIGINT", "y": "VARCHAR"}
    assert p.new_columns == [("x", ("x",), "BIGINT"), ("y", ("y",), None)]
    assert p.after.columns == {"id": "VARCHAR", "x": "BIGINT", "y": "VARCHAR"}
    assert p.after.seen == {"id": True, "x": True, "y": False}


@pytest.mark.parametrize(
    ("old", "new", "wide", "cast"),
    [
        ("BIGINT", "DOUBLE", "DOUBLE", None),
        ("BIGINT", "VARCHAR", "VARCHAR", None),
        ("BOOLEAN", "BIGINT", "VARCHAR", 'CAST("v" AS VARCHAR)'),
        ("TIMESTAMP", "DOUBLE", "VARCHAR", 'CAST("v" AS VARCHAR)'),
    ],
)
def test_a_type_that_no_longer_fits_is_widened(old: str, new: str, wide: str, cast: str | None) -> None:
    p = plan(registered({"id": "VARCHAR", "v": old}), id=col("VARCHAR", "id"), v=col(new, "v"))
    assert p.retype == [Retype("v", old, wide, had_values=True)]
    assert p.schema_changes == [SchemaChange("t", "v", old, wide)]
    assert p.typed_columns == [("v", wide)]
    assert p.casts == ({} if cast is None else {"v": cast})
    assert p.after.columns == {"id": "VARCHAR", "v": wide}


def test_values_that_fit_losslessly_are_cast_instead() -> None:
    state = registered({"id": "VARCHAR", "d": "DOUBLE", "s": "VARCHAR", "n": "BIGINT"})
    p = plan(state, id=col("VARCHAR", "id"), d=col("BIGINT", "d"), s=col("TIMESTAMP", "s"), n=col(None, "n"))
    assert p.retype == []
    assert p.typed_columns == []
    assert p.casts["d"] == 'CAST("d" AS DOUBLE)'
    assert "strftime" in p.casts["s"]  # a timestamp as text is ISO-8601 UTC
    assert p.casts["n"] == 'CAST("n" AS BIGINT)'  # NULLs typed as the column
    assert p.select(["id", "d", "s", "n"]).startswith('"id", CAST("d" AS DOUBLE) AS "d", CASE')
    assert p.after.columns == state.columns


def test_a_column_of_only_nulls_takes_the_first_type_it_meets() -> None:
    state = registered(
        {"id": "VARCHAR", "v": "VARCHAR", "w": "VARCHAR"}, {"id": True, "v": False, "w": False}
    )
    p = plan(state, id=col("VARCHAR", "id"), v=col("BIGINT", "v"), w=col("VARCHAR", "w"))
    assert p.retype == [Retype("v", "VARCHAR", "BIGINT", had_values=False)]
    assert p.schema_changes == [SchemaChange("t", "v", "NULL", "BIGINT")]
    assert p.typed_columns == [("v", "BIGINT"), ("w", "VARCHAR")]  # w: its type is now known
    assert p.casts == {}
    assert p.after.seen == {"id": True, "v": True, "w": True}


def test_a_table_nobody_registered_is_adopted() -> None:
    state = TableState(columns={"id": "VARCHAR", "v": "BIGINT"})
    p = plan(state, id=col("VARCHAR", "id"), v=col("BIGINT", "v"))
    assert p.create is None
    assert p.register == (None, ())
    assert p.new_columns == [("id", ("id",), "VARCHAR"), ("v", ("v",), "BIGINT")]
    assert p.after.registered == (None, ())
    assert p.after.seen == {"id": True, "v": True}


def test_names_of_another_registry_are_refused() -> None:
    state = registered({"id": "VARCHAR", "Supplier": "VARCHAR"})
    with pytest.raises(ValueError, match="holds JSON path"):
        plan_table("t", parent=None, path=("x",), batch={}, state=state, key_columns=KEYS)
    with pytest.raises(ValueError, match="clashes with warehouse column 'Supplier'"):
        plan(state, supplier=col("VARCHAR", "supplier"))
    with pytest.raises(ValueError, match="clashes"):
        plan(state, Supplier=col("VARCHAR", "other"))
    unregistered = TableState(columns={"id": "VARCHAR", "Note": "VARCHAR"})
    with pytest.raises(ValueError, match="exists as 'Note'"):
        plan(unregistered, note=col("VARCHAR", "note"))


def test_the_planner_leaves_the_state_it_is_given_alone() -> None:
    state = registered({"id": "VARCHAR", "v": "BIGINT"}, {"id": True, "v": False})
    before = copy.deepcopy(state)
    plan(state, id=col("VARCHAR", "id"), v=col("DOUBLE", "v"), x=col("BIGINT", "x"))
    assert state == before
