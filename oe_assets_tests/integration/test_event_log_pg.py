"""The event log on PostgreSQL (`event_log_pg`) against DuckDB's (`event_log`) on the same warehouse:
a whole graph run over the simulator, copied into a fresh PostgreSQL database, the event log dropped
on both and merged again partition by partition on each; and `utc_timestamp_pg` against DuckDB's
`utc_timestamp` and the project's parser on hostile texts."""

from __future__ import annotations

import random
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg
import pytest

from oe_assets.config.secret import Secret
from oe_assets.core.timestamps import parse_oe_timestamp
from oe_assets.definitions import build_definitions
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.process_mining.event_log import merge_event_log_partition
from oe_assets.process_mining.event_log_pg import merge_event_log_partition_pg
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.postgres.connect import PgConnection, PostgresWarehouseError, copy_in
from oe_assets.warehouse.postgres.copy import copy_warehouse
from oe_assets.warehouse.postgres.locks import partition_lock_name
from oe_assets.warehouse.postgres.sql import utc_timestamp_pg
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets.warehouse.sql import ISO_TIMESTAMP, quote_literal, utc_timestamp
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.reliability_support import resources_for

Rows = list[tuple[Any, ...]]


# ------------------------------------------------------------------------------- the warehouses
@pytest.fixture(scope="module")
def pipeline_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole graph run over the simulator's days into a DuckDB file (tests change copies of it)."""
    warehouse = tmp_path_factory.mktemp("event_log_pg") / "oe.duckdb"
    with SimulatorServer(seed=7, days=3, contexts_per_day=25) as oe, dg.DagsterInstance.ephemeral() as runs:
        days = sorted({created_day(c) for c in oe.world.contexts()})
        report = run_whole_graph(
            build_definitions(resources_for(oe, warehouse, page_size=50)), days[0], days[-1], instance=runs
        )
        assert report.success, report.failure
    return warehouse


def fresh_database(pg: PostgresServer, prefix: str) -> str:
    """A new database of its own (the server is shared by every test of the process)."""
    return pg.create_database(f"{prefix}_{uuid.uuid4().hex[:12]}")


def pg_connect(pg: PostgresServer, database: str) -> PgConnection:
    return psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=database, autocommit=True
    )


@dataclass(frozen=True)
class Twin:
    """A copy of the pipeline's DuckDB warehouse and a PostgreSQL database holding the same tables,
    both without event_log (the merges below make it again)."""

    duck: duckdb.DuckDBPyConnection
    pg: PgConnection
    database: str
    days: list[date]

    def merge(self, day: date) -> tuple[dict[str, int], dict[str, int]]:
        return merge_event_log_partition(self.duck, day), merge_event_log_partition_pg(self.pg, day)

    def merge_all(self) -> None:
        for day in self.days:
            on_duckdb, on_postgres = self.merge(day)
            assert on_postgres == on_duckdb, day

    def both(self, sql: str) -> None:
        """The same statement on both warehouses."""
        self.duck.execute(sql)
        self.pg.execute(sql)

    def event_logs(self) -> tuple[Rows, Rows]:
        sql = "SELECT * FROM event_log ORDER BY instance_id"
        return self.duck.execute(sql).fetchall(), self.pg.execute(sql).fetchall()


@pytest.fixture
def make_twin(
    pipeline_warehouse: Path, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[Callable[..., Twin]]:
    """``make_twin(prepare=...)``: ``prepare`` changes the DuckDB copy before PostgreSQL gets it."""
    opened: list[Any] = []

    def make(prepare: Callable[[duckdb.DuckDBPyConnection], None] = lambda _: None) -> Twin:
        path = tmp_path / "oe.duckdb"
        shutil.copy(pipeline_warehouse, path)
        duck = duckdb.connect(str(path))
        opened.append(duck)
        prepare(duck)
        database = fresh_database(postgres_server, "event_log")
        target = PostgresUrl(postgres_server.host, postgres_server.port, postgres_server.user, database,
                             Secret(postgres_server.password))  # fmt: skip
        copy_warehouse(duck, target)
        pg = pg_connect(postgres_server, database)
        opened.append(pg)
        days = [
            d
            for (d,) in duck.execute(
                "SELECT DISTINCT _oe_partition FROM execution_context ORDER BY 1"
            ).fetchall()
        ]
        twin = Twin(duck, pg, database, [d if isinstance(d, date) else date.fromisoformat(d) for d in days])
        twin.both("DROP TABLE event_log")
        return twin

    yield make
    for conn in opened:
        conn.close()


def pipeline_event_log(pipeline_warehouse: Path) -> Rows:
    with duckdb.connect(str(pipeline_warehouse), read_only=True) as conn:
        return conn.execute("SELECT * FROM event_log ORDER BY instance_id").fetchall()


# ------------------------------------------------------------------------- the event log itself
def test_every_partition_merged_on_postgresql_gives_duckdbs_event_log_row_by_row(
    make_twin: Callable[..., Twin], pipeline_warehouse: Path
) -> None:
    twin = make_twin()
    assert len(twin.days) >= 3
    twin.merge_all()
    on_duckdb, on_postgres = twin.event_logs()
    assert on_postgres == on_duckdb
    assert on_postgres == pipeline_event_log(pipeline_warehouse)  # what the pipeline's own runs made
    columns = twin.pg.execute(
        "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns "
        "WHERE table_name = 'event_log' ORDER BY ordinal_position"
    ).fetchall()
    assert columns == [
        ("execution_template_name", "character varying", 256),
        ("instance_id", "character varying", 128),
        ("created_at", "timestamp without time zone", None),
        ("last_modified", "timestamp without time zone", None),
        ("status", "character varying", 64),
        ("_oe_deleted_at", "timestamp without time zone", None),
    ]  # the extractor's DDL, plus the deletion mark
    key = twin.pg.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'event_log'::regclass AND i.indisprimary"
    ).fetchall()
    assert key == [("instance_id",)]
    again = {day: twin.merge(day) for day in twin.days}  # a re-run changes nothing and updates every row
    assert all(pg["inserted"] == 0 and pg == duck for duck, pg in again.values())
    assert twin.event_logs() == (on_duckdb, on_postgres)


def contexts_of(twin: Twin, day: date) -> list[str]:
    rows = twin.duck.execute(
        'SELECT "context$processid" FROM execution_context WHERE CAST(_oe_partition AS DATE) = ? ORDER BY 1',
        [day],
    ).fetchall()
    return [str(pid) for (pid,) in rows]


def test_a_refreshed_day_merges_as_an_update_on_both(make_twin: Callable[..., Twin]) -> None:
    """New status and updatedAt, a deletion mark set, then cleared: always an update, never an insert;
    created_at stays as first merged (the extractor's MERGE does not set it)."""
    twin = make_twin()
    twin.merge_all()
    first, _ = twin.event_logs()
    day = max(twin.days, key=lambda d: len(contexts_of(twin, d)))
    changed, deleted = contexts_of(twin, day)[:2]
    twin.both(
        """UPDATE execution_context SET status = 'refreshed ' || status,
           "metadata$updatedAt" = "metadata$updatedAt" + INTERVAL '90 minutes'"""
        f""" WHERE "context$processid" IN ({quote_literal(changed)}, {quote_literal(deleted)})"""
    )
    twin.both(
        """UPDATE execution_context SET _oe_deleted_at = "metadata$updatedAt" + INTERVAL '1 day'"""
        f""" WHERE "context$processid" = {quote_literal(deleted)}"""
    )
    on_duckdb, on_postgres = twin.merge(day)
    assert on_postgres == on_duckdb
    assert on_postgres == {
        "source_rows": len(contexts_of(twin, day)), "inserted": 0,
        "updated": len(contexts_of(twin, day)), "total": len(first),
    }  # fmt: skip
    refreshed, again = twin.event_logs()
    assert again == refreshed
    assert {row[1] for row in set(refreshed) ^ set(first)} == {changed, deleted}
    source = dict(
        (str(pid), row)
        for pid, *row in twin.pg.execute(
            'SELECT "context$processid", "metadata$updatedAt", status, _oe_deleted_at FROM execution_context'
        ).fetchall()
    )
    before = {row[1]: row for row in first}
    for row in refreshed:
        if row[1] in (changed, deleted):
            assert row[:3] == before[row[1]][:3]  # template, id, created_at
            assert list(row[3:]) == source[row[1]]
    assert next(row for row in refreshed if row[1] == deleted)[5] is not None
    twin.both(
        f"""UPDATE execution_context SET _oe_deleted_at = NULL WHERE "context$processid" = {quote_literal(deleted)}"""
    )
    on_duckdb, on_postgres = twin.merge(day)
    assert on_postgres == on_duckdb
    assert on_postgres["inserted"] == 0
    back, again = twin.event_logs()
    assert back == again
    assert next(row for row in back if row[1] == deleted)[5] is None


# (minutes east of UTC, date-time separator, fraction digits beyond microseconds, how the offset is written)
OFFSET_FORMS = [
    (0, "T", "", "Z"),
    (330, " ", "", "+05:30"),
    (-480, "T", "789", "-0800"),
    (120, "t", "999", "+02"),
    (0, " ", "", ""),
    (-59, "T", "5", "-00:59"),
    (23 * 60 + 59, "T", "", "+23:59"),
]


def as_offset_texts(conn: duckdb.DuckDBPyConnection) -> None:
    """createdAt and updatedAt as ISO-8601 texts of the same instants, each context's in one of
    :data:`OFFSET_FORMS`; _oe_partition as its ISO text."""
    choice = f'hash("context$processid") % {len(OFFSET_FORMS)}'
    for column in ("metadata$createdAt", "metadata$updatedAt"):
        forms = " ".join(
            f"WHEN {i} THEN strftime(\"{column}\" + INTERVAL ({minutes}) MINUTE, '%Y-%m-%d{sep}%H:%M:%S.%f')"
            f" || '{extra}{offset}'"
            for i, (minutes, sep, extra, offset) in enumerate(OFFSET_FORMS)
        )
        conn.execute(
            f'ALTER TABLE execution_context ALTER "{column}" TYPE VARCHAR USING CASE {choice} {forms} END'
        )
    conn.execute("ALTER TABLE execution_context ALTER _oe_partition TYPE VARCHAR")
    used = conn.execute(f"SELECT count(DISTINCT {choice}) FROM execution_context").fetchone()
    assert used == (len(OFFSET_FORMS),)


def test_text_timestamps_with_offsets_and_a_text_partition_give_the_same_utc_instants(
    make_twin: Callable[..., Twin], pipeline_warehouse: Path
) -> None:
    twin = make_twin(as_offset_texts)
    kinds = twin.pg.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'execution_context' "
        "AND column_name IN ('metadata$createdAt', 'metadata$updatedAt', '_oe_partition') ORDER BY 1"
    ).fetchall()
    assert [kind for _, kind in kinds] == ["text", "text", "text"]
    sample = twin.pg.execute(
        'SELECT "metadata$createdAt" FROM execution_context ORDER BY 1 LIMIT 1'
    ).fetchone()
    assert sample is not None
    assert isinstance(sample[0], str)
    twin.merge_all()
    on_duckdb, on_postgres = twin.event_logs()
    assert on_postgres == on_duckdb
    assert on_postgres == pipeline_event_log(pipeline_warehouse)  # the instants the typed columns held


def test_an_empty_warehouse_gives_an_empty_log_and_the_first_landed_day_its_rows(
    postgres_server: PostgresServer,
) -> None:
    """Before anything lands, then with contexts but no templates yet, then both (and no
    _oe_deleted_at column yet: DuckDB adds one, PostgreSQL reads none as not deleted)."""
    database = fresh_database(postgres_server, "event_log_empty")
    day = date(2026, 1, 2)
    with pg_connect(postgres_server, database) as pg, duckdb.connect() as duck:
        twin = Twin(duck, pg, database, [day])
        on_duckdb, on_postgres = twin.merge(day)
        assert on_postgres == on_duckdb
        assert on_postgres["source_rows"] == on_postgres["total"] == 0
        assert twin.event_logs() == ([], [])
        twin.both(
            """CREATE TABLE execution_context ("context$processid" VARCHAR, "context$executionTemplateID" VARCHAR,
               "metadata$createdAt" TIMESTAMP, "metadata$updatedAt" TIMESTAMP, status VARCHAR, _oe_partition DATE)"""
        )
        twin.both(
            "INSERT INTO execution_context VALUES ('P-1', 'T-1', TIMESTAMP '2026-01-02 03:04:05.123456', "
            "TIMESTAMP '2026-01-02 04:00:00', 'running', DATE '2026-01-02')"
        )
        assert twin.merge(day) == (on_duckdb, on_postgres)  # no templates yet: still nothing
        twin.both("CREATE TABLE execution_templates (id VARCHAR, name VARCHAR)")
        twin.both("INSERT INTO execution_templates VALUES ('T-1', 'Spot Buy')")
        on_duckdb, on_postgres = twin.merge(day)
        assert on_postgres == on_duckdb
        assert on_postgres["inserted"] == 1
        on_duckdb_rows, on_postgres_rows = twin.event_logs()
        assert on_postgres_rows == on_duckdb_rows
        columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'event_log' ORDER BY ordinal_position"
        assert pg.execute(columns).fetchall() == duck.execute(columns).fetchall()


def waiting_locks(pg: PostgresServer, database: str) -> int:
    rows = pg.query(
        database,
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE NOT l.granted AND d.datname = %s",
        (database,),
    )
    return int(rows[0][0])


def wait_until(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the merges never got to wait"
        time.sleep(0.05)


@dataclass
class MergeThread:
    """A merge on a connection of its own, in a thread; what it returned or raised."""

    pg: PostgresServer
    database: str
    day: date
    counts: dict[str, int] | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with pg_connect(self.pg, self.database) as conn:
                self.counts = merge_event_log_partition_pg(conn, self.day)
        except BaseException as error:
            self.error = error

    def result(self) -> dict[str, int]:
        self.thread.join(timeout=120)
        assert self.error is None, self.error
        assert self.counts is not None
        return self.counts


@pytest.mark.parametrize("log_exists", [True, False], ids=["log_exists", "first_merges"])
def test_two_concurrent_merges_of_different_days_both_land_with_contexts_that_moved_days(
    make_twin: Callable[..., Twin], postgres_server: PostgresServer, log_exists: bool
) -> None:
    """Both days' sources hold the same contexts (the first day's, moved to the second too). Both
    merges start, then wait while a third transaction holds the templates: when it lets go they
    would insert the same keys at once, without the table lock one failing on the primary key."""
    twin = make_twin()
    first, second, other = twin.days[:3]
    twin.both(
        f"CREATE TEMP TABLE moved AS SELECT * FROM execution_context WHERE _oe_partition = DATE '{first}'"
    )
    twin.both(f"UPDATE moved SET _oe_partition = DATE '{second}'")
    twin.both("INSERT INTO execution_context SELECT * FROM moved")
    if log_exists:
        twin.merge(other)
    blocker = pg_connect(postgres_server, twin.database)
    try:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE execution_templates IN ACCESS EXCLUSIVE MODE")
        merges = [MergeThread(postgres_server, twin.database, day) for day in (first, second)]
        wait_until(lambda: waiting_locks(postgres_server, twin.database) == 2)
        blocker.execute("COMMIT")
        on_postgres = {merge.day: merge.result() for merge in merges}
    finally:
        blocker.close()
    on_duckdb = {day: merge_event_log_partition(twin.duck, day) for day in (first, second)}
    assert sum(c["inserted"] for c in on_postgres.values()) == sum(c["inserted"] for c in on_duckdb.values())
    assert [c["source_rows"] for c in on_postgres.values()] == [c["source_rows"] for c in on_duckdb.values()]
    duck_log, pg_log = twin.event_logs()
    assert pg_log == duck_log
    assert len({row[1] for row in pg_log}) == len(pg_log)
    assert set(contexts_of(twin, first)) <= {row[1] for row in pg_log}


def test_merges_of_the_same_day_wait_for_each_other_and_other_days_do_not(
    make_twin: Callable[..., Twin], postgres_server: PostgresServer
) -> None:
    twin = make_twin()
    day, other = twin.days[:2]
    holder = pg_connect(postgres_server, twin.database)
    try:
        holder.execute("BEGIN")
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"oe_assets.partition.event_log.{day}"]
        )
        assert partition_lock_name("event_log", day.isoformat()) == f"oe_assets.partition.event_log.{day}"
        waiting = MergeThread(postgres_server, twin.database, day)
        wait_until(lambda: waiting_locks(postgres_server, twin.database) == 1)
        merge_event_log_partition_pg(twin.pg, other)  # another day goes ahead
        assert waiting.thread.is_alive()
        assert waiting.counts is None
        holder.execute("COMMIT")
        counts = waiting.result()
    finally:
        holder.close()
    assert counts["source_rows"] == counts["inserted"] == len(contexts_of(twin, day))


def test_a_value_longer_than_the_extractors_column_stops_the_day_in_one_sentence(
    make_twin: Callable[..., Twin],
) -> None:
    """PostgreSQL enforces the extractor's varchar(64) status; DuckDB ignores declared lengths and keeps it."""
    twin = make_twin()
    twin.merge_all()
    _, before = twin.event_logs()
    day = twin.days[0]
    pid = contexts_of(twin, day)[0]
    twin.both(
        f"""UPDATE execution_context SET status = repeat('x', 65) WHERE "context$processid" = {quote_literal(pid)}"""
    )
    with pytest.raises(PostgresWarehouseError) as stopped:
        merge_event_log_partition_pg(twin.pg, day)
    assert str(stopped.value).startswith(
        f"event_log: partition {day} has a value longer than the extractor's column"
    )
    assert str(stopped.value).endswith("nothing of the day was merged")
    assert twin.event_logs()[1] == before
    merge_event_log_partition(twin.duck, day)
    assert twin.duck.execute(
        "SELECT length(status) FROM event_log WHERE instance_id = ?", [pid]
    ).fetchone() == (65,)


def test_inside_a_callers_transaction_it_is_a_savepoint_at_read_committed_only(
    make_twin: Callable[..., Twin],
) -> None:
    twin = make_twin()
    day = twin.days[0]
    with twin.pg.transaction():
        counts = merge_event_log_partition_pg(twin.pg, day)
        assert counts["inserted"] == len(contexts_of(twin, day))
        raise psycopg.Rollback()
    assert twin.pg.execute("SELECT to_regclass('event_log') IS NULL").fetchone() == (
        True,
    )  # rolled back with it

    def merge_at_repeatable_read() -> None:
        with twin.pg.transaction():
            twin.pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            merge_event_log_partition_pg(twin.pg, day)

    with pytest.raises(PostgresWarehouseError, match="caller's transaction is REPEATABLE READ"):
        merge_at_repeatable_read()


# ---------------------------------------------------------------- utc_timestamp_pg, text by text
SQL_GRAMMAR = re.compile(ISO_TIMESTAMP, re.ASCII)
"""The texts utc_timestamp reads; outside it, both SQL readings give NULL."""

HOSTILE_TEXTS = [
    "2025-03-02T01:30:00.322Z", "2025-03-02T01:30:00+02:00", "2025-03-02 01:30:00.123456789+02:00",
    "2025-03-02T01:30:00.1234567-0530", "2025-03-02T01:30:00+02", "2025-03-02t01:30:00z", "2025-03-02 01:30:00",
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00-00:01", "0001-01-01T00:59:00+01:00",
    "0000-01-01T00:00:00Z", "0000-12-31T23:00:00-02:00", "0000-02-29T12:00:00-23:00", "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:00:00-02:00", "9999-12-31T23:59:59.9999999-00:01", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z", "2000-02-29T12:00:00Z", "2025-13-01T00:00:00Z", "2025-00-01T00:00:00Z",
    "2025-01-00T00:00:00Z", "2025-04-31T00:00:00Z", "2025-03-02T24:00:00Z", "2025-03-02T23:60:00Z",
    "2025-03-02T23:59:60Z", "2025-03-02T01:30:00.1234567890Z", "2025-03-02T01:30:00,5Z", "2025-03-02T01:30:00,123456789Z",
    "2025-03-02T01:30:00.000000000Z", "2025-03-02T01:30:00.12345678+02:00", "2025-03-02T01:30:00.Z",
    "2025-03-02T01:30:00.+01", "2025-03-02T01:30:00 Z", "2025-03-02T01:30:00+02:00:30", "2025-03-02T01:30:00+2400",
    "2025-03-02T01:30:00-24:00", "2025-03-02T01:30:00-23:59", "2025-03-02T01:30:00+0", "2025-03-02T01:30:00+02:0",
    "2025-03-02T01:30:00-00", "2025-03-02T01:30:00ZZ", "2025-03-02T01:30:00Z+01", "2025-03-02T01:30:00+01Z",
    "2025-03-02T01:30:00UTC", "2025-03-02T01:30:00Ｚ", "2025-03-02T01:30:00Z\n", "\n2025-03-02T01:30:00Z",
    " 2025-03-02T01:30:00Z", "2025-03-02 01:30:00 ", "2025-03-02T1:30:00Z", "2025-3-2T01:30:00Z", "+2025-03-02T01:30:00Z",
    "2025-03-02_01:30:00Z", "2025-03-02T01:30:00.12a", "2025-03-02T01:30", "2025-03-02", "2025-03-02T01:30:00.١٢٣Z",
    "２０２５-03-02T01:30:00Z", "2025-03-02T01:30:00Z" + "0" * 50, "2025-03-02T01:30:00." + "1" * 40 + "Z",
    "2025-03-02T01:30:00\r\n", "2025-03-02T01:30:00'; SELECT 1; --", '"2025-03-02T01:30:00Z"', "\\N", "",
    "not a timestamp", "ü€ 2025-03-02T01:30:00Z",
]  # fmt: skip

_PARTS = {
    "year": ["0000", "0001", "0099", "1582", "1900", "2000", "2024", "2025", "9999"],
    "month": ["00", "01", "02", "04", "12", "13"],
    "day": ["00", "01", "28", "29", "30", "31", "32"],
    "sep": ["T", "t", " ", "_"],
    "hour": ["00", "09", "23", "24"],
    "minute": ["00", "59", "60"],
    "second": ["00", "59", "60"],
    "fraction": ["", "", ".", ",", ".5", ",123", ".123456", ".1234567", ".123456789", ".1234567890", ".12a"],
    "zone": ["", "Z", "z", "+00:00", "-00", "+05:30", "-0800", "+14", "-23:59", "+23:59", "+24:00", "+02:60",
             "+2", "+02:00:30", " Z", "ZZ", "Ｚ"],
}  # fmt: skip
_NOISE = "0123456789-:Tt .,+Zz\t\n'\"\\٣２é"


def generated_texts(seed: int = 20261207) -> list[str]:
    """Timestamps put together from valid and invalid parts, and each of a thousand of them with
    one character inserted, removed or replaced."""
    rng = random.Random(seed)
    composed = [
        "{year}-{month}-{day}{sep}{hour}:{minute}:{second}{fraction}{zone}".format(
            **{part: rng.choice(choices) for part, choices in _PARTS.items()}
        )
        for _ in range(8000)
    ]
    mutated = []
    for text in rng.sample(composed, 1000):
        at, noise = rng.randrange(len(text)), rng.choice(_NOISE)
        mutated.append(
            rng.choice(
                [
                    text[:at] + noise + text[at:],
                    text[:at] + text[at + 1 :],
                    text[:at] + noise + text[at + 1 :],
                ]
            )
        )
    return composed + mutated


@pytest.fixture(scope="module")
def texts() -> duckdb.DuckDBPyConnection:
    """Every text in a DuckDB table t(i, v), in order."""
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE t AS SELECT * FROM unnest(?::VARCHAR[]) WITH ORDINALITY AS u(v, i)",
        [HOSTILE_TEXTS + generated_texts()],
    )
    return conn


ZONES = ["UTC", "Asia/Kolkata", "America/Los_Angeles"]


@pytest.mark.parametrize("zone", ZONES)
def test_utc_timestamp_pg_reads_every_text_as_duckdb_and_within_the_grammar_as_the_parser(
    texts: duckdb.DuckDBPyConnection, postgres_server: PostgresServer, zone: str
) -> None:
    """Never an error; DuckDB's reading everywhere; the parser's on every text of the grammar (local
    year 0001 or later: DuckDB reads year 0000 as 1 BC, which the parser refuses)."""
    texts.execute(f"SET TimeZone = '{zone}'")
    on_duckdb = texts.execute(f"SELECT v, {utc_timestamp('v')} FROM t ORDER BY i").fetchall()
    database = fresh_database(postgres_server, "texts")
    with pg_connect(postgres_server, database) as pg:
        pg.execute(f"SET TimeZone = '{zone}'")
        pg.execute("CREATE TABLE t (i bigint, v text)")
        copy_in(texts, "SELECT i, v FROM t", pg, "t (i, v)", "texts")
        on_postgres = pg.execute(f"SELECT v, {utc_timestamp_pg('v', 'text')} FROM t ORDER BY i").fetchall()
    assert on_postgres == on_duckdb
    readings = [(str(v), read) for v, read in on_postgres]
    grammar = [(v, read) for v, read in readings if SQL_GRAMMAR.fullmatch(v) and not v.startswith("0000")]
    assert grammar == [(v, parse_oe_timestamp(v)) for v, _ in grammar]
    assert all(read is None for v, read in readings if not SQL_GRAMMAR.fullmatch(v))
    read = sum(r is not None for _, r in grammar)
    assert read > 200, "the texts must hold many timestamps"
    assert len(grammar) - read > 200, "and many impossible ones"


@pytest.mark.parametrize("zone", ZONES)
def test_utc_timestamp_pg_gives_typed_columns_their_utc_instant_as_duckdb(
    texts: duckdb.DuckDBPyConnection, postgres_server: PostgresServer, zone: str
) -> None:
    """timestamp as it is, timestamptz its UTC instant, a date no timestamp, varchar read as text:
    whatever the session's TimeZone."""
    select = (
        f"SELECT i, {utc_timestamp('v')} AS ts, timezone('UTC', {utc_timestamp('v')}) AS tz, "
        f"CAST({utc_timestamp('v')} AS DATE) AS d, v FROM t"
    )
    database = fresh_database(postgres_server, "typed")
    with pg_connect(postgres_server, database) as pg, duckdb.connect() as duck:
        texts.execute("SET TimeZone = 'UTC'")  # the instants travel as UTC texts
        pg.execute("CREATE TABLE typed (i bigint, ts timestamp, tz timestamptz, d date, v varchar)")
        copy_in(texts, select, pg, "typed (i, ts, tz, d, v)", "typed")
        duck.execute(f"SET TimeZone = '{zone}'")
        duck.register("typed", texts.execute(select).arrow())
        on_duckdb = duck.execute(
            f"SELECT {utc_timestamp('ts')}, {utc_timestamp('tz')}, {utc_timestamp('d')}, {utc_timestamp('v')} "
            "FROM typed ORDER BY i"
        ).fetchall()
        pg.execute(f"SET TimeZone = '{zone}'")
        on_postgres = pg.execute(
            f"SELECT {utc_timestamp_pg('ts', 'timestamp without time zone')}, "
            f"{utc_timestamp_pg('tz', 'timestamp with time zone')}, {utc_timestamp_pg('d', 'date')}, "
            f"{utc_timestamp_pg('v', 'character varying')} FROM typed ORDER BY i"
        ).fetchall()
    assert on_postgres == on_duckdb
    assert sum(row[1] is not None for row in on_postgres) > 200
