"""Transactional writes of flattened batches into DuckDB.

:func:`replace_partition` replaces one partition of a whole table family (root table, every
child table, the family's quarantine rows) in ONE transaction: either the new content is there
in full, or the previous content is untouched. Batches are consumed lazily, so memory does not
grow with the partition. :func:`replace_all` does the same for unpartitioned families.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from oe_assets.flatten.flattener import FlatBatch, QuarantinedRecord, TypeConflict
from oe_assets.flatten.naming import PARENT_ROW_ID, POSITION, ROW_ID, TableFamily
from oe_assets.flatten.registry import Collision, RegisteredColumn, RegisteredTable, SchemaRegistry
from oe_assets.warehouse.memory import MemoryLimit
from oe_assets.warehouse.plan import BatchColumn, TablePlan, TableState, plan_table
from oe_assets.warehouse.schema import (
    COLUMNS_TABLE,
    QUARANTINE_TABLE,
    TABLES_TABLE,
    SchemaChange,
    add_column,
    all_table_columns,
    alter_column_type,
    bookkeeping_exists,
    create_table,
    duckdb_type,
    ensure_bookkeeping,
    is_typeless,
    table_columns,
)
from oe_assets.warehouse.sql import quote_ident, quote_literal

_view_counter = itertools.count()
ALTER_BUDGET = 250_000
"""Column versions (columns added x the table's width) beyond which a table is rebuilt rather
than altered column by column (see ``_FamilyWriter._add_columns``)."""


@dataclass(slots=True)
class WriteReport:
    rows_per_table: dict[str, int] = field(default_factory=dict)
    """rows inserted per table of the batches (0 for a table a batch had without rows)"""
    quarantined: int = 0
    collisions: list[Collision] = field(default_factory=list)
    type_conflicts: list[TypeConflict] = field(default_factory=list)
    schema_changes: list[SchemaChange] = field(default_factory=list)
    new_tables: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    new_columns: list[tuple[str, str]] = field(default_factory=list)
    """(table, column) added to tables that existed before (new tables' columns not listed)"""
    deleted_rows: dict[str, int] = field(default_factory=dict)
    """rows of the previous content deleted per table"""
    batches: int = 0

    @property
    def rows(self) -> int:
        return sum(self.rows_per_table.values())


# --------------------------------------------------------------------- transactions
_open_transactions: dict[int, int] = {}  # id(conn) -> nesting depth of transaction() blocks


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` ... ``COMMIT``; ``ROLLBACK`` and re-raise on any error.

    A ``transaction()`` block inside another one on the same connection joins it (the outer
    block commits or rolls back). Do not open one while a transaction begun by hand with
    ``BEGIN`` is open on ``conn``: DuckDB refuses the second ``BEGIN`` and aborts the first.
    """
    key = id(conn)
    depth = _open_transactions.get(key, 0)
    if depth:
        _open_transactions[key] = depth + 1
        try:
            yield conn  # nested: the outer block decides
        finally:
            _open_transactions[key] = depth
        return
    conn.execute("BEGIN TRANSACTION")
    _open_transactions[key] = 1
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # the original error matters more
            conn.execute("ROLLBACK")
        raise
    finally:
        _open_transactions.pop(key, None)


# ------------------------------------------------------------------------- registry
def load_registry(conn: duckdb.DuckDBPyConnection, family: TableFamily) -> SchemaRegistry:
    """The family's persisted :class:`SchemaRegistry` (empty if nothing was written yet)."""
    if not bookkeeping_exists(conn):
        return SchemaRegistry()
    tables_sql, columns_sql = registry_queries("?")
    tables = conn.execute(tables_sql, [family.root_table]).fetchall()
    columns = conn.execute(columns_sql, [family.root_table]).fetchall()
    return registry_from_rows(tables, columns)


def registry_queries(placeholder: str) -> tuple[str, str]:
    """The two catalog queries a family's registry is read with (its family as ``placeholder``:
    ``?`` in DuckDB, ``%s`` in psycopg), in the order the names were first given."""
    return (
        f"SELECT table_name, parent_table, json_path FROM {TABLES_TABLE} WHERE family = {placeholder} "
        "ORDER BY first_seen, table_name",
        f"SELECT c.table_name, c.column_name, c.json_path FROM {COLUMNS_TABLE} c "
        f"JOIN {TABLES_TABLE} t ON t.table_name = c.table_name WHERE t.family = {placeholder} "
        "ORDER BY c.first_seen, c.table_name, c.column_name",
    )


def registry_from_rows(
    tables: Iterable[tuple[Any, ...]], columns: Iterable[tuple[Any, ...]]
) -> SchemaRegistry:
    """The registry of the catalog's rows: ``(table, parent, json path)`` of ``_oe_tables`` and
    ``(table, column, json path)`` of ``_oe_columns``, each in the order they were first seen
    (the same on every warehouse)."""
    return SchemaRegistry.from_rows(
        [RegisteredTable(name, parent, path_from_json(path) or ()) for name, parent, path in tables],
        [RegisteredColumn(table, column, path_from_json(path)) for table, column, path in columns],
    )


def path_from_json(text: str | None) -> Any:
    if text is None:
        return None
    value = orjson.loads(text)
    return None if value is None else tuple(value)


def path_to_json(path: tuple[Any, ...] | None) -> str | None:
    return None if path is None else orjson.dumps(list(path)).decode()


# ---------------------------------------------------------------------------- writes
def replace_partition(
    conn: duckdb.DuckDBPyConnection,
    family: TableFamily,
    partition_key: str,
    batches: Iterable[FlatBatch],
    *,
    partition_column: str = "_oe_partition",
) -> WriteReport:
    """Replaces partition ``partition_key`` of every table of ``family`` with ``batches``.

    One transaction: each batch is written (schema evolved as needed), then the partition's
    previous rows are deleted from EVERY table of the family known to the warehouse (so child
    rows of arrays that shrank do not linger); the family's quarantine rows of that partition
    are replaced too. Any error rolls everything back and is re-raised. Every batch must carry
    ``partition_column`` as a constant column equal to ``partition_key``.
    """
    return _FamilyWriter(conn, family, partition_key, partition_column).run(batches)


def replace_all(
    conn: duckdb.DuckDBPyConnection, family: TableFamily, batches: Iterable[FlatBatch]
) -> WriteReport:
    """Replaces the whole content of an unpartitioned family (templates, accounts)."""
    return _FamilyWriter(conn, family, None, None).run(batches)


class _FamilyWriter:
    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        family: TableFamily,
        partition_key: str | None,
        partition_column: str | None,
    ) -> None:
        self.conn = conn
        self.family = family
        self.partition_key = partition_key
        self.partition_column = partition_column
        self.report = WriteReport()
        self.now = datetime.now(UTC).replace(tzinfo=None)
        self.state: dict[str, TableState] = {}
        """what the warehouse holds of each table met, loaded inside the transaction and kept
        up to date by our own DDL (the family's registered tables, then those of the batches)"""
        self.previous: dict[str, int] = {}  # table -> largest row id of the partition's previous rows
        self.memory = MemoryLimit(conn)

    # ------------------------------------------------------------------ main
    def run(self, batches: Iterable[FlatBatch]) -> WriteReport:
        try:
            with transaction(self.conn):
                ensure_bookkeeping(self.conn)
                self._load_state()
                self.previous = self._previous_rows()
                self._delete_previous_quarantine()
                for batch in batches:
                    self._write_batch(batch)
                self._delete_previous(self.previous)
        finally:
            with contextlib.suppress(duckdb.Error):  # a broken connection: its error matters more
                self.memory.restore()
        return self.report

    def _load_state(self) -> None:
        fam = self.family.root_table
        for name, parent, path in self.conn.execute(
            f"SELECT table_name, parent_table, json_path FROM {TABLES_TABLE} WHERE family = ?", [fam]
        ).fetchall():
            self.state[name] = TableState(registered=(parent, path_from_json(path) or ()))
        for table, column, path, dtype in self.conn.execute(
            f"SELECT c.table_name, c.column_name, c.json_path, c.data_type FROM {COLUMNS_TABLE} c "
            f"JOIN {TABLES_TABLE} t ON t.table_name = c.table_name WHERE t.family = ?",
            [fam],
        ).fetchall():
            self.state[table].paths[column] = path_from_json(path)
            self.state[table].seen[column] = dtype is not None
        existing = all_table_columns(self.conn)  # one catalog query instead of one per table
        for table, state in self.state.items():
            state.columns = existing.get(table)

    def _table_state(self, table: str) -> TableState:
        state = self.state.get(table)
        if state is None:
            state = self.state[table] = TableState(columns=table_columns(self.conn, table))
        return state

    def _partition_filter(self, table: str) -> tuple[str, list[Any]] | None:
        """``(SQL condition, params)`` selecting the partition's rows of ``table`` (None: it has none)."""
        cols = self._table_state(table).columns
        if cols is None:
            return None  # registered but dropped by hand: nothing to delete
        if self.partition_column is None:
            return "TRUE", []
        ptype = cols.get(self.partition_column)
        if ptype is None:
            return None  # never held partitioned rows
        # A literal, not a parameter: parameterised statements cost more per call in duckdb-python.
        return (
            f"{quote_ident(self.partition_column)} = CAST({quote_literal(self.partition_key or '')} AS {ptype})",
            [],
        )

    def _previous_rows(self) -> dict[str, int]:
        """Per table, the largest row id of the partition's previous rows (before any insert).

        The previous rows are deleted after the new ones are written, because DuckDB cannot
        commit a transaction that deletes rows of a table and then alters it (ADD COLUMN, SET
        DATA TYPE: a refreshed document that gained a key or changed a type). Rows inserted by
        this transaction get row ids above every committed one, so ``rowid <= bound`` selects
        exactly the previous rows at the end.
        """
        parts = []
        for table in self.state:
            where = self._partition_filter(table)
            if where is not None:
                parts.append(
                    f"SELECT {quote_literal(table)} AS t, max(rowid) AS m FROM {quote_ident(table)} WHERE {where[0]}"
                )
        if not parts:
            return {}
        rows = self.conn.execute(" UNION ALL ".join(parts)).fetchall()  # one statement for the family
        return {str(table): int(bound) for table, bound in rows if bound is not None}

    def _delete_previous(self, bounds: dict[str, int]) -> None:
        for table, bound in bounds.items():
            where = self._partition_filter(table)
            if where is None:
                continue
            row = self.conn.execute(
                f"DELETE FROM {quote_ident(table)} WHERE rowid <= {int(bound)} AND {where[0]}", where[1]
            ).fetchone()
            if row and row[0]:
                self.report.deleted_rows[table] = int(row[0])

    def _delete_previous_quarantine(self) -> None:
        fam = self.family.root_table
        if self.partition_column is None:
            self.conn.execute(f"DELETE FROM {QUARANTINE_TABLE} WHERE family = ?", [fam])
        else:
            self.conn.execute(
                f"DELETE FROM {QUARANTINE_TABLE} WHERE family = ? AND partition_key = ?",
                [fam, self.partition_key],
            )

    # ----------------------------------------------------------------- batch
    def _write_batch(self, batch: FlatBatch) -> None:
        if batch.family.root_table != self.family.root_table:
            raise ValueError(
                f"batch of family {batch.family.root_table!r} given to a write of {self.family.root_table!r}"
            )
        if self.partition_column is not None:
            self._check_partition(batch)
        rep = self.report
        rep.batches += 1
        rep.collisions.extend(batch.collisions)
        rep.type_conflicts.extend(batch.type_conflicts)
        rep.duplicates.extend(batch.duplicates)
        new_columns: list[tuple[str, str, Any, str | None]] = []  # table, column, path, data type
        typed_columns: list[tuple[str, str, str | None]] = []  # table, column, data type
        for table, tbl in batch.tables.items():
            plan = self._write_table(batch, table, tbl)
            new_columns.extend((table, c, path, t) for c, path, t in plan.new_columns)
            typed_columns.extend((table, c, t) for c, t in plan.typed_columns)
        self._register_columns(new_columns)
        for table, column, dtype in typed_columns:
            self.conn.execute(
                f"UPDATE {COLUMNS_TABLE} SET data_type = ? WHERE table_name = ? AND column_name = ?",
                [dtype, table, column],
            )
        if batch.quarantined:
            self._quarantine(batch.quarantined)

    def _check_partition(self, batch: FlatBatch) -> None:
        assert self.partition_column is not None
        assert self.partition_key is not None
        if self.partition_column not in batch.constants:
            raise ValueError(
                f"batch has no constant column {self.partition_column!r}: flatten it with "
                f"constant_columns={{{self.partition_column!r}: <partition {self.partition_key}>}}"
            )
        value = batch.constants[self.partition_column]
        if not _same_partition(value, self.partition_key):
            raise ValueError(
                f"batch belongs to partition {value!r}, not to {self.partition_key!r} being replaced"
            )

    def _write_table(self, batch: FlatBatch, table: str, tbl: pa.Table) -> TablePlan:
        """Plans what ``tbl`` needs of the warehouse, applies that, then inserts its rows."""
        parent = batch.parents.get(table)
        json_paths = batch.json_paths.get(table, {})
        columns = {
            f.name: BatchColumn(self._batch_type(tbl, f), _tuple_or_none(json_paths.get(f.name)))
            for f in tbl.schema
        }
        plan = plan_table(
            table,
            parent=parent,
            path=batch.table_paths.get(table, ()),
            batch=columns,
            state=self._table_state(table),
            key_columns=self._key_columns(parent),
        )
        self._apply(plan)
        if tbl.num_rows:
            self._insert_arrow(table, tbl, plan.select(tbl.column_names))
        self.report.rows_per_table[table] = self.report.rows_per_table.get(table, 0) + tbl.num_rows
        return plan

    def _apply(self, plan: TablePlan) -> None:
        """The plan's DDL and ``_oe_tables`` row; the table's state becomes the plan's."""
        table, rep, after = plan.table, self.report, plan.after
        assert after.columns is not None
        if plan.create is not None:
            self.memory.cover(table, len(plan.create))
            create_table(self.conn, table, plan.create)
            rep.new_tables.append(table)
        if plan.register is not None:
            parent, path = plan.register
            self.conn.execute(
                f"INSERT INTO {TABLES_TABLE} VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [table, self.family.root_table, parent, path_to_json(path), self.now],
            )
        if plan.create is None:
            existing = self.state[table].columns
            assert existing is not None
            self._add_columns(table, existing, plan.add)
            rep.new_columns.extend((table, column) for column in plan.add)
            self.memory.cover(table, len(after.columns))
        for retype in plan.retype:
            alter_column_type(self.conn, table, retype.column, retype.from_type, retype.to_type)
        rep.schema_changes.extend(plan.schema_changes)
        self.state[table] = after

    def _batch_type(self, tbl: pa.Table, f: pa.Field) -> str | None:
        """The DuckDB type of a batch column's values (None: only NULLs)."""
        if is_typeless(tbl.column(f.name)):
            return None
        return duckdb_type(f.type) or self._describe_type(tbl, f.name)

    def _register_columns(self, new_columns: list[tuple[str, str, Any, str | None]]) -> None:
        """Rows for ``_oe_columns``, inserted as Arrow: ``executemany`` was far slower for thousands
        of new columns (``docs/bench/findings.md``, "Loader rules")."""
        if not new_columns:
            return
        self._insert_arrow(
            COLUMNS_TABLE,
            pa.table(
                {
                    "table_name": pa.array([t for t, _, _, _ in new_columns], pa.string()),
                    "column_name": pa.array([c for _, c, _, _ in new_columns], pa.string()),
                    "json_path": pa.array([path_to_json(p) for _, _, p, _ in new_columns], pa.string()),
                    "data_type": pa.array([d for _, _, _, d in new_columns], pa.string()),
                    "first_seen": pa.array([self.now] * len(new_columns), pa.timestamp("us")),
                }
            ),
            "*",
        )

    def _quarantine(self, records: list[QuarantinedRecord]) -> None:
        self._insert_arrow(
            QUARANTINE_TABLE,
            pa.table(
                {
                    "family": pa.array([q.family for q in records], pa.string()),
                    "partition_key": pa.array([self.partition_key] * len(records), pa.string()),
                    "record_key": pa.array([q.record_key for q in records], pa.string()),
                    "reason": pa.array([q.reason for q in records], pa.string()),
                    "document": pa.array([q.document for q in records], pa.string()),
                    "quarantined_at": pa.array([self.now] * len(records), pa.timestamp("us")),
                }
            ),
            "*",
        )
        self.report.quarantined += len(records)

    def _add_columns(self, table: str, existing: dict[str, str], added: dict[str, str]) -> None:
        """Adds the ``added`` columns (name -> type) after the ``existing`` ones of ``table``.

        ``ALTER TABLE ADD COLUMN`` keeps every earlier version of the table until the commit, so
        k columns added to a table of w cost k * (w + k/2) column versions, outside DuckDB's
        memory limit (figures in ``docs/bench/findings.md``, "Loader rules"). Beyond
        :data:`ALTER_BUDGET` the table is rebuilt with every column at once instead.
        """
        if len(added) * (len(existing) + len(added) // 2) > ALTER_BUDGET:
            self._rebuild(table, existing, added)
            return
        for column, dtype in added.items():
            add_column(self.conn, table, column, dtype)

    def _rebuild(self, table: str, existing: dict[str, str], added: dict[str, str]) -> None:
        """``table`` anew with ``added`` after its columns: its rows copied, except the partition's
        previous rows, which the copy drops instead of :meth:`_delete_previous` (row ids change)."""
        conn = self.conn
        not_null = {
            str(name)
            for (name,) in conn.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = current_schema() AND table_name = ? AND NOT is_nullable",
                [table],
            ).fetchall()
        }
        columns = {**existing, **added}
        keep, bound = "TRUE", self.previous.pop(table, None)
        where = self._partition_filter(table)
        if bound is not None and where is not None:
            keep = f"NOT (rowid <= {int(bound)} AND {where[0]})"
        rows = conn.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()
        before = int(rows[0]) if rows else 0
        self.memory.cover(table, len(columns), copied_rows=before)
        wide = f"__oe_rebuild_{next(_view_counter)}"
        create_table(conn, wide, [(c, t, c in not_null) for c, t in columns.items()])
        copied = conn.execute(
            f"INSERT INTO {quote_ident(wide)} BY NAME SELECT * FROM {quote_ident(table)} WHERE {keep}"
        ).fetchone()
        conn.execute(f"DROP TABLE {quote_ident(table)}")
        conn.execute(f"ALTER TABLE {quote_ident(wide)} RENAME TO {quote_ident(table)}")
        deleted = before - (int(copied[0]) if copied else 0)
        if deleted:
            self.report.deleted_rows[table] = deleted

    def _key_columns(self, parent: str | None) -> set[str]:
        """The columns that are NOT NULL in a table created anew."""
        if parent is None:
            return {self.family.root_key_natural_column}
        return {self.family.root_key_column, ROW_ID, PARENT_ROW_ID, POSITION}

    def _describe_type(self, tbl: pa.Table, col: str) -> str:
        view = f"__oe_describe_{next(_view_counter)}"
        self.conn.register(view, tbl.select([col]).slice(0, 0))
        try:
            row = self.conn.execute(f"DESCRIBE SELECT * FROM {quote_ident(view)}").fetchone()
        finally:
            self.conn.unregister(view)
        assert row is not None
        return str(row[1])

    def _insert_arrow(self, table: str, tbl: pa.Table, exprs: str) -> None:
        view = f"__oe_batch_{next(_view_counter)}"
        self.conn.register(view, tbl)
        try:
            self.conn.execute(
                f"INSERT INTO {quote_ident(table)} BY NAME SELECT {exprs} FROM {quote_ident(view)}"
            )
        finally:
            self.conn.unregister(view)


def _tuple_or_none(path: Any) -> Any:
    return None if path is None else tuple(path)


def _same_partition(value: object, key: str) -> bool:
    if isinstance(value, datetime):
        return value.isoformat() == key or (
            value.time() == datetime.min.time() and value.date().isoformat() == key
        )
    if isinstance(value, date):
        return value.isoformat() == key
    return str(value) == key
