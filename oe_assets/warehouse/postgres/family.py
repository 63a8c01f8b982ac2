"""Writing a table family into PostgreSQL: a partition is built in DuckDB, then published whole.

Why two steps: the writer's rules (tables and columns as the documents bring them, wider types,
quarantine; :mod:`oe_assets.warehouse.writer`) run unchanged on a local DuckDB *scratch* that
holds only the partition being written. Publishing then plans each of the scratch's tables against
what PostgreSQL holds, with the same rules (:func:`~oe_assets.warehouse.plan.plan_table`), changes
PostgreSQL's tables as planned, deletes the partition's previous rows from every table of the
family, copies the new rows in with ``COPY`` and replaces the partition's quarantine rows: one
transaction, so the partition is either wholly new or as it was.

Two runs for different partitions publish side by side: a publish that only deletes and copies
rows holds the family lock shared. One that must change the family's tables learns so while
holding it shared, rolls back (nothing was written yet) and starts again holding it exclusively,
so no publish plans against a schema that another one is changing.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from oe_assets.flatten.flattener import FlatBatch
from oe_assets.flatten.naming import TableFamily
from oe_assets.warehouse.connection import WAREHOUSE_SETTINGS
from oe_assets.warehouse.plan import BatchColumn, TablePlan, TableState, plan_table
from oe_assets.warehouse.postgres.catalog import (
    FamilyCatalog,
    ensure_bookkeeping,
    load_family,
    physical_columns,
)
from oe_assets.warehouse.postgres.connect import PgConnection, PostgresWarehouseError, copy_in
from oe_assets.warehouse.postgres.locks import family_lock_name, transaction_lock
from oe_assets.warehouse.postgres.names import physical_name_for
from oe_assets.warehouse.postgres.types import postgres_type, retype_expr
from oe_assets.warehouse.schema import COLUMNS_TABLE, QUARANTINE_TABLE, TABLES_TABLE, all_table_columns
from oe_assets.warehouse.sql import quote_ident
from oe_assets.warehouse.writer import (
    WriteReport,
    path_from_json,
    path_to_json,
    replace_all,
    replace_partition,
)

InTransaction = Callable[[PgConnection], object]
"""Work that must commit with a partition's rows (it runs last in the publishing transaction)."""
_QUARANTINE_COLUMNS = "family, partition_key, record_key, reason, document, quarantined_at"


@dataclass(frozen=True)
class Partition:
    """What a write replaces: one partition of a family, or (``key`` None) all of it."""

    family: TableFamily
    key: str | None = None
    column: str | None = None


@dataclass(frozen=True)
class ScratchTable:
    """One table the scratch holds for the partition, as the writer registered it there."""

    name: str
    parent: str | None
    path: tuple[object, ...]
    columns: dict[str, BatchColumn]
    not_null: set[str]
    rows: int


class _SchemaMustChange(Exception):
    """The publish needs the family lock exclusively (see the module's doc)."""


@contextmanager
def scratch_warehouse() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB that spills to a temporary folder beyond the writers' memory limit
    (a large partition), both gone after the block."""
    with tempfile.TemporaryDirectory(prefix="oe_scratch_") as folder:
        conn = duckdb.connect(":memory:", config={**WAREHOUSE_SETTINGS, "temp_directory": folder})
        try:
            yield conn
        finally:
            conn.close()


def empty_scratch(scratch: duckdb.DuckDBPyConnection) -> None:
    """Deletes the rows of the scratch's tables, keeping the tables and what the writer registered
    of them: the next partition starts with no rows, and its tables need no DDL again."""
    for (table,) in scratch.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND table_name NOT IN (?, ?)",
        [TABLES_TABLE, COLUMNS_TABLE],
    ).fetchall():
        scratch.execute(f"DELETE FROM {quote_ident(str(table))}")


def replace_partition_pg(
    pg: PgConnection,
    family: TableFamily,
    partition_key: str | None,
    batches: Iterable[FlatBatch],
    *,
    partition_column: str | None = "_oe_partition",
    in_transaction: InTransaction | None = None,
) -> WriteReport:
    """DuckDB's :func:`~oe_assets.warehouse.writer.replace_partition` (``partition_key`` None:
    :func:`~oe_assets.warehouse.writer.replace_all`) into PostgreSQL: built in a scratch, then published."""
    with scratch_warehouse() as scratch:
        if partition_key is None:
            report = replace_all(scratch, family, batches)
            partition = Partition(family)
        else:
            assert partition_column is not None
            report = replace_partition(
                scratch, family, partition_key, batches, partition_column=partition_column
            )
            partition = Partition(family, partition_key, partition_column)
        return publish(pg, scratch, partition, report, in_transaction=in_transaction)


def publish(
    pg: PgConnection,
    scratch: duckdb.DuckDBPyConnection,
    partition: Partition,
    report: WriteReport,
    *,
    in_transaction: InTransaction | None = None,
) -> WriteReport:
    """The scratch's tables (the partition's rows, as the writer wrote them and reported in
    ``report``) into PostgreSQL, in one transaction; the report of what PostgreSQL got."""
    tables = scratch_tables(scratch, partition.family, report.rows_per_table)
    for exclusive in (False, True):
        try:
            with pg.transaction():
                published = _publish(pg, scratch, partition, tables, report, exclusive=exclusive)
                if in_transaction is not None:
                    in_transaction(pg)
                return published
        except _SchemaMustChange:
            continue
    raise AssertionError("a publish holding the family lock exclusively may change the schema")


def _publish(
    pg: PgConnection,
    scratch: duckdb.DuckDBPyConnection,
    partition: Partition,
    tables: list[ScratchTable],
    report: WriteReport,
    *,
    exclusive: bool,
) -> WriteReport:
    ensure_bookkeeping(pg)
    transaction_lock(pg, family_lock_name(partition.family.root_table), shared=not exclusive)
    catalog = load_family(pg, partition.family)
    plans = [_plan(pg, catalog, table) for table in tables]
    if not exclusive and any(_changes_schema(plan) for plan in plans):
        raise _SchemaMustChange
    published = dataclasses.replace(report, schema_changes=[], new_tables=[], new_columns=[], deleted_rows={})
    now = datetime.now(UTC).replace(tzinfo=None)
    for table, plan in zip(tables, plans, strict=True):
        _apply(pg, catalog, partition.family, table, plan, now)
        published.schema_changes.extend(plan.schema_changes)
        published.new_tables.extend([plan.table] if plan.create is not None else [])
        published.new_columns.extend((plan.table, column) for column in plan.add)
    published.deleted_rows = _delete_previous(pg, catalog, partition)
    for table, plan in zip(tables, plans, strict=True):
        _copy_rows(scratch, pg, catalog, table, plan)
    _replace_quarantine(pg, scratch, partition)
    return published


def scratch_tables(
    scratch: duckdb.DuckDBPyConnection, family: TableFamily, rows: dict[str, int]
) -> list[ScratchTable]:
    """The family's tables the scratch holds, parents before children (the order they were
    registered); ``rows``: the rows each holds (the write's report)."""
    registered = scratch.execute(
        f"SELECT table_name, parent_table, json_path FROM {TABLES_TABLE} WHERE family = ? ORDER BY first_seen, table_name",
        [family.root_table],
    ).fetchall()
    described: dict[str, dict[str, tuple[Any, str | None]]] = {}
    for table, column, json_path, dtype in scratch.execute(
        f"SELECT c.table_name, c.column_name, c.json_path, c.data_type FROM {COLUMNS_TABLE} c "
        f"JOIN {TABLES_TABLE} t USING (table_name) WHERE t.family = ?",
        [family.root_table],
    ).fetchall():
        described.setdefault(str(table), {})[str(column)] = (path_from_json(json_path), dtype)
    types, not_null = all_table_columns(scratch), _not_null_columns(scratch)
    tables = []
    for name, parent, path in registered:
        columns = _batch_columns(types.get(name, {}), described.get(name, {}))
        tables.append(
            ScratchTable(
                name,
                parent,
                path_from_json(path) or (),
                columns,
                not_null.get(name, set()),
                rows.get(name, 0),
            )
        )
    return tables


def _batch_columns(
    types: dict[str, str], described: dict[str, tuple[Any, str | None]]
) -> dict[str, BatchColumn]:
    """Each scratch column as a batch would bring it: its type, or None while the catalog says it
    held only NULLs (``data_type`` NULL), and its JSON path."""
    columns = {}
    for column, dtype in types.items():
        path, registered_type = described.get(column, (None, dtype))
        columns[column] = BatchColumn(dtype if registered_type is not None else None, path)
    return columns


def _not_null_columns(scratch: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, column in scratch.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = current_database() AND NOT is_nullable"
    ).fetchall():
        found.setdefault(str(table), set()).add(str(column))
    return found


def _plan(pg: PgConnection, catalog: FamilyCatalog, table: ScratchTable) -> TablePlan:
    state = catalog.state.get(table.name)
    if state is None:  # not registered: a table of that name may exist all the same, and is adopted
        physical = catalog.tables.get(table.name) or physical_name_for(
            table.name, set(catalog.tables.values())
        )
        catalog.tables[table.name] = physical
        state = catalog.state[table.name] = TableState(columns=physical_columns(pg, table.name, physical, {}))
    return plan_table(
        table.name,
        parent=table.parent,
        path=table.path,  # type: ignore[arg-type]
        batch=table.columns,
        state=state,
        key_columns=table.not_null,
    )


def _changes_schema(plan: TablePlan) -> bool:
    return bool(
        plan.create is not None
        or plan.register
        or plan.add
        or plan.retype
        or plan.new_columns
        or plan.typed_columns
    )


def _column_name(catalog: FamilyCatalog, table: str, column: str) -> str:
    """The column's name in PostgreSQL: the catalog's, or a new one no other column of the table has."""
    names = catalog.columns.setdefault(table, {})
    if column not in names:
        names[column] = physical_name_for(column, set(names.values()))
    return names[column]


def _apply(
    pg: PgConnection,
    catalog: FamilyCatalog,
    family: TableFamily,
    table: ScratchTable,
    plan: TablePlan,
    now: datetime,
) -> None:
    """The plan's DDL and catalog rows in PostgreSQL; the catalog's state becomes the plan's."""
    name, physical = plan.table, quote_ident(catalog.tables[plan.table])
    if plan.create is not None:
        columns = ", ".join(
            f"{quote_ident(_column_name(catalog, name, c))} {postgres_type(t)}{' NOT NULL' if nn else ''}"
            for c, t, nn in plan.create
        )
        pg.execute(f"CREATE TABLE {physical} ({columns})")
    if plan.register is not None:
        pg.execute(
            f"INSERT INTO {TABLES_TABLE} VALUES (%s, %s, %s, %s, %s, %s)",
            [name, family.root_table, table.parent, path_to_json(table.path), now, catalog.tables[name]],
        )
    for column, dtype in plan.add.items():
        pg.execute(
            f"ALTER TABLE {physical} ADD COLUMN {quote_ident(_column_name(catalog, name, column))} {postgres_type(dtype)}"
        )
    for retype in plan.retype:
        retyped = quote_ident(_column_name(catalog, name, retype.column))
        using = retype_expr(retyped, retype.from_type, retype.to_type, had_values=retype.had_values)
        pg.execute(
            f"ALTER TABLE {physical} ALTER COLUMN {retyped} TYPE {postgres_type(retype.to_type)} USING {using}"
        )
    for column, path, data_type in plan.new_columns:
        pg.execute(
            f"INSERT INTO {COLUMNS_TABLE} VALUES (%s, %s, %s, %s, %s, %s)",
            [name, column, path_to_json(path), data_type, now, _column_name(catalog, name, column)],
        )
    for column, typed in plan.typed_columns:
        pg.execute(
            f"UPDATE {COLUMNS_TABLE} SET data_type = %s WHERE table_name = %s AND column_name = %s",
            [typed, name, column],
        )
    catalog.state[name] = plan.after


def _delete_previous(pg: PgConnection, catalog: FamilyCatalog, partition: Partition) -> dict[str, int]:
    """Deletes the partition's previous rows from every table of the family; rows deleted per table."""
    deleted = {}
    for table, state in catalog.state.items():
        if state.columns is None:
            continue
        physical = quote_ident(catalog.tables[table])
        if partition.column is None:
            cursor = pg.execute(f"DELETE FROM {physical}")
        elif partition.column in state.columns:
            column = quote_ident(_column_name(catalog, table, partition.column))
            pg_type = postgres_type(state.columns[partition.column])
            cursor = pg.execute(
                f"DELETE FROM {physical} WHERE {column} = CAST(%s AS {pg_type})", [partition.key]
            )
        else:
            continue
        if cursor.rowcount:
            deleted[table] = cursor.rowcount
    return deleted


def _copy_rows(
    scratch: duckdb.DuckDBPyConnection,
    pg: PgConnection,
    catalog: FamilyCatalog,
    table: ScratchTable,
    plan: TablePlan,
) -> None:
    """The scratch table's rows into PostgreSQL, cast to the column types as the plan says."""
    if not table.rows:
        return
    names = list(table.columns)
    target = ", ".join(quote_ident(_column_name(catalog, table.name, c)) for c in names)
    copied = copy_in(
        scratch,
        f"SELECT {plan.select(names)} FROM {quote_ident(table.name)}",
        pg,
        f"{quote_ident(catalog.tables[table.name])} ({target})",
        table.name,
    )
    if copied != table.rows:
        raise PostgresWarehouseError(
            f"{table.name}: {copied} rows arrived of {table.rows}; nothing was written"
        )


def _replace_quarantine(pg: PgConnection, scratch: duckdb.DuckDBPyConnection, partition: Partition) -> None:
    """The partition's quarantined records are the scratch's (this write's)."""
    if partition.key is None:
        pg.execute(f"DELETE FROM {QUARANTINE_TABLE} WHERE family = %s", [partition.family.root_table])
    else:
        pg.execute(
            f"DELETE FROM {QUARANTINE_TABLE} WHERE family = %s AND partition_key = %s",
            [partition.family.root_table, partition.key],
        )
    copy_in(
        scratch,
        f"SELECT {_QUARANTINE_COLUMNS} FROM {QUARANTINE_TABLE}",
        pg,
        f"{QUARANTINE_TABLE} ({_QUARANTINE_COLUMNS})",
        QUARANTINE_TABLE,
    )
