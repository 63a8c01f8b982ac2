"""JSON documents -> Celonis-shaped tables (pure: pyarrow only).

See ``docs/table-model.md`` for the naming rules and :mod:`oe_assets.flatten.naming`
for the path conventions.
"""

from oe_assets.flatten.flattener import (
    TIMESTAMP_PATTERN,
    FlatBatch,
    FlatStats,
    Flattener,
    QuarantinedRecord,
    TypeConflict,
    UnparsableDocument,
)
from oe_assets.flatten.naming import (
    ACCOUNTS,
    CONTEXTS,
    FAMILIES,
    LOADED_AT,
    PARENT_ROW_ID,
    PARTITION,
    POSITION,
    RESERVED_COLUMNS,
    ROW_ID,
    TEMPLATES,
    VALUE_COLUMN,
    ColumnPath,
    TableFamily,
    TablePath,
)
from oe_assets.flatten.reassemble import reassemble
from oe_assets.flatten.registry import (
    Collision,
    RegisteredColumn,
    RegisteredTable,
    RegistryRows,
    SchemaRegistry,
)

__all__ = [
    "ACCOUNTS",
    "CONTEXTS",
    "FAMILIES",
    "LOADED_AT",
    "PARENT_ROW_ID",
    "PARTITION",
    "POSITION",
    "RESERVED_COLUMNS",
    "ROW_ID",
    "TEMPLATES",
    "TIMESTAMP_PATTERN",
    "VALUE_COLUMN",
    "Collision",
    "ColumnPath",
    "FlatBatch",
    "FlatStats",
    "Flattener",
    "QuarantinedRecord",
    "RegisteredColumn",
    "RegisteredTable",
    "RegistryRows",
    "SchemaRegistry",
    "TableFamily",
    "TablePath",
    "TypeConflict",
    "UnparsableDocument",
    "reassemble",
]
