"""The catalogs (digital processes, accounts) landed on PostgreSQL against DuckDB's landing: the same
listings give the same reports and the same rows table by table, through a refresh where an entry
vanished and one changed, quarantined elements and the API's exact text; the texts come back in
DuckDB's order whatever the database's collation; a landing waits for another of the same catalog
and changes nothing when it fails; and the raw assets materialized by Dagster on a PostgreSQL
warehouse give the rows of the same run on a DuckDB warehouse."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg
import pytest

from oe_assets.client import Page
from oe_assets.client.pages import parse_page
from oe_assets.core.timestamps import utc_now
from oe_assets.definitions import build_definitions
from oe_assets.defs.oe_raw.assets import stage_directory
from oe_assets.landing.raw_catalog import (
    RAW_ACCOUNTS,
    RAW_TEMPLATES,
    CatalogLandingReport,
    catalog_document_texts,
    land_catalog,
)
from oe_assets.landing.raw_catalog_pg import catalog_document_texts_pg, land_catalog_pg
from oe_assets.landing.raw_contexts import QUARANTINE, RAW_CONTEXTS, STATUS_HISTORY
from oe_assets.orchestration.resources import WarehouseResource
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.postgres.catalog import ensure_bookkeeping
from oe_assets.warehouse.postgres.connect import PostgresWarehouseError
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.twin import connect, differing_tables, postgres_table

CATALOG_TABLES = [RAW_TEMPLATES, RAW_ACCOUNTS, QUARANTINE]

# Texts as an API may write them: spacing, numbers beyond 64 bits, repeated keys, escapes,
# characters beyond the BMP, a line break between tokens; ids whose byte order is not a
# collation's (case, punctuation, accents).
FIRST = {
    "b": '{"id": "b", "tenant": "t1", "name": "Beta", "state": "active"}',
    "B": '{ "id":"B","name":"" , "tenant": 7}',
    "a_1": '{"id": "a_1", "name": "\\u00dcn\\u00efc\\u00f8d\\u00e9 \\ud83d\\ude00 😀", "big": 123456789012345678901234567890, "dup": 1, "dup": 2}',
    "a-2": '{"id": "a-2", "state": "line\\nbreak \\"quoted\\", comma"}',
    "é": '{\n  "id": "é",\n  "name": "accent"\n}',
    "Z": '{"id": "Z", "name": null, "tenant": "t2"}',
}
UNUSABLE = ['{"name": "no id"}', '{"id": 42}', '{"id": ""}', "NaN", "[1, 2]", '"just text"']
SECOND = {
    **{key: text for key, text in FIRST.items() if key != "Z"},  # Z vanished
    "a-2": '{"id": "a-2", "state": "changed",   "extra": [1, 2.50, {"x": null}]}',
    "new": '{"id": "new", "tenant": "t3"}',
}
ACCOUNTS = {"t1": '{"id": "t1", "name": "One"}', "t2": '{"id":"t2","name":"Two"}'}


def listing(*elements: str) -> Page:
    """The page the client makes of a JSON array of these element texts."""
    return parse_page(("[" + ", ".join(elements) + "]").encode())


@dataclass
class Twin:
    """A DuckDB warehouse and a PostgreSQL database given the same listings."""

    duck: duckdb.DuckDBPyConnection
    pg: psycopg.Connection[Any]

    def land(
        self, table: str, page: Page, loaded_at: datetime
    ) -> tuple[CatalogLandingReport, CatalogLandingReport]:
        on_duckdb = land_catalog(self.duck, table, page, loaded_at)
        on_postgres = land_catalog_pg(self.pg, table, page, loaded_at)
        assert on_postgres == on_duckdb
        return on_duckdb, on_postgres

    def assert_same_tables(self) -> None:
        assert differing_tables(self.duck, self.pg, CATALOG_TABLES) == {}


def new_database(server: PostgresServer, options: str = "") -> str:
    name = f"catalog_{uuid.uuid4().hex[:12]}"
    with server.connect() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 {options}')
    return name


@pytest.fixture
def twin(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Twin]:
    """On a database whose collation sorts case, punctuation and accents otherwise than bytes do."""
    database = new_database(postgres_server, "LOCALE_PROVIDER = 'icu' ICU_LOCALE = 'en' LOCALE = 'C.UTF-8'")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as duck, connect(postgres_server, database) as pg:
        with_bookkeeping(pg)
        yield Twin(duck, pg)


def with_bookkeeping(pg: psycopg.Connection[Any]) -> None:
    """The warehouse's catalog of tables (without the raw tables, which it does not list), where
    the comparison of :mod:`~oe_assets_tests.support.twin` looks each table's name up."""
    with pg.transaction():
        ensure_bookkeeping(pg)


def landed_texts(pg: psycopg.Connection[Any], table: str) -> dict[str, str]:
    rows = pg.execute(f"SELECT id, document, document_sha256 FROM {table}").fetchall()
    for _, document, digest in rows:
        assert digest == hashlib.sha256(document.encode()).hexdigest()
    return {key: document for key, document, _ in rows}


def test_listings_and_a_refresh_land_the_same_rows_and_reports_on_both(twin: Twin) -> None:
    first_at = datetime(2025, 3, 1, 12, 0, 0, 123456)
    second_at = first_at + timedelta(hours=1, microseconds=7)
    assert (
        catalog_document_texts_pg(twin.pg, RAW_TEMPLATES)
        == catalog_document_texts(twin.duck, RAW_TEMPLATES)
        == []
    )

    # b listed twice: the last version wins
    first, _ = twin.land(RAW_TEMPLATES, listing('{"id": "b"}', *FIRST.values(), *UNUSABLE), first_at)
    twin.land(RAW_ACCOUNTS, listing(*ACCOUNTS.values(), '{"no": "id"}'), first_at)
    assert (first.rows_in_api, first.rows_total, first.no_longer_in_api) == (len(FIRST), len(FIRST), 0)
    assert len(first.quarantined) == len(UNUSABLE)
    twin.assert_same_tables()
    assert landed_texts(twin.pg, RAW_TEMPLATES) == FIRST

    second, _ = twin.land(RAW_TEMPLATES, listing(*SECOND.values(), '{"name": "still no id"}'), second_at)
    assert (second.rows_total, second.no_longer_in_api) == (len(FIRST) + 1, 1)
    twin.assert_same_tables()
    assert landed_texts(twin.pg, RAW_TEMPLATES) == {**FIRST, **SECOND}
    rows = {r[0]: r[1:] for r in twin.pg.execute(
        f"SELECT id, present_in_api, first_seen_at, last_seen_at FROM {RAW_TEMPLATES}"
    ).fetchall()}  # fmt: skip
    assert rows["Z"] == (False, first_at, first_at)
    assert rows["a-2"] == (True, first_at, second_at)
    assert rows["new"] == (True, second_at, second_at)
    quarantined = twin.pg.execute(f"SELECT family, document FROM {QUARANTINE} ORDER BY family").fetchall()
    assert quarantined == [(RAW_ACCOUNTS, '{"no": "id"}'), (RAW_TEMPLATES, '{"name": "still no id"}')]

    # the API lists nothing: every row kept, marked; the catalog's quarantine emptied
    empty, _ = twin.land(RAW_TEMPLATES, listing(), second_at + timedelta(hours=1))
    assert (empty.rows_in_api, empty.no_longer_in_api) == (0, empty.rows_total)
    twin.assert_same_tables()


def test_the_texts_come_back_in_duckdbs_order_whatever_the_databases_collation(twin: Twin) -> None:
    twin.land(RAW_TEMPLATES, listing(*FIRST.values()), utc_now())
    by_collation = [r[0] for r in twin.pg.execute(f"SELECT id FROM {RAW_TEMPLATES} ORDER BY id").fetchall()]
    assert by_collation != sorted(FIRST)  # the database's own order is not DuckDB's

    texts = catalog_document_texts_pg(twin.pg, RAW_TEMPLATES)
    assert texts == catalog_document_texts(twin.duck, RAW_TEMPLATES)
    assert texts == [FIRST[key] for key in sorted(FIRST, key=str.encode)]


@pytest.mark.parametrize(
    ("body", "refused_by"),
    [
        (b'[{"id": "n", "name": "a\\u0000b"}]', RAW_TEMPLATES),
        (b'[{"id": "n"}, "a\x00b"]', QUARANTINE),
    ],
    ids=["escaped NUL in a column", "NUL byte in a quarantined text"],
)
def test_a_nul_postgresql_cannot_hold_fails_the_landing_in_one_sentence_and_changes_nothing(
    twin: Twin, body: bytes, refused_by: str
) -> None:
    """The documented difference: DuckDB lands it."""
    twin.land(RAW_ACCOUNTS, listing(*ACCOUNTS.values(), UNUSABLE[0]), utc_now())
    twin.land(RAW_TEMPLATES, listing(*FIRST.values(), UNUSABLE[0]), utc_now())
    before = {table: postgres_table(twin.pg, table) for table in CATALOG_TABLES}

    land_catalog(twin.duck, RAW_TEMPLATES, parse_page(body), utc_now())
    with pytest.raises(PostgresWarehouseError, match=rf"^{refused_by}: PostgreSQL refused a value .*0x00"):
        land_catalog_pg(twin.pg, RAW_TEMPLATES, parse_page(body), utc_now())
    assert {table: postgres_table(twin.pg, table) for table in CATALOG_TABLES} == before
    assert twin.duck.execute(f"SELECT count(*) FROM {RAW_TEMPLATES} WHERE present_in_api").fetchone() == (1,)


def test_a_landing_that_fails_at_its_last_step_leaves_the_previous_content(twin: Twin) -> None:
    first_at = utc_now()
    twin.land(RAW_ACCOUNTS, listing(*ACCOUNTS.values(), UNUSABLE[0]), first_at)
    twin.land(RAW_TEMPLATES, listing(*FIRST.values()), first_at)
    before = {table: postgres_table(twin.pg, table) for table in CATALOG_TABLES}
    twin.pg.execute(
        """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'quarantine refused'; END $$;
           CREATE TRIGGER refuse BEFORE INSERT ON _oe_quarantine FOR EACH ROW EXECUTE FUNCTION refuse()"""
    )
    refresh = listing(*SECOND.values(), *UNUSABLE)

    with pytest.raises(psycopg.errors.RaiseException, match="quarantine refused"):
        land_catalog_pg(twin.pg, RAW_TEMPLATES, refresh, first_at + timedelta(hours=1))
    assert {table: postgres_table(twin.pg, table) for table in CATALOG_TABLES} == before
    twin.pg.execute("DROP TRIGGER refuse ON _oe_quarantine")
    twin.land(RAW_TEMPLATES, refresh, first_at + timedelta(hours=1))
    twin.assert_same_tables()


def _in_thread(work: Callable[[], CatalogLandingReport]) -> tuple[threading.Thread, list[Any]]:
    """``work`` started in a thread; the list gets its report or its exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _waits_on_a_lock(pg: psycopg.Connection[Any], backend: int) -> bool:
    row = pg.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone()
    return row is not None and row[0] == "Lock"


def test_two_landings_of_one_catalog_wait_for_each_other_and_another_catalog_does_not(
    postgres_server: PostgresServer,
) -> None:
    """A landing is held inside its transaction (a table lock); a second landing of the catalog
    waits for the first to commit, then lands on its rows; the accounts land meanwhile."""
    database = postgres_server.create_database(f"catalog_{uuid.uuid4().hex[:12]}")
    sessions = [connect(postgres_server, database) for _ in range(4)]
    blocker, first, second, observer = sessions
    start = datetime(2025, 3, 1, 12)
    try:
        land_catalog_pg(observer, RAW_TEMPLATES, listing(FIRST["b"]), start)
        with blocker.transaction():
            blocker.execute(f"LOCK TABLE {RAW_TEMPLATES} IN ACCESS EXCLUSIVE MODE")
            one, one_done = _in_thread(
                lambda: land_catalog_pg(
                    first, RAW_TEMPLATES, listing(FIRST["b"], FIRST["Z"]), start + timedelta(1)
                )
            )
            deadline = time.monotonic() + 30
            while not _waits_on_a_lock(observer, first.info.backend_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            two, two_done = _in_thread(
                lambda: land_catalog_pg(
                    second, RAW_TEMPLATES, listing(FIRST["Z"], FIRST["B"]), start + timedelta(2)
                )
            )
            accounts = land_catalog_pg(observer, RAW_ACCOUNTS, listing(*ACCOUNTS.values()), start)
            time.sleep(0.5)
            assert one.is_alive()
            assert two.is_alive()
            assert not _waits_on_a_lock(observer, second.info.backend_pid)  # it waits for the first's lock
        one.join(30)
        two.join(30)
    finally:
        for session in sessions:
            session.close()
    assert accounts.rows_total == len(ACCOUNTS)
    assert isinstance(one_done[0], CatalogLandingReport), one_done
    assert isinstance(two_done[0], CatalogLandingReport), two_done
    assert (two_done[0].rows_total, two_done[0].no_longer_in_api) == (3, 1)  # it saw the first's Z
    with connect(postgres_server, database) as pg:
        seen = pg.execute(
            f"SELECT id, present_in_api, first_seen_at FROM {RAW_TEMPLATES} ORDER BY id"
        ).fetchall()
    assert seen == [("B", True, start + timedelta(2)), ("Z", True, start + timedelta(1)), ("b", False, start)]


# ------------------------------------------------------------------------------- through Dagster
RAW_TABLES = [RAW_TEMPLATES, RAW_ACCOUNTS, RAW_CONTEXTS, STATUS_HISTORY, QUARANTINE]
COMPARED_METADATA = (
    "dagster/row_count", "listed_by_api", "no_longer_in_api", "quarantined", "api_pages", "duplicates_merged",
    "older_versions_ignored", "status_changes_observed", "newly_missing", "rows_per_partition",
    "retention_per_partition",
)  # fmt: skip


def _materialize(
    resources: dict[str, Any], instance: dg.DagsterInstance, day: str
) -> dict[str, dict[str, Any]]:
    """The two catalogs, then one day of the contexts; what each asset reported (comparable part)."""
    defs = build_definitions(resources)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    runs = [
        dg.materialize(
            assets, selection=[RAW_TEMPLATES, RAW_ACCOUNTS], resources=defs.resources, instance=instance
        ),
        dg.materialize(
            assets, selection=[RAW_CONTEXTS], partition_key=day, resources=defs.resources, instance=instance
        ),
    ]
    reported: dict[str, dict[str, Any]] = {}
    for run in runs:
        assert run.success
        for event in run.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            metadata = materialization.metadata
            schema = metadata["dagster/column_schema"].value
            assert isinstance(schema, dg.TableSchema)
            reported[materialization.asset_key.to_user_string()] = {
                "columns": [c.name for c in schema.columns],
                **{key: metadata[key].value for key in COMPARED_METADATA if key in metadata},
            }
    return reported


def test_the_raw_assets_on_a_postgresql_warehouse_give_a_duckdb_warehouses_rows(
    simulator: SimulatorServer,
    resources: dict[str, Any],
    warehouse_path: Path,
    postgres_server: PostgresServer,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    now = utc_now()  # both runs land at the same time, so that every column can be compared
    monkeypatch.setattr("oe_assets.defs.oe_raw.assets.utc_now", lambda: now)
    database = postgres_server.create_database(f"catalog_{uuid.uuid4().hex[:12]}")
    on_postgres = {
        **resources,
        "warehouse": WarehouseResource(
            database=f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/{database}",
            postgres_password=postgres_server.password,
            export_dir=str(tmp_path / "exports"),
        ),
    }
    assert stage_directory(on_postgres["warehouse"]) == tmp_path.resolve()
    day = min(created_day(c) for c in simulator.world.contexts()).isoformat()

    reported_by_duckdb = _materialize(resources, instance, day)
    reported_by_postgres = _materialize(on_postgres, instance, day)
    assert reported_by_postgres == reported_by_duckdb
    assert reported_by_postgres[RAW_CONTEXTS]["dagster/row_count"] > 0

    # the digital process deleted, and the catalogs refreshed: kept, marked, on both
    simulator.world.delete_template(simulator.world.templates()[0]["id"])
    assert _materialize(on_postgres, instance, day) == _materialize(resources, instance, day)
    with (
        duckdb.connect(str(warehouse_path), read_only=True) as duck,
        connect(postgres_server, database) as pg,
    ):
        with_bookkeeping(pg)
        assert differing_tables(duck, pg, RAW_TABLES) == {}
        assert pg.execute(f"SELECT count(*) FROM {RAW_TEMPLATES} WHERE NOT present_in_api").fetchone() == (1,)
        assert pg.execute(f"SELECT DISTINCT loaded_at FROM {RAW_CONTEXTS}").fetchall() == [(now,)]
