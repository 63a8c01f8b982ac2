"""The stand-in's data pool: pool tables in DuckDB, and how a push job changes them.

A pool table lives in DuckDB schema ``main`` (the pool's global schema) or in a schema named after the
data connection, under exactly the job's ``targetName``. Column types and string lengths that DuckDB
cannot keep (VARCHAR lengths) sit in the side table ``_celonis_sim.columns``. A file-backed pool is
opened only while a job is applied or read and closed after, so ``duckdb <file>`` can look at what
Celonis would hold while the server idles. Every job is applied in one transaction: all or nothing.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from oe_assets.celonis_simulator.schema import (
    ARROW_TYPES,
    CHANGE_DATE_COLUMN,
    ApplyError,
    Column,
    cast_column,
    quote_ident,
    source_type,
)

GLOBAL_SCHEMA = "main"
META_SCHEMA = "_celonis_sim"
_META = f"{META_SCHEMA}.columns"
_INCOMING = "__celonis_sim_incoming"
_DELETED = "__celonis_sim_deleted"
_OPEN_WAIT_SECONDS = 30.0
_REVERSE_DUCKDB = {
    "BIGINT": "INTEGER",
    "INTEGER": "INTEGER",
    "DOUBLE": "FLOAT",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIME": "TIME",
    "TIMESTAMP": "DATETIME",
}


def schema_for(connection_id: str | None) -> str:
    """The DuckDB schema of a data connection's tables (``main`` for the pool's global schema)."""
    return connection_id or GLOBAL_SCHEMA


@dataclass(frozen=True, slots=True)
class PushSpec:
    """What a push job asks for, as far as applying it goes."""

    target: str
    schema: str
    job_type: str  # REPLACE | DELTA
    keys: tuple[str, ...] = ()
    declared: tuple[Column, ...] = ()
    fallback_length: int = 80


@dataclass(slots=True)
class ApplyResult:
    """What an applied job did (for its log lines)."""

    table: str
    rows_written: int = 0
    rows_deleted: int = 0
    columns_added: list[str] = field(default_factory=list)


class Pool:
    """The pool's tables in one DuckDB database (a file, or memory when ``path`` is None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._memory = duckdb.connect(":memory:") if path is None else None
        self._session: duckdb.DuckDBPyConnection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}")
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {_META} (schema_name VARCHAR, table_name VARCHAR, "
                "column_name VARCHAR, column_type VARCHAR, length INTEGER, position INTEGER)"
            )

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The pool's connection, one user at a time; a file is opened now and closed after."""
        with self._lock:
            if self._memory is not None or self._session is not None:
                yield self._memory or self._session  # type: ignore[misc]
                return
            con = _open_file(self.path)
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep the file open across several jobs (the worker's queue); closed when they are done."""
        with self._lock:
            if self._memory is not None or self._session is not None:
                yield
                return
            self._session = _open_file(self.path)
            try:
                yield
            finally:
                session, self._session = self._session, None
                session.close()

    def close(self) -> None:
        """Free an in-memory pool (its tables are gone after this)."""
        with self._lock:
            if self._memory is not None:
                self._memory.close()
                self._memory = None

    # ------------------------------------------------------------ applying a job

    def apply(self, spec: PushSpec, upserts: list[bytes], deletes: list[bytes], now: datetime) -> ApplyResult:
        """Apply a push job's chunks in one transaction; ApplyError (pool unchanged) says why it cannot."""
        if deletes and not spec.keys:
            raise ApplyError(f"Table {spec.target}: delete chunks need the job's keys")
        upsert_tables = [_read_parquet(data) for data in upserts]
        delete_tables = [_read_parquet(data) for data in deletes]
        for chunk in upsert_tables:
            _check_chunk(chunk, spec, "upserted")
        for chunk in delete_tables:
            _check_chunk(chunk, spec, "deleted")
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                result = _apply_in(con, spec, upsert_tables, delete_tables, now)
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise ApplyError(f"Table {spec.target}: {str(exc).splitlines()[0]}") from None
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                for view in (_INCOMING, _DELETED):
                    with contextlib.suppress(duckdb.Error):
                        con.unregister(view)
        return result

    # ------------------------------------------------------------ reading

    def table_name(self, table: str, schema: str) -> str | None:
        """The stored spelling of a table (names are case-insensitive), None when it does not exist."""
        with self.connect() as con:
            return find_table(con, schema, table)

    def rows(self, table: str, schema: str) -> list[dict[str, Any]]:
        """A table's rows without ``_CELONIS_CHANGE_DATE``; KeyError when there is no such table."""
        with self.connect() as con:
            name = find_table(con, schema, table)
            if name is None:
                raise KeyError(f"no pool table {table!r} in schema {schema!r}")
            cur = con.execute(
                f"SELECT * EXCLUDE ({quote_ident(CHANGE_DATE_COLUMN)}) FROM {_qualified(schema, name)}"
            )
            names = [d[0] for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def counts(self, schema: str | None = None) -> dict[str, dict[str, int]]:
        """Row counts per schema and table (one schema when given)."""
        with self.connect() as con:
            result: dict[str, dict[str, int]] = {}
            for table_schema, name in list_tables(con):
                if schema is None or table_schema == schema:
                    result.setdefault(table_schema, {})[name] = count_rows(con, table_schema, name)
            return result

    def columns(self, table: str, schema: str) -> list[Column]:
        """A table's columns (``_CELONIS_CHANGE_DATE`` last); KeyError when there is no such table."""
        with self.connect() as con:
            name = find_table(con, schema, table)
            if name is None:
                raise KeyError(f"no pool table {table!r} in schema {schema!r}")
            return [*table_columns(con, schema, name), Column(CHANGE_DATE_COLUMN, "DATETIME")]

    def tables(self) -> list[tuple[str, str, list[Column]]]:
        """Every pool table as (schema, name, columns)."""
        with self.connect() as con:
            return [
                (schema, name, [*table_columns(con, schema, name), Column(CHANGE_DATE_COLUMN, "DATETIME")])
                for schema, name in list_tables(con)
            ]


# ---------------------------------------------------------------- catalog helpers (take a connection)


def list_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(schema, table) of every pool table, the side table excluded."""
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema <> ? ORDER BY table_schema, table_name",
        [META_SCHEMA],
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def find_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> str | None:
    """The stored spelling of ``table`` in ``schema`` (case-insensitive match), or None."""
    row = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = ? AND lower(table_name) = lower(?)",
        [schema, table],
    ).fetchone()
    return None if row is None else str(row[0])


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[Column]:
    """A table's columns (without ``_CELONIS_CHANGE_DATE``): from the side table, else from DuckDB."""
    rows = con.execute(
        f"SELECT column_name, column_type, length FROM {_META} "
        "WHERE schema_name = ? AND lower(table_name) = lower(?) ORDER BY position",
        [schema, table],
    ).fetchall()
    if rows:
        return [Column(str(n), str(t), None if length is None else int(length)) for n, t, length in rows]
    described = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    columns = []
    for name, data_type in described:
        if str(name).upper() != CHANGE_DATE_COLUMN:
            ctype = _REVERSE_DUCKDB.get(str(data_type).upper(), "STRING")
            columns.append(Column(str(name), ctype, 80 if ctype == "STRING" else None))
    return columns


def count_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {_qualified(schema, table)}").fetchone()
    return int(row[0]) if row else 0


def duplicate_keys(con: duckdb.DuckDBPyConnection, schema: str, table: str, keys: list[str]) -> int:
    """How many key values occur more than once in a table."""
    cols = ", ".join(quote_ident(k) for k in keys)
    row = con.execute(
        f"SELECT count(*) FROM (SELECT {cols} FROM {_qualified(schema, table)} GROUP BY {cols} HAVING count(*) > 1)"
    ).fetchone()
    return int(row[0]) if row else 0


def _qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def _open_file(path: Path | None) -> duckdb.DuckDBPyConnection:
    """Open the pool file, waiting while another process (a user's ``duckdb`` shell) holds its lock."""
    deadline = time.monotonic() + _OPEN_WAIT_SECONDS
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException:
            if time.monotonic() >= deadline:
                raise ApplyError(f"the pool file {path} is locked by another process") from None
            time.sleep(0.1)


# ---------------------------------------------------------------- applying (pure steps + SQL)


def _read_parquet(data: bytes) -> pa.Table:
    """A chunk as an Arrow table; ApplyError with Celonis' own wording when it is no valid Parquet."""
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError):
        raise ApplyError("Internal error while validating the Parquet file") from None


def _check_chunk(chunk: pa.Table, spec: PushSpec, kind: str) -> None:
    """Every column readable, no name twice (names are case-insensitive), every key column present."""
    seen: set[str] = set()
    for f in chunk.schema:
        source_type(f.name, f.type)  # DECIMAL and nested types end the job here
        if f.name.lower() in seen:
            raise ApplyError(f"Table {spec.target}: column {f.name} appears twice in an {kind} chunk")
        seen.add(f.name.lower())
    for key in spec.keys:
        if key.lower() not in seen:
            raise ApplyError(f"Table {spec.target}: key column {key} is missing from an {kind} chunk")


def plan_columns(spec: PushSpec, existing: list[Column], chunks: list[pa.Table]) -> list[Column]:
    """The table's columns after the job: the existing ones, widened or added by the declared schema,
    then the chunks' undeclared columns (strings at the fallback length). ApplyError on a type clash."""
    plan: dict[str, Column] = {c.name.lower(): c for c in existing}
    for d in spec.declared:
        old = plan.get(d.name.lower())
        if old is None:
            plan[d.name.lower()] = d
        elif old.ctype != d.ctype:
            raise ApplyError(
                f"Table {spec.target}, column {old.name}: declared {d.ctype} but the pool column is {old.ctype}"
            )
        elif d.ctype == "STRING" and (d.length or 0) > (old.length or 0):
            plan[d.name.lower()] = Column(old.name, "STRING", d.length)
    for chunk in chunks:
        for f in chunk.schema:
            if f.name.lower() in plan or f.name.upper() == CHANGE_DATE_COLUMN:
                continue
            ctype = source_type(f.name, f.type) or "STRING"
            plan[f.name.lower()] = Column(f.name, ctype, spec.fallback_length if ctype == "STRING" else None)
    for key in spec.keys:
        if key.lower() not in plan:
            raise ApplyError(f"Table {spec.target}: key column {key} does not exist in the table")
    return list(plan.values())


def _incoming(plan: list[Column], chunks: list[pa.Table], table: str, now: datetime) -> pa.Table:
    """All upserted rows as one Arrow table with positional names ``c0..cN``, the change date ``cd``
    and the row order ``ord`` (chunk order, then row order: the last row for a key wins)."""
    names = [f"c{i}" for i in range(len(plan))] + ["cd", "ord"]
    parts: list[pa.Table] = []
    offset = 0
    for chunk in chunks:
        by_lower = {f.name.lower(): i for i, f in enumerate(chunk.schema)}
        arrays: list[pa.ChunkedArray] = []
        for col in plan:
            index = by_lower.get(col.name.lower())
            if index is None:
                arrays.append(pa.chunked_array([pa.nulls(chunk.num_rows, ARROW_TYPES[col.ctype])]))
            else:
                arrays.append(cast_column(chunk.column(index), col, table))
        arrays.append(pa.chunked_array([pa.repeat(pa.scalar(now, pa.timestamp("us")), chunk.num_rows)]))
        arrays.append(pa.chunked_array([pa.array(range(offset, offset + chunk.num_rows), pa.int64())]))
        offset += chunk.num_rows
        parts.append(pa.Table.from_arrays(arrays, names=names))
    if not parts:
        fields = [pa.field(n, ARROW_TYPES[c.ctype]) for n, c in zip(names, plan, strict=False)]
        return pa.schema(
            [*fields, pa.field("cd", pa.timestamp("us")), pa.field("ord", pa.int64())]
        ).empty_table()
    return pa.concat_tables(parts)


def _apply_in(
    con: duckdb.DuckDBPyConnection,
    spec: PushSpec,
    upserts: list[pa.Table],
    deletes: list[pa.Table],
    now: datetime,
) -> ApplyResult:
    """The job's SQL inside the open transaction."""
    existing_name = find_table(con, spec.schema, spec.target)
    replace = spec.job_type == "REPLACE" or existing_name is None
    existing = [] if replace else table_columns(con, spec.schema, existing_name or spec.target)
    plan = plan_columns(spec, existing, upserts)
    name = spec.target if replace else (existing_name or spec.target)
    result = ApplyResult(table=name)
    incoming = _incoming(plan, upserts, name, now)
    target = _qualified(spec.schema, name)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(spec.schema)}")
    if replace:
        con.execute(f"DROP TABLE IF EXISTS {target}")
        ddl = ", ".join(f"{quote_ident(c.name)} {c.ddl()}" for c in plan)
        con.execute(
            f"CREATE TABLE {target} ({ddl}{', ' if ddl else ''}{quote_ident(CHANGE_DATE_COLUMN)} TIMESTAMP)"
        )
    else:
        known = {c.name.lower() for c in existing}
        for col in plan:
            if col.name.lower() not in known:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(col.name)} {col.ddl()}")
                result.columns_added.append(col.name)
    con.register(_INCOMING, incoming)
    key_refs = [f"c{_index(plan, k)}" for k in spec.keys]
    if spec.keys and not replace:
        match = " AND ".join(
            f"t.{quote_ident(plan[_index(plan, k)].name)} IS NOT DISTINCT FROM i.{ref}"
            for k, ref in zip(spec.keys, key_refs, strict=True)
        )
        con.execute(
            f"DELETE FROM {target} AS t USING (SELECT DISTINCT {', '.join(key_refs)} FROM {_INCOMING}) AS i WHERE {match}"
        )
    cols = ", ".join(quote_ident(c.name) for c in plan)
    values = ", ".join(f"c{i}" for i in range(len(plan)))
    select = f"SELECT {values}{', ' if values else ''}cd FROM {_INCOMING}"
    if spec.keys:
        select += f" QUALIFY row_number() OVER (PARTITION BY {', '.join(key_refs)} ORDER BY ord DESC) = 1"
    row = con.execute(
        f"INSERT INTO {target} ({cols}{', ' if cols else ''}{quote_ident(CHANGE_DATE_COLUMN)}) {select} ORDER BY ord"
    ).fetchone()
    result.rows_written = int(row[0]) if row else 0
    result.rows_deleted = _apply_deletes(con, spec, plan, target, deletes)
    _write_meta(con, spec.schema, name, plan)
    return result


def _index(plan: list[Column], name: str) -> int:
    return next(i for i, c in enumerate(plan) if c.name.lower() == name.lower())


def _apply_deletes(
    con: duckdb.DuckDBPyConnection, spec: PushSpec, plan: list[Column], target: str, deletes: list[pa.Table]
) -> int:
    """Remove the rows whose key columns equal a row of a delete chunk (it holds the key columns)."""
    deleted = 0
    for chunk in deletes:
        by_lower = {f.name.lower(): i for i, f in enumerate(chunk.schema)}
        key_cols = [plan[_index(plan, k)] for k in spec.keys]
        arrays = [cast_column(chunk.column(by_lower[c.name.lower()]), c, spec.target) for c in key_cols]
        con.register(_DELETED, pa.Table.from_arrays(arrays, names=[f"k{i}" for i in range(len(arrays))]))
        match = " AND ".join(
            f"t.{quote_ident(c.name)} IS NOT DISTINCT FROM d.k{i}" for i, c in enumerate(key_cols)
        )
        row = con.execute(f"DELETE FROM {target} AS t USING {_DELETED} AS d WHERE {match}").fetchone()
        deleted += int(row[0]) if row else 0
        con.unregister(_DELETED)
    return deleted


def _write_meta(con: duckdb.DuckDBPyConnection, schema: str, table: str, plan: list[Column]) -> None:
    """Record the table's column types and string lengths in the side table."""
    con.execute(
        f"DELETE FROM {_META} WHERE schema_name = ? AND lower(table_name) = lower(?)", [schema, table]
    )
    if plan:
        con.executemany(
            f"INSERT INTO {_META} VALUES (?, ?, ?, ?, ?, ?)",
            [[schema, table, c.name, c.ctype, c.length, i] for i, c in enumerate(plan)],
        )
