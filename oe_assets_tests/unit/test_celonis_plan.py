"""Planning a Celonis push against a DuckDB file: what differs from the ledger, the chunks written,
what is recorded once Celonis confirms; and the CELONIS_* settings."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from oe_assets.celonis.errors import CelonisError
from oe_assets.celonis.ledger import confirm, delivered_tables, plan_table
from oe_assets.celonis.schema import MAX_STRING_BYTES, celonis_type
from oe_assets.config import settings

DEST = "https://team.eu-1.celonis.cloud|pool|"


@pytest.fixture
def conn(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect(str(tmp_path / "w.duckdb"))
    db.execute(
        'CREATE TABLE "t$x&y" (id VARCHAR, pos INTEGER, amount DECIMAL(18,3), "at" TIMESTAMPTZ, note VARCHAR, tags VARCHAR[])'
    )
    db.execute(
        """INSERT INTO "t$x&y" VALUES
        ('a', 0, 1.5, '2026-01-01 10:00:00+02', repeat('é', 100), ['p','q']),
        ('a', 1, 2.0, '2026-01-02 00:00:00+00', 'short', NULL),
        ('b', 0, NULL, NULL, NULL, [])"""
    )
    return db


def rows(paths: list[Path]) -> list[dict[str, object]]:
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def test_a_first_push_replaces_the_table_with_every_row_declared_and_converted(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    plan = plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p1")

    assert plan.mode == "REPLACE"
    assert plan.upserts == 3
    assert plan.warehouse_rows == 3
    declared = {c["columnName"]: c for c in plan.job_body()["tableSchema"]["columns"]}  # type: ignore[index]
    assert declared["amount"]["columnType"] == "FLOAT"  # Celonis takes no DECIMAL
    assert declared["at"]["columnType"] == "DATETIME"
    assert declared["note"]["fieldLength"] >= 200  # 100 two-byte characters
    written = {(r["id"], r["pos"]): r for r in rows(plan.upsert_files)}
    assert str(written[("a", 0)]["at"]) == "2026-01-01 08:00:00"  # the instant, in UTC
    assert written[("a", 0)]["tags"] == "[p, q]"
    assert pq.read_schema(plan.upsert_files[0]).field("amount").type == "double"


def test_after_confirmation_only_changed_rows_are_upserted_and_removed_keys_deleted(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    confirm(conn, DEST, plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p1"), "job-1")
    conn.execute("""UPDATE "t$x&y" SET note = 'changed' WHERE id = 'b'""")
    conn.execute("""DELETE FROM "t$x&y" WHERE id = 'a' AND pos = 1""")

    plan = plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p2")

    assert (plan.mode, plan.upserts, plan.deletes) == ("DELTA", 1, 1)
    assert [(r["id"], r["note"]) for r in rows(plan.upsert_files)] == [("b", "changed")]
    assert rows(plan.delete_files) == [{"id": "a", "pos": 1}]
    confirm(conn, DEST, plan, "job-2")
    again = plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p3")
    assert not again.needs_job
    assert delivered_tables(conn, DEST) == {"t$x&y": 2}


def test_an_unconfirmed_push_is_planned_again(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p1")  # pushed, never confirmed

    assert plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p2").mode == "REPLACE"
    assert plan_table(conn, "another pool", "t$x&y", ("id", "pos"), tmp_path / "p3").upserts == 3


def test_a_column_that_changes_type_makes_the_next_push_a_replace(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    confirm(conn, DEST, plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p1"), "job-1")
    conn.execute('ALTER TABLE "t$x&y" ALTER pos TYPE VARCHAR')

    assert plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p2").mode == "REPLACE"


def test_repeated_or_empty_keys_and_oversized_values_are_refused_naming_the_table(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    with pytest.raises(CelonisError, match=r"t\$x&y: primary key .* more than one row"):
        plan_table(conn, DEST, "t$x&y", ("id",), tmp_path / "p1")
    conn.execute("""INSERT INTO "t$x&y" (id, pos) VALUES (NULL, 5)""")
    with pytest.raises(CelonisError, match="empty primary key"):
        plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p2")
    conn.execute("""DELETE FROM "t$x&y" WHERE id IS NULL""")
    conn.execute(f"""UPDATE "t$x&y" SET note = repeat('x', {MAX_STRING_BYTES + 1}) WHERE id = 'b'""")
    with pytest.raises(CelonisError, match=r"t\$x&y, column note: a value is 65,001 bytes"):
        plan_table(conn, DEST, "t$x&y", ("id", "pos"), tmp_path / "p3")


@pytest.mark.parametrize(
    ("duckdb_type", "expected"),
    [
        ("BIGINT", "INTEGER"),
        ("DECIMAL(18,3)", "FLOAT"),
        ("HUGEINT", "FLOAT"),
        ("TIMESTAMP WITH TIME ZONE", "DATETIME"),
        ("TIMESTAMP_NS", "DATETIME"),
        ("BOOLEAN", "BOOLEAN"),
        ("STRUCT(a INTEGER)", "STRING"),
        ("JSON", "STRING"),
    ],
)
def test_column_types(duckdb_type: str, expected: str) -> None:
    assert celonis_type(duckdb_type) == expected


def celonis_env(**more: str) -> dict[str, str]:
    env = {settings.CELONIS_URL: "https://team.eu-1.celonis.cloud/", settings.CELONIS_POOL_ID: "pool"}
    env.update(more)
    return env


def test_settings_read_the_destination_and_which_credential() -> None:
    oauth = settings.CelonisSettings.from_env(celonis_env(CELONIS_CLIENT_ID="id", CELONIS_CLIENT_SECRET="s"))
    assert (oauth.url, oauth.pool_id, oauth.auth, oauth.data_model) == (
        "https://team.eu-1.celonis.cloud",
        "pool",
        "oauth",
        "OE Process Contexts",
    )
    assert settings.CelonisSettings.from_env(celonis_env(CELONIS_APP_KEY="k")).auth == "app_key"
    assert not settings.CelonisSettings.from_env({}).enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (celonis_env(CELONIS_URL="http://celonis.example.com", CELONIS_API_KEY="k"), "plain http"),
        (celonis_env(), "none is set"),
        (celonis_env(CELONIS_API_KEY="k", CELONIS_APP_KEY="k"), "found 2"),
        (celonis_env(CELONIS_CLIENT_ID="id"), "both CELONIS_CLIENT_ID and CELONIS_CLIENT_SECRET"),
        (
            {settings.CELONIS_URL: "https://team.celonis.cloud", settings.CELONIS_API_KEY: "k"},
            "CELONIS_POOL_ID",
        ),
    ],
)
def test_settings_refuse_what_cannot_work_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(settings.SettingsError, match=message):
        settings.CelonisSettings.from_env(env)


def test_plain_http_is_allowed_to_this_machine_only() -> None:
    local = settings.CelonisSettings.from_env(
        celonis_env(CELONIS_URL="http://127.0.0.1:8766", CELONIS_API_KEY="k")
    )
    assert local.enabled
