"""SQL that finds broken keys: orphans of a relation, null or duplicate primary keys."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import duckdb

from oe_assets.model.declaration import Relation
from oe_assets.warehouse import TABLES_TABLE, quote_ident

SAMPLE_SIZE = 10


@dataclass
class IntegrityResult:
    passed: bool
    offending_rows: int
    sample: list[str] = field(default_factory=list)
    detail: str = ""


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'",
        [table],
    ).fetchone()
    return bool(row and row[0])


def _key_expr(alias: str, columns: tuple[str, ...]) -> str:
    parts = [f"CAST({alias}.{quote_ident(c)} AS VARCHAR)" for c in columns]
    return parts[0] if len(parts) == 1 else "concat_ws(' | ', " + ", ".join(parts) + ")"


def _join(child: str, parent: str, child_cols: tuple[str, ...], parent_cols: tuple[str, ...]) -> str:
    return " AND ".join(
        f"{parent}.{quote_ident(p)} = {child}.{quote_ident(c)}"
        for c, p in zip(child_cols, parent_cols, strict=True)
    )


def orphans(
    conn: duckdb.DuckDBPyConnection,
    child_table: str,
    child_cols: tuple[str, ...],
    parent_table: str,
    parent_cols: tuple[str, ...],
) -> IntegrityResult:
    """Child rows whose (non-null) key has no parent row."""
    if not table_exists(conn, child_table):
        return IntegrityResult(True, 0, detail=f"{child_table} does not exist yet: nothing to check")
    if not table_exists(conn, parent_table):
        total = conn.execute(f"SELECT count(*) FROM {quote_ident(child_table)}").fetchone()
        n = int(total[0]) if total else 0
        return IntegrityResult(n == 0, n, detail=f"{parent_table} does not exist")
    not_null = " AND ".join(f"c.{quote_ident(col)} IS NOT NULL" for col in child_cols)
    base = f"""FROM {quote_ident(child_table)} c WHERE {not_null} AND NOT EXISTS (
                 SELECT 1 FROM {quote_ident(parent_table)} p WHERE {_join("c", "p", child_cols, parent_cols)})"""
    row = conn.execute(f"SELECT count(*) {base}").fetchone()
    offending = int(row[0]) if row else 0
    sample = [
        str(r[0])
        for r in conn.execute(
            f"SELECT DISTINCT {_key_expr('c', child_cols)} AS k {base} ORDER BY k LIMIT {SAMPLE_SIZE}"
        ).fetchall()
    ]
    return IntegrityResult(offending == 0, offending, sample)


def check_relation(conn: duckdb.DuckDBPyConnection, relation: Relation) -> IntegrityResult:
    """Orphans child -> parent, and for 1:1 relations parent rows without a child too."""
    forward = orphans(
        conn, relation.child_table, relation.child_columns, relation.parent_table, relation.parent_columns
    )
    if not relation.one_to_one:
        return forward
    backward = orphans(
        conn, relation.parent_table, relation.parent_columns, relation.child_table, relation.child_columns
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


def check_primary_key(conn: duckdb.DuckDBPyConnection, table: str, key: tuple[str, ...]) -> IntegrityResult:
    """Rows whose key is null, plus rows sharing a key with another row."""
    if not table_exists(conn, table):
        return IntegrityResult(True, 0, detail=f"{table} does not exist yet: nothing to check")
    any_null = " OR ".join(f"{quote_ident(c)} IS NULL" for c in key)
    cols = ", ".join(quote_ident(c) for c in key)
    t = quote_ident(table)
    nulls_row = conn.execute(f"SELECT count(*) FROM {t} WHERE {any_null}").fetchone()
    nulls = int(nulls_row[0]) if nulls_row else 0
    dup_sql = f"SELECT {_key_expr('d', key)} AS k, n FROM (SELECT {cols}, count(*) AS n FROM {t} WHERE NOT ({any_null}) GROUP BY ALL HAVING count(*) > 1) d"
    dup_row = conn.execute(f"SELECT coalesce(sum(n), 0) FROM ({dup_sql})").fetchone()
    dups = int(dup_row[0]) if dup_row else 0
    sample = [str(r[0]) for r in conn.execute(f"{dup_sql} ORDER BY k LIMIT {SAMPLE_SIZE}").fetchall()]
    if nulls:
        sample = ["<null key>", *sample][:SAMPLE_SIZE]
    return IntegrityResult(
        nulls + dups == 0, nulls + dups, sample, detail=f"{nulls} null keys, {dups} rows sharing a key"
    )


def undeclared_tables(conn: duckdb.DuckDBPyConnection, declared: Collection[str]) -> IntegrityResult:
    """Tables the flattener has created (``_oe_tables``) that the data-model file does not declare."""
    seen: list[str] = []
    if table_exists(conn, TABLES_TABLE):
        seen = [
            str(r[0]) for r in conn.execute(f"SELECT table_name FROM {TABLES_TABLE} ORDER BY 1").fetchall()
        ]
    undeclared = [t for t in seen if t not in declared]
    return IntegrityResult(
        not undeclared,
        len(undeclared),
        undeclared[:SAMPLE_SIZE],
        detail="undeclared tables: " + ", ".join(undeclared) if undeclared else "",
    )
