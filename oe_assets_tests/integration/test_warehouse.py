"""The warehouse writer on real DuckDB files: transactions, schema evolution, no loss, the Celonis extractor's SQL."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from oe_assets.flatten import CONTEXTS, TEMPLATES, FlatBatch, Flattener, TableFamily
from oe_assets.warehouse import (
    SchemaChange,
    load_registry,
    quote_ident,
    quote_literal,
    replace_all,
    replace_partition,
    transaction,
)
from oe_assets.warehouse.connection import open_warehouse
from oe_assets.warehouse.locking import WarehouseBusyError, exclusive_file_lock, lock_path_for
from oe_assets_tests.support.helpers import EVENT_LOG_SCRIPT
from oe_assets_tests.unit.test_flatten import PID, QUOTES, ROOT, load

FAM = TableFamily("t", ("id",), "t_id")
DAY1, DAY2 = "2023-10-16", "2023-10-17"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(tmp_path / "warehouse.duckdb") as c:
        yield c


def batches(
    conn: duckdb.DuckDBPyConnection, family: TableFamily, day: str | None, *chunks: list[Any]
) -> Iterator[FlatBatch]:
    """Flatten lazily, with the warehouse's registry, one batch per chunk."""
    fl = Flattener(family, load_registry(conn, family))
    consts: dict[str, object] = {"_oe_loaded_at": datetime(2024, 1, 1)}
    if day is not None:
        consts["_oe_partition"] = date.fromisoformat(day)
    for chunk in chunks:
        yield fl.flatten(chunk, constant_columns=consts)


def write(conn: duckdb.DuckDBPyConnection, day: str, *chunks: list[Any], family: TableFamily = FAM):
    return replace_partition(conn, family, day, batches(conn, family, day, *chunks))


def q(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params or []).fetchall()


def col_types(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return dict(q(conn, "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [table]))


def snapshot(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Every table's schema and rows (sorted), for before/after comparisons."""
    out: dict[str, Any] = {}
    for (name,) in q(conn, "SELECT table_name FROM duckdb_tables() ORDER BY table_name"):
        cols = col_types(conn, name)
        data = q(conn, f"SELECT * FROM {quote_ident(name)}")
        out[name] = (cols, sorted(map(repr, data)))
    return out


def ctx(pid: str, **context: Any) -> dict[str, Any]:
    return {
        "metadata": {"createdAt": "2023-10-16T10:00:00.000Z", "updatedAt": "2023-10-16T11:00:00.000Z"},
        "context": {"processid": pid, "executionTemplateID": "T1", **context},
        "status": "finished",
    }


# --------------------------------------------------------------------------- opening
def setting(conn: duckdb.DuckDBPyConnection, name: str) -> str:
    return str(q(conn, f"SELECT current_setting({quote_literal(name)})")[0][0])


def test_a_writer_holds_the_lock_and_the_writers_settings(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    default_limit = setting(duckdb.connect(), "memory_limit")

    def another_writer_waits() -> BaseException | None:
        try:
            with exclusive_file_lock(lock_path_for(database), timeout_seconds=0.2):
                return None
        except WarehouseBusyError as error:
            return error

    with open_warehouse(database) as conn:
        assert setting(conn, "memory_limit") != default_limit  # the writers' 256 MB
        conn.execute("CREATE TABLE x AS SELECT 1 AS v")
        with ThreadPoolExecutor(1) as pool:  # the lock is re-entrant within one thread only
            assert isinstance(pool.submit(another_writer_waits).result(), WarehouseBusyError)
    assert conn_closed(conn)
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(another_writer_waits).result() is None
    with open_warehouse(database, read_only=True) as reader:
        assert q(reader, "SELECT v FROM x") == [(1,)]
        assert setting(reader, "memory_limit") == default_limit
        with ThreadPoolExecutor(1) as pool:  # a reader takes no lock
            assert pool.submit(another_writer_waits).result() is None
    with open_warehouse(":memory:", settings={"memory_limit": "100MB"}) as memory:
        assert setting(memory, "memory_limit") == setting(
            duckdb.connect(config={"memory_limit": "100MB"}), "memory_limit"
        )


def conn_closed(conn: duckdb.DuckDBPyConnection) -> bool:
    try:
        conn.execute("SELECT 1")
    except duckdb.ConnectionException:
        return True
    return False


# ------------------------------------------------------------------------------- sql
def test_quote_ident_and_literal() -> None:
    assert quote_ident("a") == '"a"'
    assert quote_ident('x"; DROP TABLE t; --') == '"x""; DROP TABLE t; --"'
    assert quote_ident("a$b&c.d\ne") == '"a$b&c.d\ne"'
    with pytest.raises(ValueError, match="empty"):
        quote_ident("")
    with pytest.raises(ValueError, match="NUL"):
        quote_ident("a\x00b")
    assert quote_literal("it's") == "'it''s'"


# ----------------------------------------------------------------------- basic writes
def test_sample_context_lands_with_keys_and_bookkeeping(conn: duckdb.DuckDBPyConnection) -> None:
    report = write(conn, DAY1, [load("process_context_spotbuy.json")], family=CONTEXTS)
    assert report.rows_per_table == {
        ROOT: 1,
        "execution_context$context&order.spotbuy.received$forms": 1,
        "execution_context$context&check_stock&result$warehouses": 2,
        QUOTES: 2,
    }
    assert report.new_tables == list(report.rows_per_table)
    assert q(
        conn,
        'SELECT "context$processid", "_oe_row_id", "_oe_parent_row_id", "_oe_position", "quoteId", price, '
        f'"_oe_partition" FROM {quote_ident(QUOTES)} ORDER BY 4',
    ) == [
        (PID, "0", "", 0, "Q-1001", 109.5, date(2023, 10, 16)),
        (PID, "1", "", 1, "Q-1002", 114.0, date(2023, 10, 16)),
    ]
    types = col_types(conn, ROOT)
    assert types["metadata$updatedAt"] == "TIMESTAMP"
    assert types["context$_draft"] == "BOOLEAN"
    assert types["context$celonis_postaction_feedback$stock"] == "BIGINT"
    assert types["_oe_partition"] == "DATE"
    # root key NOT NULL, no PRIMARY KEY constraints on flattened tables
    assert q(
        conn,
        "SELECT is_nullable FROM information_schema.columns "
        f"WHERE table_name = '{ROOT}' AND column_name = 'context$processid'",
    ) == [("NO",)]
    assert q(
        conn,
        "SELECT count(*) FROM duckdb_constraints() "
        "WHERE constraint_type = 'PRIMARY KEY' AND table_name LIKE 'execution_context%'",
    ) == [(0,)]
    assert q(
        conn, "SELECT table_name, family, parent_table, json_path FROM _oe_tables ORDER BY table_name"
    ) == [
        (ROOT, ROOT, None, "[]"),
        (
            "execution_context$context&celonis_postaction_feedback$quotes",
            ROOT,
            ROOT,
            '["context","celonis_postaction_feedback","quotes"]',
        ),
        (
            "execution_context$context&check_stock&result$warehouses",
            ROOT,
            ROOT,
            '["context","check_stock","result","warehouses"]',
        ),
        (
            "execution_context$context&order.spotbuy.received$forms",
            ROOT,
            ROOT,
            '["context","order.spotbuy.received","forms"]',
        ),
    ]
    assert q(
        conn,
        "SELECT json_path, data_type FROM _oe_columns WHERE table_name = ? "
        "AND column_name IN ('quoteId', '_oe_row_id', 'price') ORDER BY column_name",
        [QUOTES],
    ) == [
        (None, "VARCHAR"),
        ('["price"]', "DOUBLE"),
        ('["quoteId"]', "VARCHAR"),
    ]


def test_hostile_keys_land_as_harmless_columns(conn: duckdb.DuckDBPyConnection) -> None:
    evil = 'x"; DROP TABLE execution_context; --'
    keys = [evil, "semi;colon", "new\nline", "$", "&", "a$b", "", "ü🚀", "k" * 300, "'quoted'", "back\\slash"]
    doc: dict[str, Any] = {
        "context": {"processid": "p1", **{k: f"v{i}" for i, k in enumerate(keys)}, "arr": [{evil: 1, "": 2}]}
    }
    write(conn, DAY1, [doc], family=CONTEXTS)
    cols = col_types(conn, ROOT)
    for i, k in enumerate(keys):
        name = "context$" + (k or "(empty)")
        assert name in cols
        assert q(conn, f"SELECT {quote_ident(name)} FROM {quote_ident(ROOT)}") == [(f"v{i}",)]
    child = "execution_context$context$arr"
    assert q(conn, f"SELECT {quote_ident(evil)}, {quote_ident('(empty)')} FROM {quote_ident(child)}") == [
        (1, 2)
    ]
    assert q(conn, "SELECT count(*) FROM execution_context") == [(1,)]  # still there
    # and survives a second write (ALTER paths quote too)
    doc2 = copy.deepcopy(doc)
    doc2["context"]['new;"col'] = 1
    write(conn, DAY2, [doc2 | {"context": doc2["context"] | {"processid": "p2"}}], family=CONTEXTS)
    assert q(conn, f"SELECT count(*), count({quote_ident('context$' + evil)}) FROM {quote_ident(ROOT)}") == [
        (2, 2)
    ]
    assert q(
        conn, f"SELECT {quote_ident('context$new;' + chr(34) + 'col')} FROM {quote_ident(ROOT)} ORDER BY 1"
    ) == [(1,), (None,)]


def test_collisions_keep_both_values(conn: duckdb.DuckDBPyConnection) -> None:
    report = write(
        conn, DAY1, [{"id": "k", "a": {"b": 1}, "a$b": 2, "A.B": 3, "a.b": 4, "Status": "x", "status": "y"}]
    )
    assert q(conn, 'SELECT "a$b", "a$b~2", "A.B", "a.b~2", "Status", "status~2" FROM t') == [
        (1, 2, 3, 4, "x", "y")
    ]
    assert {(c.wanted_name, c.given_name) for c in report.collisions} == {
        ("a$b", "a$b~2"),
        ("a.b", "a.b~2"),
        ("status", "status~2"),
    }
    # a later partition sees the paths in another order: the names stay
    write(conn, DAY2, [{"id": "k2", "status": "z", "a$b": 5, "a.b": 6}])
    assert q(conn, 'SELECT "a$b~2", "a.b~2", "status~2" FROM t WHERE id = ?', ["k2"]) == [(5, 6, "z")]


def test_registry_mismatch_is_refused(conn: duckdb.DuckDBPyConnection) -> None:
    write(conn, DAY1, [{"id": "k", "a": {"b": 1}, "a$b": 2}])
    before = snapshot(conn)
    # a batch flattened WITHOUT the persisted registry may give a$b to the other path
    rogue = Flattener(FAM).flatten(
        [{"id": "k2", "a$b": 3}], constant_columns={"_oe_partition": date(2023, 10, 17)}
    )
    with pytest.raises(ValueError, match="load_registry"):
        replace_partition(conn, FAM, DAY2, [rogue])
    assert snapshot(conn) == before


# --------------------------------------------------------------------------- types
COLS = ("n", "f", "ts", "b", "s")


def test_type_widening_across_partitions(conn: duckdb.DuckDBPyConnection) -> None:
    write(conn, DAY1, [{"id": "1", "n": 1, "f": 1, "ts": "2023-10-16T10:13:42.322Z", "b": True, "s": "a"}])
    assert {k: v for k, v in col_types(conn, "t").items() if k in ["n", "f", "ts", "b", "s"]} == {
        "n": "BIGINT",
        "f": "BIGINT",
        "ts": "TIMESTAMP",
        "b": "BOOLEAN",
        "s": "VARCHAR",
    }
    report = write(conn, DAY2, [{"id": "2", "n": "text", "f": 2.5, "ts": "not a time", "b": 7, "s": 5}])
    assert set(report.schema_changes) == {
        SchemaChange("t", "n", "BIGINT", "VARCHAR"),
        SchemaChange("t", "f", "BIGINT", "DOUBLE"),
        SchemaChange("t", "ts", "TIMESTAMP", "VARCHAR"),
        SchemaChange("t", "b", "BOOLEAN", "VARCHAR"),
    }
    assert {k: v for k, v in col_types(conn, "t").items() if k in ["n", "f", "ts", "b", "s"]} == {
        "n": "VARCHAR",
        "f": "DOUBLE",
        "ts": "VARCHAR",
        "b": "VARCHAR",
        "s": "VARCHAR",
    }
    # old values are still there, as text where the column became text
    assert q(conn, "SELECT id, n, f, ts, b, s FROM t ORDER BY id") == [
        ("1", "1", 1.0, "2023-10-16T10:13:42.322Z", "true", "a"),
        ("2", "text", 2.5, "not a time", "7", "5"),
    ]
    assert q(conn, "SELECT data_type FROM _oe_columns WHERE table_name = 't' AND column_name = 'n'") == [
        ("VARCHAR",)
    ]
    # a narrower batch is cast into the wider column (no change reported)
    report = write(
        conn, "2023-10-18", [{"id": "3", "n": 3, "f": 4, "ts": "2023-10-18T00:00:00Z", "b": False}]
    )
    assert report.schema_changes == []
    assert q(conn, "SELECT n, f, ts, b FROM t WHERE id = '3'") == [
        ("3", 4.0, "2023-10-18T00:00:00.000Z", "false")
    ]


def test_type_conflict_within_a_batch_lands_as_text(conn: duckdb.DuckDBPyConnection) -> None:
    report = write(conn, DAY1, [{"id": "1", "v": True}, {"id": "2", "v": 10}, {"id": "3", "v": "x"}])
    assert [c.column for c in report.type_conflicts] == ["v"]
    assert q(conn, "SELECT id, v FROM t ORDER BY id") == [("1", "true"), ("2", "10"), ("3", "x")]
    # across batches of ONE write: the second batch's type widens the column the first created
    report = write(conn, DAY2, [{"id": "4", "w": 1}], [{"id": "5", "w": "y"}])
    assert report.schema_changes == [SchemaChange("t", "w", "BIGINT", "VARCHAR")]
    assert q(conn, "SELECT id, w FROM t WHERE w IS NOT NULL ORDER BY id") == [("4", "1"), ("5", "y")]


def test_null_only_column_gets_its_type_later(conn: duckdb.DuckDBPyConnection) -> None:
    write(conn, DAY1, [{"id": "1", "later": None}])
    assert col_types(conn, "t")["later"] == "VARCHAR"
    assert q(conn, "SELECT data_type FROM _oe_columns WHERE column_name = 'later'") == [(None,)]
    report = write(conn, DAY2, [{"id": "2", "later": 5}])
    assert report.schema_changes == [SchemaChange("t", "later", "NULL", "BIGINT")]
    assert col_types(conn, "t")["later"] == "BIGINT"
    assert q(conn, "SELECT id, later FROM t ORDER BY id") == [("1", None), ("2", 5)]
    # NULLs in a typed column do not widen it
    report = write(conn, "2023-10-18", [{"id": "3", "later": None}])
    assert report.schema_changes == []
    assert col_types(conn, "t")["later"] == "BIGINT"


# ----------------------------------------------------------------------- evolution
def test_new_event_key_adds_columns_earlier_partitions_read_null(conn: duckdb.DuckDBPyConnection) -> None:
    write(conn, DAY1, [ctx("p1", **{"order.found": {"orderId": "E1"}})], family=CONTEXTS)
    report = write(
        conn,
        DAY2,
        [
            ctx(
                "p2",
                **{
                    "order.found": {"orderId": "E2"},
                    "order.shipped": {"carrier": "DHL", "parcels": [{"id": "X"}]},
                },
            )
        ],
        family=CONTEXTS,
    )
    assert report.new_columns == [(ROOT, "context$order.shipped$carrier")]
    assert report.new_tables == ["execution_context$context&order.shipped$parcels"]
    assert q(
        conn, 'SELECT "context$processid", "context$order.shipped$carrier" FROM execution_context ORDER BY 1'
    ) == [
        ("p1", None),
        ("p2", "DHL"),
    ]


def test_replacing_a_partition_after_arrays_shrank_leaves_no_stale_rows(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    fat = ctx("p1", fb={"quotes": [{"id": 1, "lines": [{"n": 1}, {"n": 2}]}, {"id": 2}]}, tags=["a", "b"])
    other_day = ctx("p9", fb={"quotes": [{"id": 9, "lines": [{"n": 9}]}]}, tags=["z"])
    write(conn, DAY1, [fat], family=CONTEXTS)
    write(conn, DAY2, [other_day], family=CONTEXTS)
    quotes, lines, tags = (
        "execution_context$context&fb$quotes",
        "execution_context$context&fb$quotes$lines",
        "execution_context$context$tags",
    )
    thin = ctx("p1", fb={"quotes": [{"id": 1}]})  # lines and tags gone entirely
    report = write(conn, DAY1, [thin], family=CONTEXTS)
    assert report.deleted_rows == {ROOT: 1, quotes: 2, lines: 2, tags: 2}
    assert q(conn, f'SELECT "context$processid", id FROM {quote_ident(quotes)} ORDER BY 1, 2') == [
        ("p1", 1),
        ("p9", 9),
    ]
    assert q(conn, f'SELECT "context$processid" FROM {quote_ident(lines)}') == [("p9",)]
    assert q(conn, f'SELECT "context$processid", value FROM {quote_ident(tags)}') == [("p9", "z")]


def test_failing_write_leaves_previous_content_intact(conn: duckdb.DuckDBPyConnection) -> None:
    write(conn, DAY1, [ctx("p1", tags=["a"]), ctx("p2")], family=CONTEXTS)
    before = snapshot(conn)

    def exploding() -> Iterator[FlatBatch]:
        gen = batches(
            conn, CONTEXTS, DAY1, [ctx("p3", brand_new={"col": 1}, tags=["x", "y"], more=[1])], [ctx("p4")]
        )
        yield next(gen)  # this one is written: new table, new column, deletes done
        raise RuntimeError("API went away mid-partition")

    with pytest.raises(RuntimeError, match="went away"):
        replace_partition(conn, CONTEXTS, DAY1, exploding())
    assert snapshot(conn) == before  # rows, schema, _oe_tables, _oe_columns, quarantine
    # and the connection is usable again
    write(conn, DAY1, [ctx("p5")], family=CONTEXTS)
    assert q(conn, 'SELECT "context$processid" FROM execution_context') == [("p5",)]


def test_failure_inside_duckdb_rolls_back_too(conn: duckdb.DuckDBPyConnection) -> None:
    write(conn, DAY1, [{"id": "1", "x": 1}])
    before = snapshot(conn)
    good = next(batches(conn, FAM, DAY1, [{"id": "2", "x": 2, "y": "new"}]))
    bad = copy.copy(good)
    bad.tables = dict(good.tables)
    bad.tables["t"] = good.tables["t"].set_column(0, "id", pa.array([None], pa.string()))  # NOT NULL key
    with pytest.raises(duckdb.ConstraintException):
        replace_partition(conn, FAM, DAY1, [good, bad])
    assert snapshot(conn) == before


def test_idempotent(conn: duckdb.DuckDBPyConnection) -> None:
    docs = [load("process_context_spotbuy.json"), ctx("p2", tags=["a", "b"], n={"deep": [[1, 2], [3]]})]
    write(conn, DAY1, docs, family=CONTEXTS)
    first = snapshot(conn)
    first.pop("_oe_tables"), first.pop("_oe_columns")
    report = write(conn, DAY1, docs, family=CONTEXTS)
    assert report.new_tables == []
    assert report.new_columns == []
    assert report.schema_changes == []
    second = snapshot(conn)
    second.pop("_oe_tables"), second.pop("_oe_columns")
    assert second == first


def test_quarantine_and_duplicates(conn: duckdb.DuckDBPyConnection) -> None:
    docs = [ctx("good1"), {"context": {"executionTemplateID": "T1"}}, ctx("good2"), "garbage", ctx("good1")]
    report = write(conn, DAY1, docs, family=CONTEXTS)
    assert report.quarantined == 2
    assert report.duplicates == ["good1"]
    assert q(conn, 'SELECT "context$processid" FROM execution_context ORDER BY 1') == [("good1",), ("good2",)]
    assert q(
        conn, "SELECT family, partition_key, record_key, reason, document FROM _oe_quarantine ORDER BY reason"
    ) == [
        (ROOT, DAY1, None, "context.processid is missing", '{"context":{"executionTemplateID":"T1"}}'),
        (ROOT, DAY1, None, "record is not a JSON object (got string)", '"garbage"'),
    ]
    write(conn, DAY2, ["other day"], family=CONTEXTS)
    write(conn, DAY1, [ctx("good1")], family=CONTEXTS)  # the re-run fixed day 1
    assert q(conn, "SELECT partition_key FROM _oe_quarantine") == [(DAY2,)]


def test_partition_column_is_required_and_checked(conn: duckdb.DuckDBPyConnection) -> None:
    fl = Flattener(FAM)
    with pytest.raises(ValueError, match="constant column '_oe_partition'"):
        replace_partition(conn, FAM, DAY1, [fl.flatten([{"id": "1"}])])
    with pytest.raises(ValueError, match="belongs to partition"):
        replace_partition(
            conn,
            FAM,
            DAY1,
            [fl.flatten([{"id": "1"}], constant_columns={"_oe_partition": date(2023, 10, 17)})],
        )
    assert q(conn, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'") == [(0,)]


def test_replace_all_for_templates(conn: duckdb.DuckDBPyConnection) -> None:
    tpl = load("execution_template_order_splitting.json")
    tpl2 = copy.deepcopy(tpl) | {
        "id": "T2",
        "trigger": [
            {
                "trigger_type": "timer",
                "event_type": "_timer-event",
                "scenario_ids": ["1"],
                "timeExpression": "2025-01-01T00:00:00Z",
            }
        ],
    }
    report = replace_all(conn, TEMPLATES, batches(conn, TEMPLATES, None, [tpl, tpl2]))
    assert report.rows_per_table["execution_templates$trigger"] == 2
    assert q(
        conn,
        'SELECT execution_templates_id, trigger_type, "timeExpression" '
        'FROM "execution_templates$trigger" ORDER BY 1',
    ) == [
        ("01K1DQS3CWHVTCQ9DN14SKXKYN", "webhook", ""),
        ("T2", "timer", "2025-01-01T00:00:00Z"),
    ]
    assert q(conn, 'SELECT value FROM "execution_templates$trigger$scenario_ids"') == [("1",)]
    replace_all(conn, TEMPLATES, batches(conn, TEMPLATES, None, [tpl]))
    assert q(conn, "SELECT id FROM execution_templates") == [("01K1DQS3CWHVTCQ9DN14SKXKYN",)]
    assert q(conn, 'SELECT count(*) FROM "execution_templates$trigger$scenario_ids"') == [(0,)]


def test_big_scalar_array_and_deep_nesting_land(conn: duckdb.DuckDBPyConnection) -> None:
    obj: Any = {"leaf": 1}
    for i in range(100):
        obj = {f"k{i}": obj}
    report = write(conn, DAY1, [{"id": "big", "values": list(range(100_000)), "deep": obj}])
    assert report.rows_per_table["t$values"] == 100_000
    assert q(conn, 'SELECT count(*), sum(value), max("_oe_position") FROM "t$values"') == [
        (100_000, sum(range(100_000)), 99_999)
    ]
    deep = "deep$" + "$".join(f"k{i}" for i in reversed(range(100))) + "$leaf"
    assert q(conn, f"SELECT {quote_ident(deep)} FROM t") == [(1,)]


def test_load_registry_round_trip(conn: duckdb.DuckDBPyConnection) -> None:
    write(conn, DAY1, [{"id": "1", "a": {"b": [1]}, "a$b": [2], "x": {"": 1}}])
    reg = load_registry(conn, FAM)
    assert reg.table_name(("a", "b")) == "t$a$b"
    assert reg.table_name(("a$b",)) == "t$a$b~2"
    assert reg.column_name("t", ("x", "")) == "x$(empty)"
    assert "_oe_row_id" in reg.system_columns("t$a$b")
    assert load_registry(conn, CONTEXTS).tables == []


# -------------------------------------------------------------------- transactions
def test_transaction_commits_rolls_back_and_nests(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE TABLE x (v INTEGER)")
    with transaction(conn):
        conn.execute("INSERT INTO x VALUES (1)")

    def failing() -> None:
        with transaction(conn):
            conn.execute("INSERT INTO x VALUES (2)")
            with transaction(conn):  # joins the outer one
                conn.execute("INSERT INTO x VALUES (3)")
            raise KeyError("no")

    with pytest.raises(KeyError):
        failing()
    assert q(conn, "SELECT v FROM x") == [(1,)]


# ------------------------------------------------------------------ the Celonis extractor's SQL
def test_extractor_event_log_script_runs_unchanged(conn: duckdb.DuckDBPyConnection) -> None:
    spot = load("process_context_spotbuy.json")
    tid = spot["context"]["executionTemplateID"]
    running = copy.deepcopy(spot)
    running["context"]["processid"] = "P-2"
    running["status"] = "running"
    running["metadata"]["createdAt"] = "2023-10-16T12:00:00.000Z"
    running["metadata"]["updatedAt"] = "2023-10-16T12:05:00.000Z"
    orphan = ctx("P-3")  # its template is unknown: no event
    write(conn, DAY1, [spot, running, orphan], family=CONTEXTS)
    tpl = load("execution_template_order_splitting.json")
    spot_tpl = copy.deepcopy(tpl) | {"id": tid, "name": "Spot Buy"}
    replace_all(conn, TEMPLATES, batches(conn, TEMPLATES, None, [tpl, spot_tpl]))

    script = EVENT_LOG_SCRIPT.read_text()
    assert 'SELECT "execution_templates"."name" as "execution_template_name"' in script
    conn.execute(script)
    expected = [
        (
            "Spot Buy",
            PID,
            datetime(2023, 10, 16, 10, 13, 42, 322000),
            datetime(2023, 10, 16, 10, 14, 9, 354000),
            "finished",
        ),
        ("Spot Buy", "P-2", datetime(2023, 10, 16, 12, 0), datetime(2023, 10, 16, 12, 5), "running"),
    ]
    assert q(conn, "SELECT * FROM event_log ORDER BY created_at") == expected

    # the run finishes: a new load of the day, the script again -> MERGE updates the event
    running["status"] = "finished"
    running["metadata"]["updatedAt"] = "2023-10-16T12:30:00.000Z"
    write(conn, DAY1, [spot, running, orphan], family=CONTEXTS)
    conn.execute(script)
    expected[1] = (
        "Spot Buy",
        "P-2",
        datetime(2023, 10, 16, 12, 0),
        datetime(2023, 10, 16, 12, 30),
        "finished",
    )
    assert q(conn, "SELECT * FROM event_log ORDER BY created_at") == expected


def test_table_dropped_by_hand_is_created_anew(conn: duckdb.DuckDBPyConnection) -> None:
    write(conn, DAY1, [{"id": "1", "tags": ["a"], "n": None}])
    conn.execute('DROP TABLE "t$tags"')
    conn.execute("DROP TABLE t")
    report = write(conn, DAY1, [{"id": "1", "tags": ["b"], "n": 3}])
    assert report.new_tables == ["t", "t$tags"]
    assert q(conn, 'SELECT value FROM "t$tags"') == [("b",)]
    assert q(conn, "SELECT data_type FROM _oe_columns WHERE table_name = 't' AND column_name = 'n'") == [
        ("BIGINT",)
    ]
