"""What one table of a batch needs of the warehouse before its rows go in (pure: no DuckDB).

The writer reads what the warehouse holds of the table (:class:`TableState`), says what the
batch brings (:class:`BatchColumn` per column), and :func:`plan_table` answers with a
:class:`TablePlan`: the table to create or the columns to add, the column types to change, the
casts to apply to the batch's values on insert, and the bookkeeping rows (``_oe_tables``,
``_oe_columns``) to write. The writer applies it. The rules are :mod:`oe_assets.warehouse.schema`'s:
columns are never dropped and values never lost; a column whose type no longer fits is widened,
or the batch is cast to the column's type when that is lossless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from oe_assets.flatten.naming import ColumnPath, TablePath
from oe_assets.warehouse.schema import BIGINT, DOUBLE, VARCHAR, SchemaChange, cast_expr, widened_type
from oe_assets.warehouse.sql import quote_ident

_REGISTRY_HINT = "flatten with the registry from load_registry()"


@dataclass(frozen=True, slots=True)
class BatchColumn:
    """One column of a batch's table."""

    data_type: str | None
    """the DuckDB type of its values; None when it holds only NULLs (which say nothing of a type)"""
    json_path: ColumnPath | None
    """its path from the table's row element; None for a system column (keys, constants)"""


@dataclass(slots=True)
class TableState:
    """What the warehouse holds of one table, as the writer knows it inside its transaction."""

    registered: tuple[str | None, TablePath] | None = None
    """(parent table, JSON path of its array) in ``_oe_tables``; None: not registered"""
    columns: dict[str, str] | None = None
    """column -> DuckDB type, in table order; None: there is no such table"""
    paths: dict[str, ColumnPath | None] = field(default_factory=dict)
    """column -> JSON path, as registered in ``_oe_columns``"""
    seen: dict[str, bool] = field(default_factory=dict)
    """column -> a non-null value was written to it (its ``_oe_columns.data_type`` is set)"""


@dataclass(frozen=True, slots=True)
class Retype:
    """A column whose type changes; ``had_values`` False: it held only NULLs so far."""

    column: str
    from_type: str
    to_type: str
    had_values: bool


@dataclass(slots=True)
class TablePlan:
    """The schema changes one batch's table needs, and the table's state once they are made."""

    table: str
    after: TableState
    create: list[tuple[str, str, bool]] | None = None
    """the columns of a table to create: (name, type, NOT NULL); None: the table exists"""
    register: tuple[str | None, TablePath] | None = None
    """(parent, JSON path) of a table to enter in ``_oe_tables``"""
    add: dict[str, str] = field(default_factory=dict)
    """columns to add to the existing table: name -> type, in the batch's order"""
    retype: list[Retype] = field(default_factory=list)
    casts: dict[str, str] = field(default_factory=dict)
    """column -> SQL of the batch's values as the column's type, where they differ"""
    new_columns: list[tuple[str, ColumnPath | None, str | None]] = field(default_factory=list)
    """rows for ``_oe_columns``: (column, JSON path, data type; None while only NULLs came)"""
    typed_columns: list[tuple[str, str | None]] = field(default_factory=list)
    """``_oe_columns`` rows whose data type changes: (column, data type)"""

    @property
    def schema_changes(self) -> list[SchemaChange]:
        return [
            SchemaChange(self.table, r.column, r.from_type if r.had_values else "NULL", r.to_type)
            for r in self.retype
        ]

    def select(self, column_names: list[str]) -> str:
        """The select list that inserts the batch's columns (``*`` when nothing is cast)."""
        if not self.casts:
            return "*"
        return ", ".join(
            f"{self.casts[c]} AS {quote_ident(c)}" if c in self.casts else quote_ident(c)
            for c in column_names
        )


def plan_table(
    table: str,
    *,
    parent: str | None,
    path: TablePath,
    batch: Mapping[str, BatchColumn],
    state: TableState,
    key_columns: set[str],
) -> TablePlan:
    """The plan that lets ``batch`` (column -> what it brings, in table order) into ``table``.

    ``key_columns`` are NOT NULL in a table created anew. Raises ``ValueError`` when the batch
    was flattened with names the warehouse gives to other paths (another registry than the
    warehouse's): writing it would mix two paths in one column.
    """
    _check_names(table, path, batch, state)
    register = None if state.registered is not None else (parent, tuple(path))
    if state.columns is None:
        return _new_table(table, register, batch, state, key_columns)
    return _existing_table(table, register, batch, state, state.columns)


def _check_names(table: str, path: TablePath, batch: Mapping[str, BatchColumn], state: TableState) -> None:
    if state.registered is not None and tuple(state.registered[1]) != tuple(path):
        raise ValueError(
            f"table {table!r} holds JSON path {list(state.registered[1])} in the warehouse but "
            f"{list(path)} in the batch: {_REGISTRY_HINT}"
        )
    owners = {c.casefold(): c for c in state.paths}
    for name, column in batch.items():
        owner = owners.get(name.casefold())
        if owner is not None and (owner != name or state.paths[owner] != column.json_path):
            raise ValueError(
                f"column {name!r} of table {table!r} (JSON path {column.json_path}) clashes "
                f"with warehouse column {owner!r} (JSON path {state.paths[owner]}): {_REGISTRY_HINT}"
            )


def _new_table(
    table: str,
    register: tuple[str | None, TablePath] | None,
    batch: Mapping[str, BatchColumn],
    state: TableState,
    key_columns: set[str],
) -> TablePlan:
    """A table the warehouse does not hold (new, or dropped by hand): created with the batch's
    columns, those holding only NULLs as VARCHAR until a value says their type."""
    columns = {name: column.data_type or VARCHAR for name, column in batch.items()}
    after = TableState(state.registered or register, columns, dict(state.paths), dict(state.seen))
    plan = TablePlan(table, after, create=[(c, t, c in key_columns) for c, t in columns.items()])
    plan.register = register
    for name, column in batch.items():
        if name in state.paths:  # the table was dropped by hand and is created anew
            plan.typed_columns.append((name, column.data_type))
        else:
            plan.new_columns.append((name, column.json_path, column.data_type))
        after.paths[name] = column.json_path
        after.seen[name] = column.data_type is not None
    return plan


def _existing_table(
    table: str,
    register: tuple[str | None, TablePath] | None,
    batch: Mapping[str, BatchColumn],
    state: TableState,
    existing: dict[str, str],
) -> TablePlan:
    """A table the warehouse holds (adopted when it is not registered): new columns added,
    then each column's type kept, taken from the batch, widened, or the batch's values cast."""
    by_folded_name = {c.casefold(): c for c in existing}
    added = {n: c.data_type or VARCHAR for n, c in batch.items() if n.casefold() not in by_folded_name}
    columns = {**existing, **added}
    after = TableState(state.registered or register, columns, dict(state.paths), dict(state.seen))
    plan = TablePlan(table, after, register=register, add=added)
    for name, column in batch.items():
        if name in added:
            plan.new_columns.append((name, column.json_path, column.data_type))
            after.paths[name] = column.json_path
            after.seen[name] = column.data_type is not None
            continue
        if by_folded_name[name.casefold()] != name:
            raise ValueError(
                f"column {name!r} of table {table!r} exists as {by_folded_name[name.casefold()]!r}"
            )
        if name not in after.paths:  # a column of an adopted table
            plan.new_columns.append((name, column.json_path, existing[name]))
            after.paths[name] = column.json_path
            after.seen[name] = True
        _plan_type(plan, name, column.data_type)
    for name, column in batch.items():  # columns that got their first non-null value here
        if column.data_type is not None and not after.seen.get(name, True):
            after.seen[name] = True
            if all(typed != name for typed, _ in plan.typed_columns):
                plan.typed_columns.append((name, columns[name]))
    return plan


def _plan_type(plan: TablePlan, name: str, batch_type: str | None) -> None:
    """How the batch's values of an existing column go in: as they are, cast, or by a retype."""
    after = plan.after
    assert after.columns is not None
    old = after.columns[name]
    column_sql = quote_ident(name)
    if batch_type is None or batch_type == old:
        if batch_type is None and old != VARCHAR:  # NULLs typed as the column
            plan.casts[name] = f"CAST({column_sql} AS {old})"
        return
    if not after.seen.get(name, True):  # only NULLs so far: the column takes the batch's type
        plan.retype.append(Retype(name, old, batch_type, had_values=False))
        after.columns[name] = batch_type
        after.seen[name] = True
        plan.typed_columns.append((name, batch_type))
        return
    if (old == DOUBLE and batch_type == BIGINT) or old == VARCHAR:  # lossless: cast the batch
        plan.casts[name] = cast_expr(column_sql, batch_type, old)
        return
    wide = widened_type(old, batch_type)
    plan.retype.append(Retype(name, old, wide, had_values=True))
    after.columns[name] = wide
    plan.typed_columns.append((name, wide))
    if wide != batch_type:
        plan.casts[name] = cast_expr(column_sql, batch_type, wide)
