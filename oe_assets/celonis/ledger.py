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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from oe_assets.celonis.errors import CelonisError
from oe_assets.celonis.schema import PARQUET_TYPES, PushColumn, push_columns
from oe_assets.warehouse.reading import scalar_count
from oe_assets.warehouse.sql import quote_ident

ROWS = "_oe_celonis_rows"
TABLES = "_oe_celonis_tables"
SUBMISSIONS = "_oe_celonis_submissions"
CHUNK_BYTES = "256MB"
"""Parquet chunk size: far below Celonis's 1 GB limit per chunk, few chunks per job."""
_STAGE = "_oe_push_rows"
_LEDGER_DDL = (
    # No PRIMARY KEY: its index would cost more than the push itself on millions of rows; confirm()
    # keeps (destination, target, row_key) unique by deleting a key before inserting it again.
    f"CREATE TABLE IF NOT EXISTS {ROWS} (destination VARCHAR NOT NULL, target VARCHAR NOT NULL, "
    "row_key VARCHAR NOT NULL, row_hash UBIGINT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {TABLES} (destination VARCHAR NOT NULL, target VARCHAR NOT NULL, "
    "columns JSON NOT NULL, row_count BIGINT NOT NULL, job_id VARCHAR, confirmed_at TIMESTAMP NOT NULL, "
    "PRIMARY KEY (destination, target))",
    f"CREATE TABLE IF NOT EXISTS {SUBMISSIONS} (destination VARCHAR NOT NULL, target VARCHAR NOT NULL, "
    "job_id VARCHAR NOT NULL, submitted_at TIMESTAMP NOT NULL)",
)


def ensure_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    for statement in _LEDGER_DDL:
        conn.execute(statement)


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


def delivered_tables(conn: duckdb.DuckDBPyConnection, destination: str) -> dict[str, int]:
    """Tables Celonis confirmed at ``destination``, with the rows the warehouse had then."""
    ensure_ledger(conn)
    rows = conn.execute(
        f"SELECT target, row_count FROM {TABLES} WHERE destination = ?", [destination]
    ).fetchall()
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
    _copy(conn, changed, [], plan.folder / "confirmed")


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
    _copy(conn, f"SELECT row_key FROM ({gone})", params, plan.folder / "deleted")


def _copy(conn: duckdb.DuckDBPyConnection, query: str, params: list[str], folder: Path) -> list[Path]:
    conn.execute(
        f"COPY ({query}) TO '{_path(folder)}' (FORMAT parquet, FILE_SIZE_BYTES '{CHUNK_BYTES}', OVERWRITE_OR_IGNORE)",
        params,
    )
    return sorted(folder.glob("*.parquet"))


def _path(folder: Path) -> str:
    return str(folder).replace("'", "''")


def confirm(conn: duckdb.DuckDBPyConnection, destination: str, plan: TablePlan, job_id: str) -> None:
    """Record a push Celonis finished with DONE, in one transaction (all of it, or nothing)."""
    ensure_ledger(conn)
    params = [destination, plan.target]
    conn.execute("BEGIN TRANSACTION")
    try:
        if plan.mode == "REPLACE":
            conn.execute(f"DELETE FROM {ROWS} WHERE destination = ? AND target = ?", params)
        else:
            for part in ("deleted", "confirmed"):  # keys gone, and keys about to be recorded anew
                if (plan.folder / part).exists():
                    conn.execute(
                        f"DELETE FROM {ROWS} WHERE destination = ? AND target = ? AND row_key IN "
                        f"(SELECT {'row_key' if part == 'deleted' else '__oe_key'} "
                        f"FROM read_parquet('{_path(plan.folder / part)}/*.parquet'))",
                        params,
                    )
        if (plan.folder / "confirmed").exists():
            conn.execute(
                f"INSERT INTO {ROWS} SELECT ?, ?, __oe_key, __oe_hash "
                f"FROM read_parquet('{_path(plan.folder / 'confirmed')}/*.parquet')",
                params,
            )
        _record_table(conn, destination, plan, job_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _record_table(conn: duckdb.DuckDBPyConnection, destination: str, plan: TablePlan, job_id: str) -> None:
    columns = json.dumps([c.declared() for c in plan.columns])
    conn.execute(
        f"INSERT OR REPLACE INTO {TABLES} VALUES (?, ?, ?, ?, ?, timezone('UTC', now()))",
        [destination, plan.target, columns, plan.warehouse_rows, job_id],
    )


def record_submissions(
    conn: duckdb.DuckDBPyConnection, destination: str, jobs: list[tuple[str, str]]
) -> None:
    """Jobs we submitted (target, job id): the hourly budget counts them."""
    ensure_ledger(conn)
    for target, job_id in jobs:
        conn.execute(
            f"INSERT INTO {SUBMISSIONS} VALUES (?, ?, ?, timezone('UTC', now()))",
            [destination, target, job_id],
        )


def submitted_this_hour(conn: duckdb.DuckDBPyConnection, destination: str) -> int:
    """Our submissions since the full UTC hour (Celonis counts 250 per team from the full hour)."""
    ensure_ledger(conn)
    return scalar_count(
        conn,
        f"SELECT count(*) FROM {SUBMISSIONS} WHERE destination = ? "
        "AND submitted_at >= date_trunc('hour', timezone('UTC', now()))",
        [destination],
    )
