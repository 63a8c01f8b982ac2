"""What Celonis confirmed, kept in the warehouse, and what a push must send to make the pool equal.

The ledger (:data:`ROWS`) holds, per destination (team URL, pool, connection) and table, the key
and a hash of every row of the last push Celonis finished with DONE. Planning a push compares the
table with it: rows whose key is new or whose hash changed are upserted, keys the table no longer
holds are deleted (a quote removed from a context, an array that shrank). Nothing is recorded
before Celonis says DONE, so a push that fails or is killed is simply planned again; re-sending
an upsert or a delete that already landed changes nothing in Celonis.

A table the ledger does not know yet, or whose columns changed type, is pushed whole with a
REPLACE job, which also clears whatever an earlier, forgotten push left there.

Planning writes the chunks (Parquet, each well under Celonis's 1 GB) and the keys to record into a
folder, so that the warehouse is open only while planning and confirming, never during uploads.

The ledger lives in the warehouse, DuckDB's or PostgreSQL's, written by the same SQL
(:func:`ledger_ddl`, :func:`_execute`): what differs is the column types, the placeholders, and
where :func:`confirm` reads the planned keys from (the Parquet files on DuckDB, temporary tables
they are copied into on PostgreSQL). Planning itself is DuckDB's on both; a PostgreSQL table is
planned in a DuckDB copy (:mod:`oe_assets.celonis.ledger_pg`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

from oe_assets.celonis.errors import CelonisError
from oe_assets.celonis.schema import PARQUET_TYPES, PushColumn, push_columns
from oe_assets.warehouse.postgres.connect import PgConnection, copy_in
from oe_assets.warehouse.postgres.locks import create_missing_tables
from oe_assets.warehouse.postgres.types import postgres_type
from oe_assets.warehouse.reading import scalar_count
from oe_assets.warehouse.sql import quote_ident, quote_literal
from oe_assets.warehouse.writer import transaction

ROWS = "_oe_celonis_rows"
TABLES = "_oe_celonis_tables"
SUBMISSIONS = "_oe_celonis_submissions"
CHUNK_BYTES = "256MB"
"""Parquet chunk size: far below Celonis's 1 GB limit per chunk, few chunks per job."""
_STAGE = "_oe_push_rows"
_CONFIRMED, _DELETED = "confirmed", "deleted"
"""The plan's folders of keys to record (key, hash) and of keys deleted (key)."""

LedgerConnection = duckdb.DuckDBPyConnection | PgConnection
"""The warehouse the ledger is kept in."""


def ledger_ddl(type_of: Callable[[str], str] = str) -> dict[str, str]:
    """Each ledger table's ``CREATE TABLE``, its columns of the DuckDB types ``type_of`` names in
    the warehouse's dialect (PostgreSQL: :func:`~oe_assets.warehouse.postgres.types.postgres_type`,
    the types the warehouse copy gives the same tables)."""
    text, hash_, json_, count, stamp = map(type_of, ("VARCHAR", "UBIGINT", "JSON", "BIGINT", "TIMESTAMP"))
    return {
        # No PRIMARY KEY: its index would cost more than the push itself on millions of rows; confirm()
        # keeps (destination, target, row_key) unique by deleting a key before inserting it again.
        ROWS: f"CREATE TABLE IF NOT EXISTS {ROWS} (destination {text} NOT NULL, target {text} NOT NULL, "
        f"row_key {text} NOT NULL, row_hash {hash_} NOT NULL)",
        TABLES: f"CREATE TABLE IF NOT EXISTS {TABLES} (destination {text} NOT NULL, target {text} NOT NULL, "
        f"columns {json_} NOT NULL, row_count {count} NOT NULL, job_id {text}, confirmed_at {stamp} NOT NULL, "
        "PRIMARY KEY (destination, target))",
        SUBMISSIONS: f"CREATE TABLE IF NOT EXISTS {SUBMISSIONS} (destination {text} NOT NULL, "
        f"target {text} NOT NULL, job_id {text} NOT NULL, submitted_at {stamp} NOT NULL)",
    }


@cache
def _postgres_ddl() -> dict[str, str]:
    """PostgreSQL's ledger, with an index to find a table's keys (PostgreSQL has no zone maps; a
    push reads and deletes one table's keys among every table's)."""
    ddl = ledger_ddl(postgres_type)
    ddl[ROWS] += f"; CREATE INDEX IF NOT EXISTS {ROWS}_key ON {ROWS} (destination, target, row_key)"
    return ddl


def ensure_ledger(conn: LedgerConnection) -> None:
    if isinstance(conn, duckdb.DuckDBPyConnection):
        for statement in ledger_ddl().values():
            conn.execute(statement)
        return
    with conn.transaction():
        create_missing_tables(conn, _postgres_ddl())


def _execute(conn: LedgerConnection, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Runs one of the ledger's statements, SQL both warehouses read with ``?`` placeholders (it
    has no ``?`` nor ``%`` of its own); its rows, none for a statement that returns none."""
    if isinstance(conn, duckdb.DuckDBPyConnection):
        return conn.execute(statement, list(params)).fetchall()
    cursor = conn.execute(statement.replace("?", "%s"), list(params))
    return cursor.fetchall() if cursor.description else []


@contextmanager
def _transaction(conn: LedgerConnection) -> Iterator[None]:
    """One transaction on either warehouse: all of the block's writes, or none."""
    if not isinstance(conn, duckdb.DuckDBPyConnection):
        with conn.transaction():
            yield
        return
    with transaction(conn):
        yield


@dataclass
class TablePlan:
    """One table's push: a REPLACE of every row, or a DELTA of changed rows and deleted keys."""

    target: str
    keys: tuple[str, ...]
    mode: str  # "REPLACE" or "DELTA"
    columns: list[PushColumn]
    folder: Path
    upserts: int = 0
    deletes: int = 0
    warehouse_rows: int = 0
    upsert_files: list[Path] = field(default_factory=list)
    delete_files: list[Path] = field(default_factory=list)

    @property
    def needs_job(self) -> bool:
        return self.mode == "REPLACE" or bool(self.upserts or self.deletes)

    def job_body(self) -> dict[str, object]:
        return {
            "targetName": self.target,
            "type": self.mode,
            "fileType": "PARQUET",
            "keys": list(self.keys),
            "tableSchema": {"tableName": self.target, "columns": [c.declared() for c in self.columns]},
        }


def delivered_tables(conn: LedgerConnection, destination: str) -> dict[str, int]:
    """Tables Celonis confirmed at ``destination``, with the rows the warehouse had then."""
    ensure_ledger(conn)
    rows = _execute(conn, f"SELECT target, row_count FROM {TABLES} WHERE destination = ?", [destination])
    return {str(target): int(count) for target, count in rows}


def plan_table(
    conn: duckdb.DuckDBPyConnection, destination: str, target: str, keys: tuple[str, ...], folder: Path
) -> TablePlan:
    """Compare ``target`` with the ledger and write the chunks of its push into ``folder``."""
    ensure_ledger(conn)
    before = _declared_before(conn, destination, target)
    lengths = {str(c["columnName"]): int(str(c.get("fieldLength") or 0)) for c in before or []}
    columns = push_columns(conn, target, lengths)
    mode = "REPLACE" if before is None or _types_changed(before, columns) else "DELTA"
    plan = TablePlan(target, keys, mode, columns, folder)
    folder.mkdir(parents=True, exist_ok=True)
    _check_null_keys(conn, plan)
    _stage_keys(conn, plan, destination)
    plan.warehouse_rows = scalar_count(conn, f"SELECT count(*) FROM {_STAGE}")
    plan.upserts = scalar_count(conn, f"SELECT count(*) FROM {_STAGE} WHERE __oe_changed")
    if plan.upserts or plan.mode == "REPLACE":
        _write_upserts(conn, plan)
    if plan.mode == "DELTA":
        _plan_deletes(conn, plan, destination)
    conn.execute(f"DROP TABLE IF EXISTS {_STAGE}")
    return plan


def _declared_before(
    conn: duckdb.DuckDBPyConnection, destination: str, target: str
) -> list[dict[str, object]] | None:
    row = conn.execute(
        f"SELECT columns FROM {TABLES} WHERE destination = ? AND target = ?", [destination, target]
    ).fetchone()
    return None if row is None else list(json.loads(row[0]))


def _types_changed(before: list[dict[str, object]], columns: list[PushColumn]) -> bool:
    """A column whose type changed, or that disappeared, cannot be merged into: push the table whole."""
    now = {c.name: c.celonis_type for c in columns}
    return any(now.get(str(c["columnName"])) != c["columnType"] for c in before)


def _key_sql(plan: TablePlan) -> str:
    """A row's key as text: a JSON array of its key columns as they are written to Parquet."""
    by_name = {c.name: c for c in plan.columns}
    missing = [k for k in plan.keys if k not in by_name]
    if missing:
        raise CelonisError(
            f"Table {plan.target} has no column {missing[0]}, part of its primary key: nothing was pushed."
        )
    return "to_json([" + ", ".join(f"CAST({by_name[k].select_sql} AS VARCHAR)" for k in plan.keys) + "])"


def _check_null_keys(conn: duckdb.DuckDBPyConnection, plan: TablePlan) -> None:
    nulls = " OR ".join(f"{quote_ident(k)} IS NULL" for k in plan.keys)
    row = conn.execute(
        f"SELECT {_key_sql(plan)} FROM {quote_ident(plan.target)} WHERE {nulls} LIMIT 1"
    ).fetchone()
    if row is not None:
        raise CelonisError(
            f"Table {plan.target}: a row has an empty primary key ({', '.join(plan.keys)} = {row[0]}); "
            "Celonis could not tell it apart. Nothing of the table was pushed."
        )


def _stage_keys(conn: duckdb.DuckDBPyConnection, plan: TablePlan, destination: str) -> None:
    """Each row's position, key and hash (of the values as written), and whether Celonis lacks it:
    a small table beside the warehouse's, instead of a copy of it."""
    hashed = ", ".join(c.select_sql for c in plan.columns)
    rows = f"SELECT rowid AS __oe_rowid, {_key_sql(plan)} AS __oe_key, hash({hashed}) AS __oe_hash FROM {quote_ident(plan.target)}"
    if plan.mode == "REPLACE":
        query, params = f"SELECT *, true AS __oe_changed FROM ({rows})", []
    else:
        query = (
            f"SELECT s.*, d.row_hash IS DISTINCT FROM s.__oe_hash AS __oe_changed FROM ({rows}) s "
            f"LEFT JOIN {ROWS} d ON d.destination = ? AND d.target = ? AND d.row_key = s.__oe_key"
        )
        params = [destination, plan.target]
    conn.execute(f"DROP TABLE IF EXISTS {_STAGE}")
    conn.execute(f"CREATE TEMP TABLE {_STAGE} AS {query}", params)
    _check_repeated_keys(conn, plan)


def _check_repeated_keys(conn: duckdb.DuckDBPyConnection, plan: TablePlan) -> None:
    """Celonis keeps one row per key: a repeated key would leave the pool unequal."""
    row = conn.execute(
        f"SELECT __oe_key FROM {_STAGE} GROUP BY __oe_key HAVING count(*) > 1 LIMIT 1"
    ).fetchone()
    if row is not None:
        raise CelonisError(
            f"Table {plan.target}: primary key {row[0]} ({', '.join(plan.keys)}) is on more than one row; "
            "Celonis would keep only one. Nothing of the table was pushed."
        )


def _write_upserts(conn: duckdb.DuckDBPyConnection, plan: TablePlan) -> None:
    """The rows to upsert, as Parquet chunks, and their keys and hashes to record once confirmed."""
    selected = ", ".join(f"{c.select_sql} AS {quote_ident(c.name)}" for c in plan.columns)
    source = quote_ident(plan.target)
    if plan.mode == "DELTA":
        source += f" WHERE rowid IN (SELECT __oe_rowid FROM {_STAGE} WHERE __oe_changed)"
    plan.upsert_files = _copy(conn, f"SELECT {selected} FROM {source}", [], plan.folder / "upserts")
    changed = f"SELECT __oe_key, __oe_hash FROM {_STAGE} WHERE __oe_changed"
    _copy(conn, changed, [], plan.folder / _CONFIRMED)


def _plan_deletes(conn: duckdb.DuckDBPyConnection, plan: TablePlan, destination: str) -> None:
    gone = (
        f"SELECT d.row_key FROM {ROWS} d WHERE d.destination = ? AND d.target = ? "
        f"AND NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.__oe_key = d.row_key)"
    )
    plan.deletes = scalar_count(conn, f"SELECT count(*) FROM ({gone})", [destination, plan.target])
    if not plan.deletes:
        return
    by_name = {c.name: c for c in plan.columns}
    keys = ", ".join(
        f"CAST(json_extract_string(row_key, '$[{i}]') AS {PARQUET_TYPES[by_name[k].celonis_type]}) AS {quote_ident(k)}"
        for i, k in enumerate(plan.keys)
    )
    params = [destination, plan.target]
    plan.delete_files = _copy(conn, f"SELECT {keys} FROM ({gone})", params, plan.folder / "deletes")
    _copy(conn, f"SELECT row_key FROM ({gone})", params, plan.folder / _DELETED)


def _copy(conn: duckdb.DuckDBPyConnection, query: str, params: list[str], folder: Path) -> list[Path]:
    conn.execute(
        f"COPY ({query}) TO '{_path(folder)}' (FORMAT parquet, FILE_SIZE_BYTES '{CHUNK_BYTES}', OVERWRITE_OR_IGNORE)",
        params,
    )
    return sorted(folder.glob("*.parquet"))


def _path(folder: Path) -> str:
    return str(folder).replace("'", "''")


def confirm(conn: LedgerConnection, destination: str, plan: TablePlan, job_id: str) -> None:
    """Record a push Celonis finished with DONE, in one transaction (all of it, or nothing)."""
    ensure_ledger(conn)
    params = [destination, plan.target]
    with _transaction(conn):
        planned = _planned_keys(conn, plan.folder)
        if plan.mode == "REPLACE":
            _execute(conn, f"DELETE FROM {ROWS} WHERE destination = ? AND target = ?", params)
        else:
            for part, key in _REPLACED_KEYS:
                if part in planned:
                    _execute(
                        conn,
                        f"DELETE FROM {ROWS} WHERE destination = ? AND target = ? "
                        f"AND row_key IN (SELECT {key} FROM {planned[part]})",
                        params,
                    )
        if _CONFIRMED in planned:
            _execute(
                conn,
                f"INSERT INTO {ROWS} SELECT ?, ?, __oe_key, __oe_hash FROM {planned[_CONFIRMED]}",
                params,
            )
        _record_table(conn, destination, plan, job_id)


_REPLACED_KEYS = ((_DELETED, "row_key"), (_CONFIRMED, "__oe_key"))
"""A DELTA's keys whose ledger rows go: the keys deleted, and the keys about to be recorded anew."""
_PLANNED_COLUMNS = {_CONFIRMED: "__oe_key, __oe_hash", _DELETED: "row_key"}
_PLANNED_TYPES = {
    _CONFIRMED: f"__oe_key {postgres_type('VARCHAR')}, __oe_hash {postgres_type('UBIGINT')}",
    _DELETED: f"row_key {postgres_type('VARCHAR')}",
}
"""The columns of the plan's key files, and their types in PostgreSQL."""


def _planned_keys(conn: LedgerConnection, folder: Path) -> dict[str, str]:
    """Where :func:`confirm` reads each of the plan's key files that exists from: the Parquet files
    on DuckDB; on PostgreSQL, a temporary table they are copied into (dropped at commit)."""
    found = {part: folder / part for part in _PLANNED_COLUMNS if (folder / part).exists()}
    files = {part: f"read_parquet({quote_literal(f'{path}/*.parquet')})" for part, path in found.items()}
    if isinstance(conn, duckdb.DuckDBPyConnection):
        return files
    tables: dict[str, str] = {}
    with duckdb.connect() as reader:
        for part, source in files.items():
            table = f"_oe_push_{part}"
            conn.execute(f"CREATE TEMP TABLE {table} ({_PLANNED_TYPES[part]}) ON COMMIT DROP")
            select = f"SELECT {_PLANNED_COLUMNS[part]} FROM {source}"
            copy_in(reader, select, conn, f"{table} ({_PLANNED_COLUMNS[part]})", f"{ROWS} ({part} keys)")
            tables[part] = table
    return tables


def _record_table(conn: LedgerConnection, destination: str, plan: TablePlan, job_id: str) -> None:
    """The table's declared columns and rows, replacing what an earlier push recorded (a delete and
    an insert: a ledger copied into PostgreSQL has no primary key to upsert on)."""
    columns = json.dumps([c.declared() for c in plan.columns])
    _execute(conn, f"DELETE FROM {TABLES} WHERE destination = ? AND target = ?", [destination, plan.target])
    _execute(
        conn,
        f"INSERT INTO {TABLES} VALUES (?, ?, ?, ?, ?, timezone('UTC', now()))",
        [destination, plan.target, columns, plan.warehouse_rows, job_id],
    )


def record_submissions(conn: LedgerConnection, destination: str, jobs: list[tuple[str, str]]) -> None:
    """Jobs we submitted (target, job id): the hourly budget counts them."""
    ensure_ledger(conn)
    if not jobs:
        return
    values = ", ".join(["(?, ?)"] * len(jobs))
    _execute(
        conn,
        f"INSERT INTO {SUBMISSIONS} SELECT ?, target, job_id, timezone('UTC', now()) "
        f"FROM (VALUES {values}) AS jobs (target, job_id)",
        [destination, *(value for job in jobs for value in job)],
    )


def submitted_this_hour(conn: LedgerConnection, destination: str) -> int:
    """Our submissions since the full UTC hour (Celonis counts 250 per team from the full hour)."""
    ensure_ledger(conn)
    rows = _execute(
        conn,
        f"SELECT count(*) FROM {SUBMISSIONS} WHERE destination = ? "
        "AND submitted_at >= date_trunc('hour', timezone('UTC', now()))",
        [destination],
    )
    return int(rows[0][0])
