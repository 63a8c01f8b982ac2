"""The raw landing on PostgreSQL against DuckDB's, through the real client and simulator: each stage
is committed to both, and the two give the same report and the same rows in the three tables; the
API's text byte for byte; a failed commit leaves the previous content; runs of one day wait for
each other (separate processes), runs of different days do not."""

from __future__ import annotations

import copy
import hashlib
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import duckdb
import orjson
import psycopg
import pytest

from oe_assets.client import OeClient
from oe_assets.core.timestamps import parse_oe_timestamp, utc_now
from oe_assets.landing.raw_contexts import (
    QUARANTINE,
    RAW_CONTEXTS,
    STATUS_HISTORY,
    RawLandingReport,
    commit_stage,
    count_raw_documents,
    iter_raw_document_texts,
)
from oe_assets.landing.raw_contexts_pg import (
    commit_stage_pg,
    count_raw_documents_pg,
    day_lock_name,
    ensure_raw_tables_pg,
    iter_raw_document_texts_pg,
    raw_tables_ddl,
)
from oe_assets.landing.stage import ContextStage, stage_process_contexts
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.postgres.connect import PostgresWarehouseError
from oe_assets.warehouse.postgres.locks import DDL_LOCK
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer

TABLES = [RAW_CONTEXTS, STATUS_HISTORY, QUARANTINE]
SPAWN = multiprocessing.get_context("spawn")
WAIT_SECONDS = 60


def connect_kwargs(server: PostgresServer, database: str) -> dict[str, Any]:
    return {
        "host": server.host, "port": server.port, "user": server.user, "password": server.password,
        "dbname": database, "autocommit": True,
    }  # fmt: skip


def new_database(server: PostgresServer, **options: str) -> dict[str, Any]:
    """A fresh database; ``options`` (``LOCALE_PROVIDER`` ...) go into its CREATE DATABASE."""
    name = f"raw_{uuid.uuid4().hex[:12]}"
    with server.connect() as cursor:
        extra = " ".join(f"{key} = '{value}'" for key, value in options.items())
        cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 {extra}')
    return connect_kwargs(server, name)


@dataclass
class Twin:
    """A DuckDB warehouse and a PostgreSQL database that are given the same stages."""

    duck: duckdb.DuckDBPyConnection
    pg: psycopg.Connection[Any]
    client: OeClient
    templates: list[str]

    def commit(self, stage: ContextStage) -> tuple[RawLandingReport, RawLandingReport]:
        loaded = utc_now()
        return commit_stage(self.duck, stage, loaded), commit_stage_pg(self.pg, stage, loaded)

    def land(self, days: Sequence[date]) -> tuple[RawLandingReport, RawLandingReport]:
        """The days read once into a stage, which both commit; the reports are equal."""
        with stage_process_contexts(self.client, self.templates, days) as stage:
            on_duckdb, on_postgres = self.commit(stage)
        assert outcome(on_postgres) == outcome(on_duckdb)
        return on_duckdb, on_postgres

    def assert_same_tables(self) -> None:
        for table in TABLES:
            assert postgres_rows(self.pg, table) == duckdb_rows(self.duck, table), table


def outcome(report: RawLandingReport) -> tuple[object, ...]:
    """What a report says beyond the stage both commits read."""
    return (
        report.rows_per_partition,
        report.retention,
        report.duplicates_merged,
        report.older_versions_ignored,
        report.status_changes,
    )


def _normal(value: object) -> object:
    """Dates and times as ISO texts, whichever driver read them."""
    return value.isoformat() if isinstance(value, datetime | date) else value


def _sorted_rows(
    columns: list[str], rows: Sequence[Sequence[object]]
) -> tuple[list[str], list[tuple[object, ...]]]:
    return columns, sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)


def duckdb_rows(conn: duckdb.DuckDBPyConnection, table: str) -> tuple[list[str], list[tuple[object, ...]]]:
    cursor = conn.execute(f"SELECT * FROM {table}")
    return _sorted_rows([d[0] for d in cursor.description], cursor.fetchall())


def postgres_rows(conn: psycopg.Connection[Any], table: str) -> tuple[list[str], list[tuple[object, ...]]]:
    cursor = conn.execute(f"SELECT * FROM {table}")
    assert cursor.description is not None
    return _sorted_rows([d.name for d in cursor.description], cursor.fetchall())


@pytest.fixture
def twin(
    simulator: SimulatorServer, oe_client: OeClient, postgres_server: PostgresServer, tmp_path: Path
) -> Iterator[Twin]:
    templates = [t["id"] for t in simulator.world.templates()]
    target = new_database(postgres_server)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as duck, psycopg.connect(**target) as pg:
        yield Twin(duck, pg, oe_client, templates)


def all_days(simulator: SimulatorServer) -> list[date]:
    return sorted({created_day(c) for c in simulator.world.contexts()})


def text_of(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def serve_raw(simulator: SimulatorServer, text: bytes, key: str, like: dict[str, Any]) -> None:
    """The API serves ``text`` as one more element, placed (day, template) as ``like`` is."""
    simulator.world.put_raw_context(
        like["context"]["executionTemplateID"], text, process_id=key,
        created_at=like["metadata"]["createdAt"], updated_at=like["metadata"]["updatedAt"],
    )  # fmt: skip


def everything_landed(simulator: SimulatorServer, twin: Twin) -> list[date]:
    """Every day of the simulator landed on both; the days."""
    days = all_days(simulator)
    twin.land(days)
    return days


def postgres_content(twin: Twin) -> dict[str, object]:
    return {table: postgres_rows(twin.pg, table) for table in TABLES}


def older_copy(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as it was earlier (``updatedAt`` its ``createdAt``), with another status."""
    older = copy.deepcopy(doc)
    older["metadata"]["updatedAt"] = older["metadata"]["createdAt"]
    older["status"] = "stopped" if doc["status"] != "stopped" else "failed"
    return older


def change_one_remove_another(simulator: SimulatorServer, day: date) -> tuple[int, dict[str, Any]]:
    """DuckDB's refresh scenario on ``day``: one context's status really changes, another vanishes
    from the API. Returns how many contexts the day had, and the vanished one."""
    contexts = [c for c in simulator.world.contexts() if created_day(c) == day]
    original = next(c for c in contexts if c["status"] != "failed")
    changed = copy.deepcopy(original)
    changed["status"] = "failed"
    gone = next(c for c in contexts if c is not original)
    simulator.world.put_context(changed)
    simulator.world.delete_context(gone["context"]["processid"])
    return len(contexts), gone


def test_a_stage_lands_the_same_rows_and_report_on_duckdb_and_postgresql(
    simulator: SimulatorServer, twin: Twin
) -> None:
    """Duplicates in the answer, unusable elements, a record without a readable updatedAt."""
    contexts = simulator.world.contexts()
    first, second = contexts[0], contexts[1]
    serve_raw(simulator, text_of(older_copy(first)), "a second copy, older", first)
    odd_time = copy.deepcopy(second)
    odd_time["context"]["processid"] += "-odd"
    odd_time["metadata"]["updatedAt"] = "yesterday-ish"
    simulator.world.put_context(odd_time)
    nan = (
        text_of(second)
        .replace(b'"context":{', b'"context":{"v":NaN,')
        .replace(b'"processid":"', b'"processid":"nan-')
    )
    serve_raw(simulator, nan, "nan", second)
    serve_raw(simulator, b"42", "not an object", second)

    on_duckdb, _ = twin.land(all_days(simulator))

    assert on_duckdb.duplicates_merged == 1
    assert on_duckdb.stage.quarantined == 2
    assert on_duckdb.rows == len(contexts) + 1
    twin.assert_same_tables()
    landed = twin.pg.execute(
        f"SELECT document, updated_at FROM {RAW_CONTEXTS} WHERE process_id = ANY(%s) ORDER BY process_id",
        [[first["context"]["processid"], odd_time["context"]["processid"]]],
    ).fetchall()
    assert [orjson.loads(doc) for doc, _ in landed] == [first, odd_time]  # the newest copy won
    assert landed[1][1] is None


def test_a_refresh_marks_and_reports_the_same_on_both(simulator: SimulatorServer, twin: Twin) -> None:
    """DuckDB's refresh scenario: one context of day 0 changes, one vanishes; day 1 is not read."""
    days = everything_landed(simulator, twin)
    landed, gone = change_one_remove_another(simulator, days[0])

    _, on_postgres = twin.land([days[0]])

    assert [(d.landed_before, d.returned_now, d.newly_missing) for d in on_postgres.retention] == [
        (landed, landed - 1, 1)
    ]
    assert on_postgres.status_changes == 1
    twin.assert_same_tables()
    marked = twin.pg.execute(f"SELECT process_id FROM {RAW_CONTEXTS} WHERE deleted_at IS NOT NULL").fetchall()
    assert marked == [(gone["context"]["processid"],)]

    twin.land([days[0]])  # the same again: the mark keeps when it was first missed
    twin.assert_same_tables()
    simulator.world.put_context(gone)  # it comes back: the mark is cleared
    twin.land([days[0]])
    twin.assert_same_tables()
    assert twin.pg.execute(
        f"SELECT count(*) FROM {RAW_CONTEXTS} WHERE deleted_at IS NOT NULL"
    ).fetchone() == (0,)


def test_an_older_version_does_not_overwrite_a_newer_one(simulator: SimulatorServer, twin: Twin) -> None:
    everything_landed(simulator, twin)
    newer = next(
        c for c in simulator.world.contexts() if c["metadata"]["updatedAt"] != c["metadata"]["createdAt"]
    )
    simulator.world.put_context(older_copy(newer))

    _, on_postgres = twin.land([created_day(newer)])

    assert on_postgres.older_versions_ignored == 1
    assert on_postgres.status_changes == 0
    twin.assert_same_tables()
    row = twin.pg.execute(
        f"SELECT document, status FROM {RAW_CONTEXTS} WHERE process_id = %s", [newer["context"]["processid"]]
    ).fetchone()
    assert row is not None
    assert (orjson.loads(row[0]), row[1]) == (newer, newer["status"])


def test_documents_keep_the_apis_exact_text(simulator: SimulatorServer, twin: Twin) -> None:
    """Duplicate keys, an integer beyond 64 bits, escapes, spacing with line breaks and tabs,
    non-ASCII, and what CSV quotes (commas, quotes, backslashes), in a landed record and in a
    quarantined one."""
    base = simulator.world.contexts()[0]
    pid = base["context"]["processid"]
    crafted = text_of(base).replace(
        b'"processid":',
        b'"dup":1,"dup":2,\r\n\t "big":  1180591620717411303424 ,"esc":"\\u00e9\\n\\"q\\"\\\\",'
        + '"raw":"é 日本 😀, \\"a,b\\" \\\\."'.encode()
        + b',"processid":',
    )
    quarantined = b'{"context": {"processid": "odd-1", "v": NaN},\r\n "note": "\xc3\xa9,\\"q\\"\\\\"\n}'
    simulator.world.put_raw_context(
        base["context"]["executionTemplateID"], crafted, process_id=pid,
        created_at=base["metadata"]["createdAt"], updated_at=base["metadata"]["updatedAt"],
    )  # fmt: skip
    serve_raw(simulator, quarantined, "odd-1", base)

    twin.land([created_day(base)])

    twin.assert_same_tables()
    row = twin.pg.execute(
        f"SELECT document, document_sha256 FROM {RAW_CONTEXTS} WHERE process_id = %s", [pid]
    ).fetchone()
    assert row is not None
    assert row[0].encode() == crafted
    assert row[1] == hashlib.sha256(crafted).hexdigest()
    kept = twin.pg.execute(f"SELECT document FROM {QUARANTINE} WHERE record_key = 'odd-1'").fetchall()
    assert [k[0].encode() for k in kept] == [quarantined]


FAIL_AT_QUARANTINE = f"""
CREATE FUNCTION fail_landing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'failed after marking % and writing % history rows',
        (SELECT count(*) FROM {RAW_CONTEXTS} WHERE deleted_at IS NOT NULL),
        (SELECT count(*) FROM {STATUS_HISTORY});
END $$;
CREATE TRIGGER fail_landing BEFORE INSERT ON {QUARANTINE} FOR EACH STATEMENT EXECUTE FUNCTION fail_landing();
"""
"""The commit's last step fails: everything else of it was done in the transaction."""


def test_a_commit_that_fails_at_its_last_step_leaves_the_previous_content(
    simulator: SimulatorServer, twin: Twin
) -> None:
    days = everything_landed(simulator, twin)
    before = postgres_content(twin)
    history_before = twin.pg.execute(f"SELECT count(*) FROM {STATUS_HISTORY}").fetchone()
    assert history_before is not None
    change_one_remove_another(simulator, days[0])
    twin.pg.execute(FAIL_AT_QUARANTINE)

    with stage_process_contexts(twin.client, twin.templates, [days[0]]) as stage:
        with pytest.raises(psycopg.errors.RaiseException, match="failed after marking") as failure:
            commit_stage_pg(twin.pg, stage, utc_now())
        assert f"marking 1 and writing {history_before[0] + 1} history rows" in str(failure.value)
        assert postgres_content(twin) == before
        twin.pg.execute("DROP TRIGGER fail_landing ON _oe_quarantine")
        twin.commit(stage)  # the same stage, once the failure is gone
    twin.assert_same_tables()


def test_a_nul_postgresql_cannot_hold_fails_the_commit_in_one_sentence_and_changes_nothing(
    simulator: SimulatorServer, twin: Twin
) -> None:
    """The one documented difference: DuckDB keeps a quarantined text with a NUL byte."""
    days = everything_landed(simulator, twin)
    before = postgres_content(twin)
    serve_raw(
        simulator, b'{"context": {"processid": "nul"}, "x": "a\x00b"}', "nul", simulator.world.contexts()[0]
    )

    with stage_process_contexts(twin.client, twin.templates, days) as stage:
        commit_stage(twin.duck, stage, utc_now())
        with pytest.raises(
            PostgresWarehouseError, match=r"^_oe_quarantine: PostgreSQL refused a value .*0x00"
        ):
            commit_stage_pg(twin.pg, stage, utc_now())
    assert postgres_content(twin) == before
    assert twin.duck.execute(f"SELECT count(*) FROM {QUARANTINE} WHERE record_key = 'nul'").fetchone() == (1,)


def at_once(
    sessions: list[psycopg.Connection[Any]], work: Callable[[psycopg.Connection[Any]], None]
) -> list[psycopg.Error]:
    """``work`` on every session at the same moment, a thread each; the errors it raised."""
    start, failures = threading.Barrier(len(sessions)), list[psycopg.Error]()

    def run(conn: psycopg.Connection[Any]) -> None:
        start.wait()
        try:
            work(conn)
        except psycopg.Error as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(conn,)) for conn in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    return failures


def test_concurrent_first_runs_create_the_tables_once_and_later_runs_take_no_ddl_lock(
    postgres_server: PostgresServer,
) -> None:
    """Without the DDL lock, most of six sessions fail (a unique violation in pg_type)."""
    raw_tables_ddl()  # made once per process: the sessions race in the server, not here
    for _ in range(3):
        target = new_database(postgres_server)
        sessions = [psycopg.connect(**target) for _ in range(6)]
        failures = at_once(sessions, ensure_raw_tables_pg)
        for conn in sessions:
            conn.close()
        assert failures == []

    # another session holds the DDL lock (advisory locks are per database)
    for database, tables_exist in ((target, True), (new_database(postgres_server), False)):
        with psycopg.connect(**database) as holder, psycopg.connect(**database) as run:
            holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [DDL_LOCK])
            run.execute("SET lock_timeout = '1s'")
            if tables_exist:
                ensure_raw_tables_pg(run)  # no lock, no wait
            else:
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    ensure_raw_tables_pg(run)  # it waits for the DDL lock


def test_the_day_is_counted_and_read_in_chunks_in_duckdbs_order_through_a_server_side_cursor(
    simulator: SimulatorServer, oe_client: OeClient, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """On a database whose collation sorts case and punctuation otherwise than bytes do."""
    base = simulator.world.contexts()[0]
    day = created_day(base)
    odd_ids = ["x-b", "X_a", "xa", "Xb", "x.c"]
    for pid in odd_ids:
        doc = copy.deepcopy(base)
        doc["context"]["processid"] = pid
        simulator.world.put_context(doc)
    target = new_database(postgres_server, LOCALE_PROVIDER="icu", ICU_LOCALE="en", LOCALE="C.UTF-8")
    templates = [t["id"] for t in simulator.world.templates()]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as duck, psycopg.connect(**target) as pg:
        twin = Twin(duck, pg, oe_client, templates)
        twin.land(all_days(simulator))
        by_collation = [
            r[0] for r in pg.execute("SELECT unnest(%s::text[]) ORDER BY 1", [odd_ids]).fetchall()
        ]
        assert by_collation != sorted(odd_ids)  # the database's own order is not DuckDB's

        assert count_raw_documents_pg(pg, [day]) == count_raw_documents(duck, [day]) > 7
        assert count_raw_documents_pg(pg, all_days(simulator)) == count_raw_documents(
            duck, all_days(simulator)
        )
        assert count_raw_documents_pg(pg, []) == 0
        chunks, cursors = [], []
        for chunk in iter_raw_document_texts_pg(pg, day, chunk_size=7):
            chunks.append(chunk)
            cursors.append(
                pg.execute("SELECT count(*) FROM pg_cursors WHERE name LIKE 'oe_raw_documents_%'").fetchone()
            )
        assert chunks == list(iter_raw_document_texts(duck, day, chunk_size=7))
        assert all(len(c) == 7 for c in chunks[:-1])
        assert set(cursors) == {(1,)}
        assert pg.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)


# ---------------------------------------------------------------- runs in separate processes


def commit_in_child(
    target: dict[str, Any], stage: ContextStage, loaded_at: datetime, name: str,
    holding: Event | None = None, release: Event | None = None,
) -> None:  # fmt: skip
    """A separate process commits ``stage``; with ``holding``, it keeps its transaction open
    after the commit until ``release`` is set."""
    with psycopg.connect(**target, application_name=name) as conn, conn.transaction():
        commit_stage_pg(conn, stage, loaded_at)
        if holding is not None and release is not None:
            holding.set()
            release.wait(WAIT_SECONDS)


@dataclass
class Run:
    process: multiprocessing.process.BaseProcess
    holding: Event
    release: Event


def start_run(
    target: dict[str, Any], stage: ContextStage, loaded_at: datetime, name: str, *, hold: bool
) -> Run:
    holding, release = SPAWN.Event(), SPAWN.Event()
    events = (holding, release) if hold else ()
    process = SPAWN.Process(target=commit_in_child, args=(target, stage, loaded_at, name, *events))
    process.start()
    if hold:
        assert holding.wait(WAIT_SECONDS), f"{name} did not commit"
    return Run(process, holding, release)


def lock_waited_for(conn: psycopg.Connection[Any], name: str) -> tuple[object, ...] | None:
    """What the session of ``name`` waits for, once it waits, as ``pg_locks`` shows it: (kind,
    classid, objid); None if it has not waited within a minute."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT l.locktype, l.classid, l.objid FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE a.application_name = %s AND NOT l.granted",
            [name],
        ).fetchone()
        if row:
            return tuple(row)
        time.sleep(0.1)
    return None


def advisory_lock(conn: psycopg.Connection[Any], lock_name: str) -> tuple[object, ...]:
    """How ``pg_locks`` shows the advisory lock ``hashtextextended(lock_name, 0)``: its 64-bit key
    as two halves."""
    row = conn.execute(
        "SELECT 'advisory', oid((k >> 32) & 4294967295), oid(k & 4294967295) FROM hashtextextended(%s, 0) k",
        [lock_name],
    ).fetchone()
    assert row is not None
    return tuple(row)


def finish(*runs: Run) -> list[int | None]:
    for run in runs:
        run.release.set()
    for run in runs:
        run.process.join(WAIT_SECONDS)
    return [run.process.exitcode for run in runs]


@pytest.fixture
def twin_target(twin: Twin, postgres_server: PostgresServer) -> dict[str, Any]:
    """The twin's PostgreSQL database, for other processes."""
    return connect_kwargs(postgres_server, twin.pg.info.dbname)


def test_two_processes_landing_the_same_day_wait_for_each_other_and_land_each_context_once(
    simulator: SimulatorServer, twin: Twin, twin_target: dict[str, Any]
) -> None:
    twin.land(all_days(simulator))  # a refresh: both replace landed rows (and no DDL lock serialises them)
    day = all_days(simulator)[1]
    loaded = [utc_now(), utc_now() + timedelta(seconds=1)]
    with (
        stage_process_contexts(twin.client, twin.templates, [day]) as first,
        stage_process_contexts(twin.client, twin.templates, [day]) as second,
    ):
        holder = start_run(twin_target, first, loaded[0], "land-a", hold=True)
        waiter = start_run(twin_target, second, loaded[1], "land-b", hold=False)
        waited_for = lock_waited_for(twin.pg, "land-b")
        assert finish(holder, waiter) == [0, 0]
        commit_stage(twin.duck, first, loaded[0])  # DuckDB: the same two, one after the other
        commit_stage(twin.duck, second, loaded[1])
    twin.assert_same_tables()
    assert twin.pg.execute(
        f"SELECT count(*), count(DISTINCT process_id) FROM {RAW_CONTEXTS} WHERE partition_date = %s", [day]
    ).fetchone() == (first.staged_rows, first.staged_rows)
    # it waited for the day's lock, before it changed anything
    assert waited_for == advisory_lock(twin.pg, day_lock_name(day))
    assert day_lock_name(day) == f"oe_assets.partition.raw_process_contexts.{day.isoformat()}"


def test_processes_landing_different_days_do_not_wait_for_each_other(
    simulator: SimulatorServer, twin: Twin, twin_target: dict[str, Any]
) -> None:
    days = all_days(simulator)
    loaded = utc_now()
    ensure_raw_tables_pg(twin.pg)  # the very first run holds the DDL lock until it commits
    with (
        stage_process_contexts(twin.client, twin.templates, [days[0]]) as early,
        stage_process_contexts(twin.client, twin.templates, [days[1]]) as late,
    ):
        holder = start_run(twin_target, early, loaded, "land-early", hold=True)
        other = start_run(twin_target, late, loaded, "land-late", hold=False)
        other.process.join(WAIT_SECONDS)
        assert other.process.exitcode == 0  # done while the first still holds its transaction open
        assert twin.pg.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name = 'land-early'"
        ).fetchall() == [("idle in transaction",)]
        landed = dict(
            twin.pg.execute(f"SELECT partition_date, count(*) FROM {RAW_CONTEXTS} GROUP BY 1").fetchall()
        )
        assert landed == {days[1]: late.staged_rows}
        assert finish(holder) == [0]
        commit_stage(twin.duck, late, loaded)
        commit_stage(twin.duck, early, loaded)
    twin.assert_same_tables()


def test_a_context_that_moved_to_another_day_makes_its_run_wait_for_the_day_it_leaves(
    simulator: SimulatorServer, twin: Twin, twin_target: dict[str, Any]
) -> None:
    """The upsert deletes the moved context on the day it leaves: its run holds that day too,
    so the context ends up once, on its new day, and the old day's run is not disturbed."""
    days = everything_landed(simulator, twin)
    mover = next(c for c in simulator.world.contexts() if created_day(c) == days[0])
    loaded = [utc_now(), utc_now() + timedelta(seconds=1)]
    with stage_process_contexts(twin.client, twin.templates, [days[0]]) as old_day:
        moved = copy.deepcopy(mover)
        for key in ("createdAt", "updatedAt"):
            stamp = parse_oe_timestamp(moved["metadata"][key])
            assert stamp is not None
            moved["metadata"][key] = (stamp + (days[1] - days[0])).isoformat(timespec="milliseconds") + "Z"
        simulator.world.put_context(moved)
        with stage_process_contexts(twin.client, twin.templates, [days[1]]) as new_day:
            holder = start_run(twin_target, old_day, loaded[0], "land-old-day", hold=True)
            waiter = start_run(twin_target, new_day, loaded[1], "land-new-day", hold=False)
            waited_for = lock_waited_for(twin.pg, "land-new-day")
            assert finish(holder, waiter) == [0, 0]
            commit_stage(twin.duck, old_day, loaded[0])
            commit_stage(twin.duck, new_day, loaded[1])
    twin.assert_same_tables()
    where = twin.pg.execute(
        f"SELECT partition_date, deleted_at FROM {RAW_CONTEXTS} WHERE process_id = %s",
        [mover["context"]["processid"]],
    ).fetchall()
    assert where == [(days[1], None)]
    # it waited for the lock of the day the context left, before it changed anything
    assert waited_for == advisory_lock(twin.pg, day_lock_name(days[0]))
