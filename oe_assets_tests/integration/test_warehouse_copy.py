"""`oe-assets warehouse copy --to postgresql://...` against a real PostgreSQL server: the same rows
table by table, names PostgreSQL can hold, one transaction, idempotent re-runs, copies that wait for
each other, and one sentence without the password for every setting that cannot work."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from oe_assets.definitions import build_definitions
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.warehouse.postgres.copy import CopyReport, WarehouseCopyError, copy_warehouse
from oe_assets.warehouse.postgres.names import MAX_IDENTIFIER_BYTES
from oe_assets.warehouse.postgres.url import PostgresUrl, parse_postgres_url
from oe_assets_tests.support.cli_support import clean_env
from oe_assets_tests.support.helpers import created_day
from oe_assets_tests.support.postgres import PostgresServer
from oe_assets_tests.support.tcp_cut import cutting_proxy
from oe_assets_tests.support.twin import normal

LONG_PREFIX = "execution_context$context&" + "x" * 60  # two tables alike in their first 63 bytes


def url_of(pg: PostgresServer, database: str, *, password: str | None = None) -> str:
    return f"postgresql://{pg.user}:{password or pg.password}@{pg.host}:{pg.port}/{database}"


def copy_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oe_assets.cli", "warehouse", "copy", *args],
        cwd=cwd, env=clean_env(cwd, **env), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def rows_of_duckdb(conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple[Any, ...]]:
    rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
    return sorted((tuple(normal(v) for v in row) for row in rows), key=repr)


def rows_of_postgres(pg: PostgresServer, database: str, table: str, columns: int) -> list[tuple[Any, ...]]:
    rows = pg.query(database, f'SELECT * FROM "{table}"')
    return sorted((tuple(normal(v) for v in row[:columns]) for row in rows), key=repr)


@pytest.fixture
def loaded_warehouse(
    simulator: SimulatorServer,
    resources: dict[str, object],
    warehouse_path: Path,
    instance: dg.DagsterInstance,
) -> Path:
    """The whole graph run over the simulator's days, into a DuckDB file."""
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    assert run_whole_graph(build_definitions(resources), days[0], days[-1], instance=instance).success
    return warehouse_path


def test_every_table_arrives_with_the_same_rows_and_names_postgresql_can_hold(
    loaded_warehouse: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("same_rows")
    target = parse_postgres_url(url_of(postgres_server, database), "--to")
    with duckdb.connect(str(loaded_warehouse), read_only=True) as conn:
        report = copy_warehouse(conn, target)
        tables = [name for (name,) in conn.execute("SHOW TABLES").fetchall()]
        assert sorted(report.rows) == sorted(tables)
        names = dict(postgres_server.query(database, "SELECT table_name, physical_name FROM _oe_tables"))
        for table in tables:
            physical = names.get(table, table)
            assert len(physical.encode()) <= MAX_IDENTIFIER_BYTES
            width = len(conn.execute(f'DESCRIBE "{table}"').fetchall())
            assert rows_of_postgres(postgres_server, database, physical, width) == rows_of_duckdb(
                conn, table
            ), table
    assert report.physical_names, "the simulator's deepest tables have names over 63 bytes"
    assert set(report.physical_names.items()) <= set(names.items())
    raw = postgres_server.query(database, "SELECT * FROM raw_process_contexts LIMIT 1")
    assert raw, "the raw documents arrived"


def hostile_warehouse(path: Path) -> None:
    """Tables no simulator run makes: names alike in their first 63 bytes, and values CSV must keep."""
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE _oe_tables (table_name VARCHAR, family VARCHAR)")
        conn.execute("CREATE TABLE _oe_columns (table_name VARCHAR, column_name VARCHAR)")
        for suffix in ("a", "b"):
            name = f"{LONG_PREFIX}{suffix}"
            conn.execute(f'CREATE TABLE "{name}" ("{"k" * 70}{suffix}" VARCHAR, "{"k" * 70}" DOUBLE)')
            conn.execute("INSERT INTO _oe_tables VALUES (?, 'execution_context')", [name])
        conn.execute(
            f"INSERT INTO \"{LONG_PREFIX}a\" VALUES (NULL, 1.5), ('', 'nan'), ('a\"b,c\nd ü €', 'inf')"
        )
        conn.execute(f"INSERT INTO \"{LONG_PREFIX}b\" VALUES ('\\N', -1e300)")
        conn.execute("CREATE TABLE doc (raw JSON, seen TIMESTAMP, tags VARCHAR[], ok BOOLEAN)")
        conn.execute(
            'INSERT INTO doc VALUES (\'{"b": 1, "a": [1.50, 2e0], "b": 2}\', TIMESTAMP \'2026-01-02 03:04:05.123456\', '
            "['x', NULL], NULL)"
        )


@dataclass(frozen=True)
class HostileCopy:
    """A hostile warehouse, and an empty database of its own to copy it into."""

    warehouse: Path
    database: str
    target: PostgresUrl

    def copy(self) -> CopyReport:
        with duckdb.connect(str(self.warehouse), read_only=True) as conn:
            return copy_warehouse(conn, self.target)


@pytest.fixture
def hostile(tmp_path: Path, postgres_server: PostgresServer, request: pytest.FixtureRequest) -> HostileCopy:
    warehouse = tmp_path / "hostile.duckdb"
    hostile_warehouse(warehouse)
    database = postgres_server.create_database(request.node.name.removeprefix("test_")[:40])
    return HostileCopy(warehouse, database, parse_postgres_url(url_of(postgres_server, database), "--to"))


def test_values_csv_could_confuse_arrive_exactly_and_long_names_do_not_collide(
    hostile: HostileCopy, postgres_server: PostgresServer
) -> None:
    report, database = hostile.copy(), hostile.database
    short_a, short_b = report.physical_names[f"{LONG_PREFIX}a"], report.physical_names[f"{LONG_PREFIX}b"]
    assert short_a != short_b
    assert postgres_server.query(database, f'SELECT * FROM "{short_a}" ORDER BY 2') == [
        (None, 1.5),
        ('a"b,c\nd ü €', math.inf),
        ("", pytest.approx(math.nan, nan_ok=True)),
    ]
    assert postgres_server.query(database, f'SELECT * FROM "{short_b}"') == [("\\N", -1e300)]
    (raw, seen, tags, ok), = postgres_server.query(database, "SELECT raw, CAST(seen AS text), tags, ok FROM doc")  # fmt: skip
    assert raw == '{"b": 1, "a": [1.50, 2e0], "b": 2}'  # the document's text, duplicate key and all
    assert (seen, tags, ok) == ("2026-01-02 03:04:05.123456", '["x",null]', None)
    assert postgres_server.query(database, "SELECT table_name, physical_name FROM _oe_tables ORDER BY 1") == [
        (f"{LONG_PREFIX}a", short_a),
        (f"{LONG_PREFIX}b", short_b),
    ]


def test_a_rerun_replaces_the_copy_and_drops_what_the_warehouse_no_longer_has(
    hostile: HostileCopy, postgres_server: PostgresServer
) -> None:
    first = hostile.copy()
    with duckdb.connect(str(hostile.warehouse)) as conn:
        conn.execute(f'DROP TABLE "{LONG_PREFIX}b"')
        conn.execute("DELETE FROM _oe_tables WHERE table_name LIKE '%b'")
        conn.execute("INSERT INTO doc SELECT * FROM doc")
    second = hostile.copy()
    assert second.dropped == [first.physical_names[f"{LONG_PREFIX}b"]]
    assert postgres_server.query(hostile.database, "SELECT count(*) FROM doc") == [(2,)]
    left = postgres_server.query(
        hostile.database, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    kept = ["_oe_columns", "_oe_tables", "doc", first.physical_names[f"{LONG_PREFIX}a"]]
    assert sorted(name for (name,) in left) == sorted(kept)


def test_a_refused_value_rolls_the_whole_copy_back_and_names_its_table(
    hostile: HostileCopy, postgres_server: PostgresServer
) -> None:
    hostile.copy()
    with duckdb.connect(str(hostile.warehouse)) as conn:
        conn.execute("INSERT INTO doc VALUES ('{}', NULL, NULL, true)")  # arrives, but then ...
        conn.execute("CREATE TABLE zz_last (v VARCHAR)")  # ... PostgreSQL's text holds no NUL
        conn.execute("INSERT INTO zz_last VALUES ('fine'), ('nul:' || chr(0))")
    with pytest.raises(WarehouseCopyError) as refused:
        hostile.copy()
    assert str(refused.value).startswith("zz_last: PostgreSQL refused a value (")
    assert "line 2" in str(refused.value)
    assert postgres_server.query(hostile.database, "SELECT count(*) FROM doc") == [(1,)]  # as before, whole
    assert postgres_server.query(hostile.database, "SELECT to_regclass('zz_last') IS NULL") == [(True,)]


def test_a_connection_lost_mid_copy_leaves_the_previous_copy_and_a_rerun_completes_it(
    hostile: HostileCopy, postgres_server: PostgresServer
) -> None:
    with duckdb.connect(str(hostile.warehouse)) as conn:
        conn.execute("CREATE TABLE big AS SELECT i, repeat('x', 40) AS pad FROM range(200000) t(i)")
    with cutting_proxy(postgres_server.port, cut_after_bytes=2_000_000) as proxy:
        cut = HostileCopy(
            hostile.warehouse, hostile.database, dataclasses.replace(hostile.target, port=proxy.port)
        )
        with pytest.raises(WarehouseCopyError) as lost:
            cut.copy()
    assert proxy.cuts == 1
    assert (
        f"--to postgresql://{postgres_server.user}@127.0.0.1:{proxy.port}/{hostile.database}: the connection was lost ("
        in str(lost.value)
    )
    assert str(lost.value).endswith("nothing of this copy was committed, run it again")
    assert postgres_server.query(hostile.database, "SELECT to_regclass('doc') IS NULL") == [
        (True,)
    ]  # nothing half-made
    report = hostile.copy()
    assert report.rows["big"] == 200_000
    assert postgres_server.query(hostile.database, "SELECT count(*), sum(i) FROM big") == [
        (200_000, sum(range(200_000)))
    ]


def test_two_copies_into_one_schema_wait_for_each_other(
    hostile: HostileCopy, postgres_server: PostgresServer
) -> None:
    """Without the advisory lock, the second transaction's DROP/CREATE collides with the first's."""
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def copy_once() -> None:
        start.wait()
        try:
            hostile.copy()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=copy_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert postgres_server.query(hostile.database, "SELECT count(*) FROM doc") == [(1,)]


def test_each_setting_that_cannot_work_is_one_sentence_without_the_password(
    hostile: HostileCopy, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with postgres_server.connect(hostile.database) as cursor:
        cursor.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw-4711'")
    wrong, server = "wrong-pw-4711", f"{postgres_server.host}:{postgres_server.port}"
    cases = {
        url_of(
            postgres_server, hostile.database, password=wrong
        ): "cannot connect: password authentication failed",
        url_of(postgres_server, "no_such_db"): 'cannot connect: database "no_such_db" does not exist',
        f"postgresql://reader:reader-pw-4711@{server}/{hostile.database}": (
            "user reader lacks a privilege the copy needs: permission denied for"
        ),
        f"postgresql://x:{wrong}@127.0.0.1:1/db": "postgresql://x@127.0.0.1:1/db: cannot connect: Connection refused",
        f"mysql://x:{wrong}@h/db": "--to must start with postgresql:// (it starts with mysql)",
        f"postgresql://{server}/db": "--to names no user",
    }
    for url, sentence in cases.items():
        done = copy_cli(["--to", url, "--warehouse", str(hostile.warehouse)], tmp_path)
        printed = done.stdout + done.stderr
        assert done.returncode in (1, 2), url
        assert sentence in printed.strip().splitlines()[-1], (url, printed)  # one line, the last
        assert "Traceback" not in printed
        for secret in (wrong, "reader-pw-4711", postgres_server.password):
            assert secret not in printed, url


def test_the_password_can_come_from_pgpassword_and_is_printed_nowhere(
    hostile: HostileCopy, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    warehouse, database = hostile.warehouse, hostile.database
    url = f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/{database}"
    done = copy_cli(
        ["--to", url, "--schema", "oe", "--warehouse", str(warehouse)],
        tmp_path,
        PGPASSWORD=postgres_server.password,
    )
    assert done.returncode == 0, done.stderr
    assert f"into schema oe of {url}" in done.stdout
    assert postgres_server.password not in done.stdout + done.stderr
    assert postgres_server.query(database, "SELECT count(*) FROM oe.doc") == [(1,)]
