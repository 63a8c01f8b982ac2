"""Copy the whole warehouse into a PostgreSQL schema, in one transaction (`oe-assets warehouse copy`).

Every table is written in bulk: DuckDB writes it as CSV, which PostgreSQL's ``COPY ... FROM STDIN``
reads, never a row at a time. Either every table of the copy is there, or the schema is as it was:
a failed copy rolls back, a re-run replaces the previous copy, and tables the previous copy made
that the warehouse no longer has are dropped. Two copies into one schema wait for each other (an
advisory lock, held until the transaction ends, on any machine). ``_oe_tables`` and ``_oe_columns``
get a ``physical_name`` column: the table's or column's name in PostgreSQL, which differs from the
Celonis name only where that is longer than PostgreSQL's 63 bytes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa

from oe_assets.config.secret import redact
from oe_assets.warehouse.postgres.names import physical_names
from oe_assets.warehouse.postgres.types import ColumnTransfer, column_transfer
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets.warehouse.schema import COLUMNS_TABLE, TABLES_TABLE
from oe_assets.warehouse.sql import quote_ident, quote_literal

CHUNK_BYTES = 1 << 20
CONNECTION_TIMEOUTS = {
    "connect_timeout": 10,
    # A server that vanishes without closing the connection (a network cut, a host gone) ends the
    # copy within minutes instead of leaving it waiting: keepalives while we wait for an answer,
    # and a limit on data the server does not acknowledge while we send.
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 6,
    "tcp_user_timeout": 120_000,
}
_TABLE_NAMES = "_oe_copy_table_names"
_COLUMN_NAMES = "_oe_copy_column_names"


class WarehouseCopyError(RuntimeError):
    """The copy could not be made; the message is one sentence naming the target or the table."""


@dataclass(frozen=True)
class TableTransfer:
    name: str
    physical_name: str
    columns: list[ColumnTransfer]


@dataclass
class CopyReport:
    target: str
    """the target without its password"""
    schema: str
    rows: dict[str, int] = field(default_factory=dict)
    """rows copied per table (warehouse name)"""
    physical_names: dict[str, str] = field(default_factory=dict)
    """the tables whose name in PostgreSQL differs: warehouse name -> PostgreSQL name"""
    dropped: list[str] = field(default_factory=list)
    """tables of the previous copy the warehouse no longer has"""
    seconds: float = 0.0


def copy_warehouse(
    source: duckdb.DuckDBPyConnection, target: PostgresUrl, *, schema: str = "public", setting: str = "--to"
) -> CopyReport:
    """Copies every table of ``source`` into ``schema`` of ``target`` (see the module's doc)."""
    started = time.monotonic()
    tables = plan_tables(source)
    report = CopyReport(target=target.shown, schema=schema)
    _register_names(source, tables)
    try:
        with connected(target, setting) as conn, conn.transaction(), tempfile.TemporaryDirectory() as folder:
            _prepare_schema(conn, schema)
            report.dropped = _drop_vanished(conn, schema, {t.physical_name for t in tables})
            for table in tables:
                report.rows[table.name] = _copy_table(source, conn, schema, table, Path(folder))
    finally:
        for name in (_TABLE_NAMES, _COLUMN_NAMES):
            source.unregister(name)
    report.physical_names = {t.name: t.physical_name for t in tables if t.name != t.physical_name}
    report.seconds = time.monotonic() - started
    return report


def plan_tables(source: duckdb.DuckDBPyConnection) -> list[TableTransfer]:
    """Every base table of the warehouse with its columns, named for PostgreSQL."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in source.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'main' AND t.table_type = 'BASE TABLE' "
        "ORDER BY c.table_name, c.ordinal_position"
    ).fetchall():
        columns.setdefault(table, []).append((column, dtype))
    table_names = physical_names(columns)
    plans = []
    for table, cols in columns.items():
        column_names = physical_names(name for name, _ in cols)
        transfers = [column_transfer(table, name, column_names[name], dtype) for name, dtype in cols]
        plans.append(TableTransfer(table, table_names[table], transfers))
    return plans


def _register_names(source: duckdb.DuckDBPyConnection, tables: list[TableTransfer]) -> None:
    """The physical names as two relations the catalog tables' copies join (see :func:`_select`)."""
    source.register(
        _TABLE_NAMES,
        pa.table({"name": [t.name for t in tables], "physical_name": [t.physical_name for t in tables]}),
    )
    source.register(
        _COLUMN_NAMES,
        pa.table(
            {
                "table_name": [t.name for t in tables for _ in t.columns],
                "column_name": [c.name for t in tables for c in t.columns],
                "physical_name": [c.physical_name for t in tables for c in t.columns],
            }
        ),
    )


@contextmanager
def connected(target: PostgresUrl, setting: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection to ``target``; a failure to connect is one sentence naming ``setting``."""
    try:
        conn = psycopg.connect(**target.connect_kwargs(), **CONNECTION_TIMEOUTS)  # type: ignore[arg-type]
    except psycopg.Error as error:
        raise WarehouseCopyError(f"{setting} {target.shown}: cannot connect: {_reason(error)}") from None
    try:
        yield conn
    except psycopg.errors.InsufficientPrivilege as error:
        raise WarehouseCopyError(
            f"{setting} {target.shown}: user {target.user} lacks a privilege the copy needs: {_reason(error)}"
        ) from None
    except psycopg.OperationalError as error:  # the server went away: it rolls back what was not committed
        raise WarehouseCopyError(
            f"{setting} {target.shown}: the connection was lost ({_reason(error)}); nothing of this copy "
            "was committed, run it again"
        ) from None
    finally:
        conn.close()


def _reason(error: psycopg.Error) -> str:
    """PostgreSQL's own reason in one line (``password authentication failed for user "x"``,
    ``Connection refused``), with any secret alive in this process masked."""
    diag = getattr(error, "diag", None)
    text = diag.message_primary if diag is not None and diag.message_primary else str(error)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    reason = first.split("FATAL:", 1)[1] if "FATAL:" in first else first.rsplit(" failed: ", 1)[-1]
    return redact(reason.strip())


def _prepare_schema(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    """Waits for any other copy into ``schema`` (until this transaction ends), then makes sure it exists."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"oe_assets.warehouse_copy.{schema}"])
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")


def _drop_vanished(conn: psycopg.Connection[tuple[object, ...]], schema: str, keeping: set[str]) -> list[str]:
    """Drops the tables the previous copy registered that this copy does not write."""
    registered = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name = 'physical_name'",
        [schema, TABLES_TABLE],
    ).fetchone()
    if registered is None:
        return []
    previous = conn.execute(
        f"SELECT physical_name FROM {quote_ident(schema)}.{quote_ident(TABLES_TABLE)}"
    ).fetchall()
    vanished = sorted({str(name) for (name,) in previous if name and name not in keeping})
    for name in vanished:
        conn.execute(f"DROP TABLE IF EXISTS {quote_ident(schema)}.{quote_ident(name)}")
    return vanished


def _copy_table(
    source: duckdb.DuckDBPyConnection,
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    table: TableTransfer,
    folder: Path,
) -> int:
    """Recreates ``table`` in PostgreSQL and fills it with COPY; returns the rows copied."""
    target = f"{quote_ident(schema)}.{quote_ident(table.physical_name)}"
    columns = [*table.columns, *_physical_name_column(table)]
    conn.execute(f"DROP TABLE IF EXISTS {target}")
    definition = ", ".join(f"{quote_ident(c.physical_name)} {c.postgres_type}" for c in columns)
    conn.execute(f"CREATE TABLE {target} ({definition})")
    csv = folder / "table.csv"
    source.execute(f"COPY ({_select(table)}) TO {quote_literal(str(csv))} (FORMAT csv, HEADER false)")
    names = ", ".join(quote_ident(c.physical_name) for c in columns)
    try:
        statement = f"COPY {target} ({names}) FROM STDIN (FORMAT csv)"
        with conn.cursor() as cursor:
            with cursor.copy(statement) as copy, csv.open("rb") as data:
                while chunk := data.read(CHUNK_BYTES):
                    copy.write(chunk)
            copied = cursor.rowcount
    except psycopg.errors.DataError as error:
        context = (error.diag.context or "").splitlines()[0] if error.diag.context else ""
        raise WarehouseCopyError(
            f"{table.name}: PostgreSQL refused a value ({_reason(error)}; {context}); nothing was copied"
        ) from None
    finally:
        csv.unlink(missing_ok=True)
    counted = source.execute(f"SELECT count(*) FROM {quote_ident(table.name)}").fetchone()
    expected = counted[0] if counted else None
    if copied != expected:
        raise WarehouseCopyError(f"{table.name}: {copied} rows arrived of {expected}; nothing was copied")
    return copied


def _physical_name_column(table: TableTransfer) -> list[ColumnTransfer]:
    """The catalog tables' extra column (the select in :func:`_select` fills it)."""
    if table.name in (TABLES_TABLE, COLUMNS_TABLE):
        return [ColumnTransfer("physical_name", "physical_name", "text")]
    return []


def _select(table: TableTransfer) -> str:
    """The DuckDB query that writes ``table``'s rows (the catalog tables joined to their names)."""
    values = ", ".join(c.select("t") for c in table.columns)
    source = f"{quote_ident(table.name)} t"
    if table.name == TABLES_TABLE:
        return f"SELECT {values}, n.physical_name FROM {source} LEFT JOIN {_TABLE_NAMES} n ON n.name = t.table_name"
    if table.name == COLUMNS_TABLE:
        return (
            f"SELECT {values}, n.physical_name FROM {source} LEFT JOIN {_COLUMN_NAMES} n "
            "ON n.table_name = t.table_name AND n.column_name = t.column_name"
        )
    return f"SELECT {values} FROM {source}"
