"""SQL that finds broken keys: orphans of a relation, null or duplicate primary keys.

Each check is one SQL definition that runs on either warehouse (DuckDB or PostgreSQL) with the
same results: the dialects differ only in the name of the text type and in how text sorts
(:class:`Dialect`). On PostgreSQL a table and its columns are found under their physical names
(names over 63 bytes are shortened there), while results and details keep the model's names.
A key column that a table lacks reads as NULL, as the flattener's absent values do: a primary key
missing a column is null in every row, and a relation's missing column matches nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb

from oe_assets.flatten.naming import PARTITION as PARTITION_COLUMN
from oe_assets.model.declaration import Relation
from oe_assets.warehouse import TABLES_TABLE, quote_ident, quote_literal
from oe_assets.warehouse.postgres.catalog import physical_table_name, postgres_columns
from oe_assets.warehouse.postgres.connect import PgConnection
from oe_assets.warehouse.schema import table_columns

SAMPLE_SIZE = 10

Checked = duckdb.DuckDBPyConnection | PgConnection
"""A connection to the warehouse the checks read: DuckDB's or PostgreSQL's."""


@dataclass
class IntegrityResult:
    passed: bool
    offending_rows: int
    sample: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class Dialect:
    """What the checks' SQL writes differently per warehouse."""

    text_type: str
    """the type a key value is cast to for the samples"""
    collate: str
    """appended to a text expression so that it sorts by bytes, as DuckDB's text does"""


DUCKDB = Dialect(text_type="VARCHAR", collate="")
POSTGRES = Dialect(text_type="text", collate=' COLLATE "C"')


@dataclass(frozen=True)
class Layout:
    """A table as the checks find it in the database."""

    physical: str
    """its name in the database"""
    columns: dict[str, str]
    """model's column name -> its name in the database, for the columns the table has"""

    def ref(self, alias: str, column: str) -> str:
        """``alias.column`` under its name in the database; NULL for a column the table lacks."""
        physical = self.columns.get(column)
        return "NULL" if physical is None else f"{alias}.{quote_ident(physical)}"

    def lacking(self, columns: tuple[str, ...]) -> list[str]:
        return [c for c in columns if c not in self.columns]


def dialect_of(conn: Checked) -> Dialect:
    return DUCKDB if isinstance(conn, duckdb.DuckDBPyConnection) else POSTGRES


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'",
        [table],
    ).fetchone()
    return bool(row and row[0])


def layout(conn: Checked, table: str) -> Layout | None:
    """Where ``table`` and its columns are in the database; None when there is no such table."""
    if isinstance(conn, duckdb.DuckDBPyConnection):
        columns = table_columns(conn, table)
        return Layout(table, {c: c for c in columns}) if columns else None
    columns = postgres_columns(conn, table)
    return Layout(physical_table_name(conn, table), columns) if columns else None


def _count(conn: Checked, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(str(row[0])) if row and row[0] is not None else 0


def _texts(conn: Checked, sql: str) -> list[str]:
    return [str(r[0]) for r in conn.execute(sql).fetchall()]


def _key_expr(dialect: Dialect, table: Layout, alias: str, columns: tuple[str, ...]) -> str:
    """The key as one text (parts joined by `` | ``), sorting by bytes on both warehouses."""
    parts = [f"CAST({table.ref(alias, c)} AS {dialect.text_type})" for c in columns]
    joined = parts[0] if len(parts) == 1 else "concat_ws(' | ', " + ", ".join(parts) + ")"
    return f"({joined}){dialect.collate}"


def _join(child: Layout, parent: Layout, child_cols: tuple[str, ...], parent_cols: tuple[str, ...]) -> str:
    return " AND ".join(
        f"{parent.ref('p', p)} = {child.ref('c', c)}" for c, p in zip(child_cols, parent_cols, strict=True)
    )


def _lacking_detail(table: str, lacking: list[str]) -> str:
    return f"{table} has no column {', '.join(lacking)} (read as NULL)" if lacking else ""


def orphans(
    conn: Checked,
    child_table: str,
    child_cols: tuple[str, ...],
    parent_table: str,
    parent_cols: tuple[str, ...],
    child_days: Sequence[date] | None = None,
) -> IntegrityResult:
    """Child rows whose (non-null) key has no parent row; only those of ``child_days`` (its
    ``_oe_partition``) when given and the child table is partitioned."""
    child = layout(conn, child_table)
    if child is None:
        return IntegrityResult(True, 0, detail=f"{child_table} does not exist yet: nothing to check")
    parent = layout(conn, parent_table)
    if parent is None:
        n = _count(conn, f"SELECT count(*) FROM {quote_ident(child.physical)}")
        return IntegrityResult(n == 0, n, detail=f"{parent_table} does not exist")
    not_null = " AND ".join(f"{child.ref('c', col)} IS NOT NULL" for col in child_cols)
    if child_days is not None and PARTITION_COLUMN in child.columns:
        days = ", ".join(f"CAST({quote_literal(d.isoformat())} AS DATE)" for d in child_days) or "NULL"
        not_null += f" AND {child.ref('c', PARTITION_COLUMN)} IN ({days})"
    base = f"""FROM {quote_ident(child.physical)} c WHERE {not_null} AND NOT EXISTS (
                 SELECT 1 FROM {quote_ident(parent.physical)} p WHERE {_join(child, parent, child_cols, parent_cols)})"""
    offending = _count(conn, f"SELECT count(*) {base}")
    key = _key_expr(dialect_of(conn), child, "c", child_cols)
    sample = _texts(conn, f"SELECT DISTINCT {key} AS k {base} ORDER BY k LIMIT {SAMPLE_SIZE}")
    lacking = [
        _lacking_detail(child_table, child.lacking(child_cols)),
        _lacking_detail(parent_table, parent.lacking(parent_cols)),
    ]
    return IntegrityResult(offending == 0, offending, sample, detail="; ".join(d for d in lacking if d))


def check_relation(
    conn: Checked, relation: Relation, own_days: Sequence[date] | None = None
) -> IntegrityResult:
    """Orphans child -> parent, and for 1:1 relations parent rows without a child too.

    ``own_days``: the days the checking run wrote. Where runs write at once (PostgreSQL), another
    run may be between its two steps: its parent rows committed, its child rows not yet. A parent
    row without its child is then only counted on the run's own days (a child row without its
    parent is counted everywhere: children are written after their parents)."""
    forward = orphans(
        conn, relation.child_table, relation.child_columns, relation.parent_table, relation.parent_columns
    )
    if not relation.one_to_one:
        return forward
    backward = orphans(
        conn,
        relation.parent_table,
        relation.parent_columns,
        relation.child_table,
        relation.child_columns,
        own_days,
    )
    sample = [f"{relation.child_table}: {k}" for k in forward.sample] + [
        f"{relation.parent_table}: {k}" for k in backward.sample
    ]
    return IntegrityResult(
        forward.passed and backward.passed,
        forward.offending_rows + backward.offending_rows,
        sample[:SAMPLE_SIZE],
        detail=(
            f"{forward.offending_rows} {relation.child_table} rows without a {relation.parent_table} row; "
            f"{backward.offending_rows} {relation.parent_table} rows without a {relation.child_table} row"
        ),
    )


def check_primary_key(conn: Checked, table: str, key: tuple[str, ...]) -> IntegrityResult:
    """Rows whose key is null, plus rows sharing a key with another row."""
    found = layout(conn, table)
    if found is None:
        return IntegrityResult(True, 0, detail=f"{table} does not exist yet: nothing to check")
    t = quote_ident(found.physical)
    any_null = " OR ".join(f"{found.ref('t', c)} IS NULL" for c in key)
    nulls = _count(conn, f"SELECT count(*) FROM {t} t WHERE {any_null}")
    dups, sample = _duplicate_keys(conn, found, key) if not found.lacking(key) else (0, [])
    if nulls:
        sample = ["<null key>", *sample][:SAMPLE_SIZE]
    detail = f"{nulls} null keys, {dups} rows sharing a key"
    lacking = _lacking_detail(table, found.lacking(key))
    return IntegrityResult(
        nulls + dups == 0, nulls + dups, sample, detail=f"{detail}; {lacking}" if lacking else detail
    )


def _duplicate_keys(conn: Checked, table: Layout, key: tuple[str, ...]) -> tuple[int, list[str]]:
    """Rows sharing a non-null key with another row, and the first keys they share."""
    cols = ", ".join(table.ref("t", c) for c in key)
    any_null = " OR ".join(f"{table.ref('t', c)} IS NULL" for c in key)
    grouped = f"SELECT {cols}, count(*) AS n FROM {quote_ident(table.physical)} t WHERE NOT ({any_null}) GROUP BY {cols} HAVING count(*) > 1"
    shared = f"SELECT {_key_expr(dialect_of(conn), table, 'd', key)} AS k, n FROM ({grouped}) d"
    dups = _count(conn, f"SELECT coalesce(sum(n), 0) FROM ({shared}) s")
    return dups, _texts(conn, f"{shared} ORDER BY k LIMIT {SAMPLE_SIZE}")


def undeclared_tables(conn: Checked, declared: Collection[str]) -> IntegrityResult:
    """Tables the flattener has created (``_oe_tables``) that the data-model file does not declare."""
    seen: list[str] = []
    if layout(conn, TABLES_TABLE) is not None:
        collate = dialect_of(conn).collate
        seen = _texts(conn, f"SELECT table_name FROM {TABLES_TABLE} ORDER BY table_name{collate}")
    undeclared = [t for t in seen if t not in declared]
    return IntegrityResult(
        not undeclared,
        len(undeclared),
        undeclared[:SAMPLE_SIZE],
        detail="undeclared tables: " + ", ".join(undeclared) if undeclared else "",
    )
