"""Independent helpers for tests: counting what the JSON holds without the project's flattener."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import duckdb
import orjson

from oe_assets.core.timestamps import parse_oe_timestamp

REPO = Path(__file__).resolve().parents[2]
SAMPLES = (
    REPO / "oe_assets_tests" / "data" / "samples"
)  # copies of the OE samples, so the suite runs anywhere
EVENT_LOG_SCRIPT = (
    REPO / "oe_assets" / "sql" / "celonis_event_log.sql"
)  # the Celonis extractor's event-log script
EXTRACTOR_DOC = REPO.parent / "shared" / "seed" / "sending-data-from-oe-to-celonis.txt"  # only beside a clone


def created_day(doc: dict) -> date:
    ts = parse_oe_timestamp(doc["metadata"]["createdAt"])
    assert ts is not None
    return ts.date()


def array_elements(value: object) -> int:
    """How many child rows a document must produce: every element of every non-empty array, at any depth."""
    if isinstance(value, dict):
        return sum(array_elements(v) for v in value.values())
    if isinstance(value, list):
        return len(value) + sum(array_elements(v) for v in value)
    return 0


def doc_hash(doc: object) -> str:
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def table_names(conn: duckdb.DuckDBPyConnection, prefix: str) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows if str(r[0]).startswith(prefix)]


def count(conn: duckdb.DuckDBPyConnection, table: str, where: str = "", params: Iterable[object] = ()) -> int:
    quoted = '"' + table.replace('"', '""') + '"'
    row = conn.execute(f"SELECT count(*) FROM {quoted} {where}", list(params)).fetchone()
    assert row is not None
    return int(row[0])


def extractor_event_log_script(seed_doc: Path) -> str:
    """The event-log script of the Celonis extractor's documentation (its section 10), verbatim: from its CREATE TABLE to the end of its MERGE."""
    text = seed_doc.read_text()
    start = text.index("CREATE TABLE IF NOT EXISTS event_log")
    end = text.index("event_log_new.status);", start) + len("event_log_new.status);")
    return text[start:end]


def run_extractor_script_on_copy(warehouse: Path, tmp_dir: Path, script: str) -> list[tuple]:
    """Run the extractor's script on a copy of the warehouse where our event_log is moved aside."""
    copy = tmp_dir / "seed_copy.duckdb"
    shutil.copyfile(warehouse, copy)
    conn = duckdb.connect(str(copy))
    try:
        conn.execute("ALTER TABLE event_log RENAME TO event_log_ours")
        for statement in [s for s in script.split(";") if s.strip()]:
            conn.execute(statement)
        return conn.execute("SELECT * FROM event_log ORDER BY instance_id").fetchall()
    finally:
        conn.close()
