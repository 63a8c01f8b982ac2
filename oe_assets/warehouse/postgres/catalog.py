"""What a PostgreSQL warehouse holds of a table family, read as the writer's rules need it.

The bookkeeping tables are DuckDB's (``_oe_tables``, ``_oe_columns``, ``_oe_quarantine``) with
one more column in the first two: ``physical_name``, the name in PostgreSQL, which differs from
the Celonis name only where that is longer than PostgreSQL's 63 bytes
(:mod:`oe_assets.warehouse.postgres.names`). Column types are read back as DuckDB types
(:func:`~oe_assets.warehouse.postgres.types.duckdb_type_of`), so that
:func:`~oe_assets.warehouse.plan.plan_table` decides for PostgreSQL exactly as for DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oe_assets.flatten.naming import TableFamily
from oe_assets.flatten.registry import SchemaRegistry
from oe_assets.warehouse.plan import TableState
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.postgres.locks import create_missing_tables, missing_tables
from oe_assets.warehouse.postgres.types import duckdb_type_of
from oe_assets.warehouse.schema import COLUMNS_TABLE, QUARANTINE_TABLE, TABLES_TABLE
from oe_assets.warehouse.writer import path_from_json, registry_from_rows, registry_queries

BOOKKEEPING_DDL: dict[str, str] = {
    TABLES_TABLE: f"""CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (
        table_name text PRIMARY KEY, family text, parent_table text, json_path text,
        first_seen timestamp, physical_name text UNIQUE)""",
    COLUMNS_TABLE: f"""CREATE TABLE IF NOT EXISTS {COLUMNS_TABLE} (
        table_name text, column_name text, json_path text, data_type text, first_seen timestamp,
        physical_name text, PRIMARY KEY (table_name, column_name), UNIQUE (table_name, physical_name))""",
    QUARANTINE_TABLE: f"""CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (
        family text, partition_key text, record_key text, reason text, document text,
        quarantined_at timestamp)""",
}


@dataclass
class FamilyCatalog:
    """The family's tables as PostgreSQL holds them (inside the transaction that read them)."""

    state: dict[str, TableState] = field(default_factory=dict)
    """table -> what it holds, in the writer's terms (column types as DuckDB types)"""
    tables: dict[str, str] = field(default_factory=dict)
    """table -> its name in PostgreSQL, for every registered table of every family"""
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    """table -> column -> its name in PostgreSQL"""


def ensure_bookkeeping(conn: PgConnection) -> None:
    create_missing_tables(conn, BOOKKEEPING_DDL)


def load_registry(conn: PgConnection, family: TableFamily) -> SchemaRegistry:
    """The family's persisted registry (empty before its first write), as DuckDB's
    :func:`~oe_assets.warehouse.writer.load_registry` reads it."""
    if missing_tables(conn, [TABLES_TABLE, COLUMNS_TABLE]):
        return SchemaRegistry()
    tables_sql, columns_sql = registry_queries("%s")
    tables = conn.execute(tables_sql, [family.root_table]).fetchall()
    columns = conn.execute(columns_sql, [family.root_table]).fetchall()
    return registry_from_rows(tables, columns)


def load_family(conn: PgConnection, family: TableFamily) -> FamilyCatalog:
    """The family's registered tables, their columns and types; every table's physical name."""
    catalog = FamilyCatalog()
    for name, physical, fam, parent, path in conn.execute(
        f"SELECT table_name, physical_name, family, parent_table, json_path FROM {TABLES_TABLE}"
    ).fetchall():
        catalog.tables[str(name)] = str(physical)
        if fam == family.root_table:
            catalog.state[str(name)] = TableState(registered=(parent, path_from_json(path) or ()))  # type: ignore[arg-type]
    for table, column, physical, path, dtype in conn.execute(
        f"SELECT table_name, column_name, physical_name, json_path, data_type FROM {COLUMNS_TABLE} "
        "WHERE table_name = ANY(%s)",
        [list(catalog.state)],
    ).fetchall():
        state = catalog.state[str(table)]
        state.paths[str(column)] = path_from_json(path)  # type: ignore[arg-type]
        state.seen[str(column)] = dtype is not None
        catalog.columns.setdefault(str(table), {})[str(column)] = str(physical)
    for table, state in catalog.state.items():
        state.columns = physical_columns(conn, table, catalog.tables[table], catalog.columns.get(table, {}))
    return catalog


def physical_columns(
    conn: PgConnection, table: str, physical_table: str, physical_names: dict[str, str]
) -> dict[str, str] | None:
    """Column -> DuckDB type of ``table`` in table order, under the names the catalog gives its
    columns (``physical_names``: column -> name in PostgreSQL); None: the table does not exist."""
    rows = _attributes(conn, physical_table)
    if not rows and missing_tables(conn, [physical_table]):
        return None
    logical = {physical: column for column, physical in physical_names.items()}
    return {
        logical.get(str(name), str(name)): duckdb_type_of(table, str(name), str(pg_type))
        for name, pg_type in rows
    }


def physical_table_name(conn: PgConnection, table: str) -> str:
    """``table``'s name in PostgreSQL: the catalog's for a registered table, else its own."""
    if missing_tables(conn, [TABLES_TABLE]):
        return table
    row = conn.execute(f"SELECT physical_name FROM {TABLES_TABLE} WHERE table_name = %s", [table]).fetchone()
    return str(row[0]) if row and row[0] else table


def logical_columns(conn: PgConnection, table: str) -> dict[str, str]:
    """Column -> PostgreSQL type of ``table``, in table order, under the catalog's column names."""
    names = _model_names(conn, table)
    return {
        names.get(name, name): pg_type
        for name, pg_type in _attributes(conn, physical_table_name(conn, table))
    }


def postgres_columns(conn: PgConnection, table: str) -> dict[str, str]:
    """Column (the model's name) -> its name in PostgreSQL, in table order; empty: no such table.
    Read by queries (``_oe_columns``, ``pg_attribute``), so in the reader's snapshot: never from a
    table's current description, which may hold a column another run added since."""
    names = _model_names(conn, table)
    return {names.get(name, name): name for name, _ in _attributes(conn, physical_table_name(conn, table))}


def _model_names(conn: PgConnection, table: str) -> dict[str, str]:
    """PostgreSQL's name -> the model's, for ``table``'s columns the catalog names."""
    if missing_tables(conn, [COLUMNS_TABLE]):
        return {}
    rows = conn.execute(
        f"SELECT physical_name, column_name FROM {COLUMNS_TABLE} WHERE table_name = %s AND physical_name IS NOT NULL",
        [table],
    ).fetchall()
    return {str(physical): str(column) for physical, column in rows}


def _attributes(conn: PgConnection, physical_table: str) -> list[tuple[str, str]]:
    """(name, PostgreSQL type) of the table's columns in table order; none when there is no such table."""
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(quote_ident(%s)) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [physical_table],
    ).fetchall()
    return [(str(name), str(pg_type)) for name, pg_type in rows]
