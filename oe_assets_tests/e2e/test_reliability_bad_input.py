"""Hostile documents, served by the simulator over HTTP and landed by real Dagster runs.

Each bad record lands as documented; the good ones land beside them; no run crashes:

* no ``context.processid``, a processid that is not a string, a ``context`` that is not an
  object: quarantined by the raw layer (``_oe_quarantine``, family ``raw_process_contexts``)
  with the reason and the document;
* the same processid twice in one page, and again on a later page with newer content: landed
  once, the newest version (``metadata.updatedAt``) wins;
* a string where a number was, an object where an array was: kept; the column holds the values
  as text (a reported type conflict), the object's keys become columns beside the array's table;
* keys that collide after flattening (``a$b`` beside ``a.b``, ``Key`` beside ``key``): both kept,
  the later one named ``...~2`` and recorded in ``_oe_columns`` with its JSON path;
* keys with quotes, semicolons, ``$``, ``&``, newlines, NUL, the empty string, 5,000 characters,
  non-ASCII: kept as columns (and tables, for arrays) under those names, quoted everywhere;
* objects and arrays nested 100 levels deep, an array of 100,000 elements, a 20 MB context: kept;
* timestamps that are not timestamps (text columns) and the Go zero time (TIMESTAMP year 1): kept;
  a ``metadata.createdAt`` that is no timestamp cannot be asked for by any day (the API filters on
  it): the sensor names it as impossible to place.

Invalid JSON in a page is the simulator's ``corrupt_page_rate`` fault (test_reliability_faults:
asked for again; if it never parses, the run fails naming the request and nothing changes).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oe_assets.core.timestamps import format_oe_timestamp, parse_oe_timestamp
from oe_assets.flatten import Flattener, TableFamily, reassemble
from oe_assets.flatten.flattener import _json_text
from oe_assets.refresh.delta import SensorCursor, poll_finished_changes
from oe_assets.simulator import SimulatorServer
from oe_assets.simulator.world import ContextPage
from oe_assets_tests.support.helpers import created_day, doc_hash
from oe_assets_tests.support.reliability_support import (
    FIGURES,
    failure_text,
    light_definitions,
    light_full_load,
    new_simulator,
    quote,
    resources_for,
    world_days,
)

LONG_KEY = "k" * 5000
HOSTILE_KEYS = [
    'x"; DROP TABLE execution_context; --',
    "it's",
    "semi;colon",
    "dollar$sign",
    "amper&sand",
    "new\nline",
    "nul\x00char",
    "",
    LONG_KEY,
    "Größe 日本語 🚀",
]
HOSTILE_ARRAY_KEY = 't"; DROP TABLE event_log; --'
GO_ZERO = "0001-01-01T00:00:00Z"


@dataclass
class Hostile:
    warehouse: Path
    server: SimulatorServer
    template: str
    day: date
    base: dict[str, Any]
    docs: dict[str, dict[str, Any]]  # name -> document put into the simulator
    served_newest: dict[str, Any]  # the newer version served on a later page


def _pid(base: dict[str, Any], name: str) -> str:
    return base["context"]["processid"][:-10] + f"HOST{name.upper()[:6]:_<6}"


def _corpus(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    def doc(name: str, **context: Any) -> dict[str, Any]:
        d = copy.deepcopy(base)
        d["context"]["processid"] = _pid(base, name)
        d["context"].update(context)
        return d

    docs: dict[str, dict[str, Any]] = {}
    docs["no_pid"] = doc("nopid")
    del docs["no_pid"]["context"]["processid"]
    docs["pid_number"] = doc("pidnum")
    docs["pid_number"]["context"]["processid"] = 12345
    docs["context_text"] = copy.deepcopy(base)
    docs["context_text"]["context"] = "not an object"
    for i in range(3):  # a consistent shape ...
        docs[f"typed_{i}"] = doc(f"typed{i}", **{"hostile.types": {"amount": 10.5 + i, "items": [1, 2, 3]}})
    docs["wrong_types"] = doc(  # ... and one document that breaks it
        "wrong", **{"hostile.types": {"amount": "12.5 EUR", "items": {"first": 1, "second": 2}}}
    )
    docs["collide"] = doc("collid", **{"hostile.collide": {"a$b": 1, "a": {"b": 2}, "Key": 3, "key": 4}})
    docs["keys"] = doc(
        "keys",
        **{
            "hostile.keys": {k: f"value {i}" for i, k in enumerate(HOSTILE_KEYS)},
            HOSTILE_ARRAY_KEY: [{"v": 1}, {"v": 2}],
        },
    )
    deep: Any = {"leaf": 1}
    for _ in range(100):
        deep = {"d": deep}
    nested: Any = [1]
    for _ in range(99):
        nested = [nested]
    docs["deep"] = doc("deep", **{"hostile.deep": deep, "hostile.nested": nested})
    docs["big_array"] = doc("bigarr", **{"hostile.big": list(range(100_000))})
    docs["twenty_mb"] = doc("20mb", **{"hostile.huge": [{"n": i, "text": "x" * 400} for i in range(50_000)]})
    docs["times"] = doc(
        "times",
        **{"hostile.times": {"when": "not a timestamp", "never": GO_ZERO, "maybe": "2023-02-30T00:00:00Z"}},
    )
    docs["times"]["metadata"]["updatedAt"] = GO_ZERO
    docs["no_created"] = doc("nocre")
    docs["no_created"]["metadata"]["createdAt"] = "yesterday-ish"
    docs["no_created"]["status"] = "finished"
    docs["dup_page"] = doc("duppg")
    docs["dup_later"] = doc("duplat")
    # distinct creation times (a tie group is another test's business), the duplicates first
    created = parse_oe_timestamp(base["metadata"]["createdAt"])
    assert created is not None
    order = ["dup_page", "dup_later", *(n for n in docs if n not in ("dup_page", "dup_later", "no_created"))]
    for i, name in enumerate(order, start=1):
        docs[name]["metadata"]["createdAt"] = format_oe_timestamp(created + timedelta(seconds=i))
    return docs


def _serve_duplicates(
    server: SimulatorServer, template: str, docs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Makes the API repeat ids: a stale copy inside the same page, a newer one on the next page.

    Returns a holder whose ``"newest"`` is the newer copy as served (its createdAt is the cursor the
    next page was asked for with, so the page stays in the order the client asked for).
    """
    world = server.world
    stale = copy.deepcopy(docs["dup_page"])
    stale["metadata"]["updatedAt"] = stale["metadata"]["createdAt"]  # older than the original
    stale["context"]["stale"] = True
    raw_page, raw_later = orjson.dumps(docs["dup_page"]), orjson.dumps(docs["dup_later"])
    original_page = world.page
    state: dict[str, Any] = {"armed": False, "newest": None}

    def page(template_id: str, **kwargs: Any) -> ContextPage:
        served = original_page(template_id, **kwargs)
        items: list[bytes] = []
        if template_id == template and state["armed"] and state["newest"] is None:
            newest = copy.deepcopy(docs["dup_later"])
            newest["metadata"]["createdAt"] = kwargs["created_since"]
            newest["metadata"]["updatedAt"] = "2099-01-01T00:00:00.000Z"
            newest["context"]["newer"] = True
            state["newest"] = newest
            items.append(orjson.dumps(newest))  # the same id again, on a later page, updated
        for item in served.items:
            items.append(item)
            if item == raw_page:
                items.append(orjson.dumps(stale))  # the same id twice in one page
            state["armed"] = state["armed"] or item == raw_later
        return ContextPage(served.total, items)

    world.page = page  # type: ignore[method-assign]
    return state


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    tmp = tmp_path_factory.mktemp("hostile")
    warehouse = tmp / "warehouse.duckdb"
    with (
        new_simulator(300, days=1, contexts_per_day=15) as server,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        days = world_days(server)
        base = next(
            c
            for c in server.world.contexts()
            if created_day(c) == days[0] and c["metadata"]["createdAt"][11:13] < "23"
        )
        template = base["context"]["executionTemplateID"]
        docs = _corpus(base)
        for d in docs.values():
            server.world.put_context(d, template_id=template)
        honest_page = server.world.page
        served = _serve_duplicates(server, template, docs)
        defs = light_definitions(resources_for(server, warehouse, page_size=2))
        try:
            for result in light_full_load(defs, instance, days):
                assert result.success, failure_text(result)
        finally:
            # The repeated ids were the load's fault to survive. Left in place, the stale copy
            # (updatedAt older than the original's) would also answer the tests' later reads
            # sorted by updatedAt, where the client rightly refuses a record before its filter.
            server.world.page = honest_page  # type: ignore[method-assign]
        assert served["newest"] is not None, "the newer copy must have been served on a later page"
        FIGURES.hostile_documents += len(docs) + 2
        yield Hostile(warehouse, server, template, days[0], base, docs, served["newest"])


def _conn(h: Hostile) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(h.warehouse), read_only=True)


def _column(conn: duckdb.DuckDBPyConnection, table: str, path: list[str]) -> str:
    row = conn.execute(
        "SELECT column_name FROM _oe_columns WHERE table_name = ? AND json_path = ?",
        [table, orjson.dumps(path).decode()],
    ).fetchone()
    assert row is not None, f"no column for {path} in {table}"
    return str(row[0])


def _value(conn: duckdb.DuckDBPyConnection, pid: str, path: list[str]) -> Any:
    column = _column(conn, "execution_context", path)
    row = conn.execute(
        f'SELECT {quote(column)} FROM execution_context WHERE "context$processid" = ?', [pid]
    ).fetchone()
    assert row is not None, pid
    return row[0]


def test_the_good_contexts_and_every_keepable_hostile_one_land_exactly(hostile: Hostile) -> None:
    never_served = hostile.docs["no_created"]["context"]["processid"]  # no day can ask for it
    expected: dict[str, str] = {}
    for c in hostile.server.world.contexts():
        context = c.get("context")
        pid = context.get("processid") if isinstance(context, dict) else None
        if isinstance(pid, str) and pid and pid != never_served:
            expected[pid] = doc_hash(c)
    expected[hostile.docs["dup_later"]["context"]["processid"]] = doc_hash(hostile.served_newest)
    kept = [d for name, d in hostile.docs.items() if name not in ("no_pid", "pid_number", "context_text")]
    assert all(
        d["context"]["processid"] in expected for d in kept if d["context"]["processid"] != never_served
    )
    conn = _conn(hostile)
    try:
        raw = conn.execute("SELECT process_id, document FROM raw_process_contexts").fetchall()
        flat = [r[0] for r in conn.execute('SELECT "context$processid" FROM execution_context').fetchall()]
        logged = [r[0] for r in conn.execute("SELECT instance_id FROM event_log").fetchall()]
    finally:
        conn.close()
    landed = {pid: doc_hash(orjson.loads(d)) for pid, d in raw}
    FIGURES.records_checked += len(expected)
    lost = [p for p, h in expected.items() if landed.get(p) != h]
    FIGURES.records_lost += len(lost)
    assert not lost
    assert landed.keys() == expected.keys()
    assert len(raw) == len(landed) == len(flat) == len(set(flat)) == len(logged) == len(set(logged))
    assert set(flat) == set(logged) == set(landed)


def test_records_without_a_usable_key_are_quarantined_with_their_reason(hostile: Hostile) -> None:
    conn = _conn(hostile)
    try:
        rows = conn.execute(
            "SELECT partition_key, record_key, reason, document FROM _oe_quarantine "
            "WHERE family = 'raw_process_contexts' ORDER BY reason, record_key"
        ).fetchall()
    finally:
        conn.close()
    reasons = sorted(r[2] for r in rows)
    assert reasons == [
        "context is missing or not an object",
        "context.processid is missing or not a non-empty string",
        "context.processid is missing or not a non-empty string",
    ]
    assert {r[0] for r in rows} == {hostile.day.isoformat()}
    documents = [orjson.loads(r[3]) for r in rows]
    for name in ("no_pid", "pid_number", "context_text"):
        assert hostile.docs[name] in documents


def test_a_repeated_id_lands_once_with_its_newest_version(hostile: Hostile) -> None:
    conn = _conn(hostile)
    try:
        for name, want in (("dup_page", hostile.docs["dup_page"]), ("dup_later", hostile.served_newest)):
            pid = hostile.docs[name]["context"]["processid"]
            rows = conn.execute(
                "SELECT document FROM raw_process_contexts WHERE process_id = ?", [pid]
            ).fetchall()
            assert [orjson.loads(r[0]) for r in rows] == [want], name
            assert conn.execute(
                'SELECT count(*) FROM execution_context WHERE "context$processid" = ?', [pid]
            ).fetchone() == (1,)
    finally:
        conn.close()


def test_wrong_types_and_colliding_keys_are_kept(hostile: Hostile) -> None:
    conn = _conn(hostile)
    try:
        wrong = hostile.docs["wrong_types"]["context"]["processid"]
        assert _value(conn, wrong, ["context", "hostile.types", "amount"]) == "12.5 EUR"
        typed = hostile.docs["typed_1"]["context"]["processid"]
        assert _value(conn, typed, ["context", "hostile.types", "amount"]) in ("11.5", 11.5)
        assert _value(conn, wrong, ["context", "hostile.types", "items", "first"]) == 1
        items = quote("execution_context$context&hostile.types$items")
        assert conn.execute(
            f'SELECT list(value ORDER BY _oe_position) FROM {items} WHERE "context$processid" = ?', [typed]
        ).fetchone() == ([1, 2, 3],)
        collide = hostile.docs["collide"]["context"]["processid"]
        names = {}
        for key, value in (("a$b", 1), ("Key", 3), ("key", 4)):
            names[key] = _column(conn, "execution_context", ["context", "hostile.collide", key])
            assert _value(conn, collide, ["context", "hostile.collide", key]) == value
        names["a.b"] = _column(conn, "execution_context", ["context", "hostile.collide", "a", "b"])
        assert _value(conn, collide, ["context", "hostile.collide", "a", "b"]) == 2
        assert len({n.casefold() for n in names.values()}) == 4
        assert sum(n.endswith("~2") for n in names.values()) == 2
    finally:
        conn.close()


def test_hostile_key_names_become_quoted_columns_and_tables(hostile: Hostile) -> None:
    conn = _conn(hostile)
    try:
        pid = hostile.docs["keys"]["context"]["processid"]
        for i, key in enumerate(HOSTILE_KEYS):
            assert _value(conn, pid, ["context", "hostile.keys", key]) == f"value {i}"
        found = conn.execute(
            "SELECT table_name FROM _oe_tables WHERE json_path = ?",
            [orjson.dumps(["context", HOSTILE_ARRAY_KEY]).decode()],
        ).fetchone()
        assert found is not None
        table = str(found[0])
        assert table == f"execution_context$context${HOSTILE_ARRAY_KEY}"
        assert conn.execute(f"SELECT list(v ORDER BY _oe_position) FROM {quote(table)}").fetchone() == (
            [1, 2],
        )
        for survivor in ("execution_context", "event_log", "raw_process_contexts"):
            assert conn.execute(f"SELECT count(*) > 0 FROM {survivor}").fetchone() == (True,)
    finally:
        conn.close()


def test_deep_nesting_huge_arrays_and_a_20_mb_context_are_kept(hostile: Hostile) -> None:
    conn = _conn(hostile)
    try:
        deep = hostile.docs["deep"]["context"]["processid"]
        assert _value(conn, deep, ["context", "hostile.deep", *(["d"] * 100), "leaf"]) == 1
        deepest = conn.execute(
            "SELECT table_name FROM _oe_tables WHERE table_name LIKE 'execution_context$context$hostile.nested%' "
            "ORDER BY length(table_name) DESC LIMIT 1"
        ).fetchone()
        assert deepest is not None
        assert str(deepest[0]).count("$value") == 99  # one child table per level of the 100
        assert conn.execute(f"SELECT value FROM {quote(str(deepest[0]))}").fetchall() == [(1,)]
        big = quote("execution_context$context$hostile.big")
        assert conn.execute(f"SELECT count(*), sum(value) FROM {big}").fetchone() == (
            100_000,
            sum(range(100_000)),
        )
        huge = hostile.docs["twenty_mb"]
        assert len(orjson.dumps(huge)) > 20_000_000
        table = quote("execution_context$context$hostile.huge")
        assert conn.execute(f"SELECT count(*), sum(length(text)) FROM {table}").fetchone() == (
            50_000,
            20_000_000,
        )
        stored = conn.execute(
            "SELECT document FROM raw_process_contexts WHERE process_id = ?", [huge["context"]["processid"]]
        ).fetchone()
        assert stored is not None
        assert doc_hash(orjson.loads(stored[0])) == doc_hash(huge)
    finally:
        conn.close()


def test_timestamps_that_are_not_timestamps_are_kept_as_they_came(hostile: Hostile) -> None:
    conn = _conn(hostile)
    try:
        pid = hostile.docs["times"]["context"]["processid"]
        assert _value(conn, pid, ["context", "hostile.times", "when"]) == "not a timestamp"
        assert _value(conn, pid, ["context", "hostile.times", "never"]) == datetime(1, 1, 1)
        assert _value(conn, pid, ["context", "hostile.times", "maybe"]) == "2023-02-30T00:00:00Z"
        assert conn.execute(
            "SELECT updated_at FROM raw_process_contexts WHERE process_id = ?", [pid]
        ).fetchone() == (datetime(1, 1, 1),)
        assert conn.execute(
            "SELECT last_modified FROM event_log WHERE instance_id = ?", [pid]
        ).fetchone() == (datetime(1, 1, 1),)
    finally:
        conn.close()
    # no day can ask the API for a context whose createdAt is no timestamp; the sensor names it
    from oe_assets_tests.support.reliability_support import api_resource

    with api_resource(hostile.server).open_client() as client:
        result = poll_finished_changes(
            client, [hostile.template], SensorCursor(), default_since=datetime(2020, 1, 1, tzinfo=UTC)
        )
    assert hostile.docs["no_created"]["context"]["processid"] in result.unplaceable


def test_an_updated_at_that_is_no_timestamp_does_not_stop_the_event_log(tmp_path: Path) -> None:
    with new_simulator(310, days=1) as server, dg.DagsterInstance.ephemeral() as instance:
        days = world_days(server)
        bad = copy.deepcopy(server.world.contexts()[0])
        bad["metadata"]["updatedAt"] = "yesterday-ish"
        server.world.put_context(bad)
        defs = light_definitions(resources_for(server, tmp_path / "warehouse.duckdb"))
        results = light_full_load(defs, instance, days)
    assert all(r.success for r in results), failure_text(results[-1])


# ----------------------------------------------------------- flatten, reassemble: losses reported
FAM = TableFamily("t", ("id",), "t_id")
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from(list("ab$&. \"'é\n")), max_size=5),
)
KEYS = st.text(alphabet=st.sampled_from(list('aAbB$&._ "é\n')), max_size=3)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),  # mixed types and empty arrays allowed
        st.dictionaries(KEYS, inner, max_size=4),  # empty objects and null values allowed
    ),
    max_leaves=20,
)


def _empties(value: Any) -> int:
    if isinstance(value, dict):
        return (0 if value else 1) + sum(_empties(v) for v in value.values())
    if isinstance(value, list):
        return (0 if value else 1) + sum(_empties(v) for v in value)
    return 0


def _expected(value: Any, conflicts: set[tuple[Any, ...]], at: tuple[Any, ...] = ()) -> Any:
    """What reassembly can give back, with the reported losses applied.

    Reported: a column with a type conflict holds each value's JSON text; an empty object or array
    (counted in ``stats.empty_objects``/``empty_arrays``) yields nothing, so an array element that
    was empty or null comes back as ``None`` and an object key whose value was null, empty or all
    empty inside is omitted (the raw layer keeps the document verbatim).
    """
    if isinstance(value, dict):
        out = {k: _expected(v, conflicts, (*at, k)) for k, v in value.items()}
        return {k: v for k, v in out.items() if not _is_nothing(v)}
    if isinstance(value, list):
        items = [_expected(v, conflicts, (*at, None)) for v in value]
        return [None if _is_nothing(v) else v for v in items]
    if value is not None and at in conflicts and not isinstance(value, str):
        return _json_text(value)
    return value


def _is_nothing(value: Any) -> bool:
    return value is None or (isinstance(value, dict | list) and not value)


def _conflict_paths(batch: Any) -> set[tuple[Any, ...]]:
    """Document paths (``None`` = any array element) of the columns reported as type conflicts."""
    paths = set()
    for conflict in batch.type_conflicts:
        table_path = batch.table_paths[conflict.table]
        column_path = batch.json_paths[conflict.table][conflict.column]
        elements = (*table_path, None) if table_path else ()
        paths.add((*elements, *column_path))
    return paths


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(KEYS.filter(lambda k: k.casefold() != "id"), JSON, max_size=4), max_size=3))
def test_flatten_then_reassemble_gives_the_document_back_or_reports_the_loss(bodies: list[dict]) -> None:
    """Any JSON (nulls, empty containers, mixed types, colliding keys): back, or the loss reported.

    Complements test_flatten_properties (clean documents only): here the documents carry what that
    test filters out, and the comparison applies exactly the losses the batch reports.
    """
    docs = [{"id": f"d{i}", **body} for i, body in enumerate(bodies)]
    batch = Flattener(FAM).flatten(docs)
    assert not batch.quarantined
    assert batch.stats.empty_objects + batch.stats.empty_arrays == sum(_empties(d) for d in docs)
    conflicts = _conflict_paths(batch)
    got = reassemble(batch)
    want = [_expected(d, conflicts) for d in docs]
    assert got == want
