"""Property: flatten then reassemble gives the documents back."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from oe_assets.flatten import Flattener, SchemaRegistry, TableFamily, reassemble
from oe_assets_tests.unit.test_flatten import normalise

FAM = TableFamily("t", ("id",), "t_id")
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
# keys full of the characters that matter to naming: separators, case, quotes, non-ASCII, empty
KEYS = st.text(alphabet=st.sampled_from(list("abAB$&.\"' _-é\n")), max_size=4)
SCALARS = st.one_of(st.booleans(), INT64, FLOATS, st.text(max_size=8))
# arrays of scalars are homogeneous (a mix of types is a reported type conflict, landed as text)
SCALAR_ARRAYS = st.one_of(
    st.lists(st.booleans(), min_size=1, max_size=4),
    st.lists(st.one_of(INT64, st.none()), min_size=1, max_size=4),
    st.lists(FLOATS, min_size=1, max_size=4),
    st.lists(st.one_of(st.text(max_size=6), st.none()), min_size=1, max_size=4),
)


def objects(values: st.SearchStrategy[Any], exclude: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    keys = KEYS if exclude is None else KEYS.filter(lambda k: k.casefold() != exclude)
    return st.lists(
        st.tuples(keys, values), min_size=1, max_size=4, unique_by=lambda kv: kv[0].casefold()
    ).map(dict)


JSON = st.recursive(
    st.one_of(SCALARS, SCALAR_ARRAYS),
    lambda children: st.one_of(st.lists(children, min_size=1, max_size=3), objects(children)),
    max_leaves=25,
)


@st.composite
def documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=1, max_value=3))
    ids = draw(st.lists(st.text(min_size=1, max_size=6), min_size=n, max_size=n, unique=True))
    return [{"id": i, **draw(objects(JSON, exclude="id"))} for i in ids]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(documents())
def test_flatten_then_reassemble_gives_the_documents_back(docs: list[dict[str, Any]]) -> None:
    batch = Flattener(FAM).flatten(docs)
    assume(not batch.type_conflicts)
    assert not batch.quarantined
    assert reassemble(batch) == [normalise(d) for d in docs]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(documents(), documents())
def test_names_are_stable_across_batches(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
    """A path keeps its name in later batches, also through a persisted registry."""
    reg = SchemaRegistry()
    fl = Flattener(FAM, reg)
    b1 = fl.flatten(first)
    rows = reg.to_rows()
    b2 = Flattener(FAM, SchemaRegistry.from_rows(rows.tables, rows.columns)).flatten(second)
    for batch in (b1, b2):
        for table, cols in batch.json_paths.items():
            path = batch.table_paths[table]
            assert reg.table_name(path) in (None, table)
            for col, col_path in cols.items():
                assert reg.column_name(table, col_path) in (None, col)
        # names are unique per table, case-insensitively
        for table in batch.tables.values():
            folded = [c.casefold() for c in table.column_names]
            assert len(folded) == len(set(folded))
    assume(not b2.type_conflicts)
    assert reassemble(b2) == [normalise(d) for d in second]
