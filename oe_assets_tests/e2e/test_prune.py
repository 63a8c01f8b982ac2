"""`oe-assets prune --deleted`: the one way marked contexts leave the warehouse, as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from oe_assets.definitions import build_definitions
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets_tests.support.helpers import REPO, created_day, table_names
from oe_assets_tests.support.reliability_support import (
    new_simulator,
    resources_for,
    warehouse_snapshot,
    world_days,
)

ROOT = REPO
KEYS = {"raw_process_contexts": "process_id", "raw_process_context_status_history": "process_id"}
KEYS |= {"event_log": "instance_id", "activity_log": "case_id"}


def _prune(warehouse: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OE_")}
    return subprocess.run(
        [sys.executable, "-m", "oe_assets.cli", "prune", "--deleted", "--warehouse", str(warehouse), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _rows_of(warehouse: Path, ids: set[str]) -> dict[str, int]:
    """Rows per table that belong to ``ids`` (every table that holds process contexts)."""
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        keys = KEYS | {t: "context$processid" for t in table_names(conn, "execution_context")}
        return {
            table: int(
                conn.execute(
                    f'SELECT count(*) FROM "{table}" WHERE list_contains(?, "{key}")', [sorted(ids)]
                ).fetchone()[0]  # type: ignore[index]
            )
            for table, key in keys.items()
        }
    finally:
        conn.close()


def test_prune_removes_marked_contexts_from_every_table_only_when_asked(tmp_path: Path) -> None:
    warehouse = tmp_path / "oe.duckdb"
    with (
        new_simulator(175, days=1, contexts_per_day=10) as server,
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
    ):
        defs = build_definitions(resources_for(server, warehouse))
        days = world_days(server)
        assert run_whole_graph(defs, days[0], days[-1], instance=instance).success
        day = days[0]
        gone = sorted(c["context"]["processid"] for c in server.world.contexts() if created_day(c) == day)[:3]
        for pid in gone:
            server.world.delete_context(pid)
        assert run_whole_graph(defs, day, day, instance=instance).success
        held = _rows_of(warehouse, set(gone))
        assert held["execution_context"] == held["event_log"] == held["raw_process_contexts"] == 3
        assert sum(n for t, n in held.items() if t.startswith("execution_context$")) > 0
        before = warehouse_snapshot(warehouse)

        dry = _prune(warehouse, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.startswith(f"Dry run: would remove 3 contexts marked deleted from {warehouse}:")
        for table, n in held.items():
            assert re.search(rf"^  {re.escape(table)} +{n} rows$", dry.stdout, re.MULTILINE), (
                table,
                dry.stdout,
            )
        assert warehouse_snapshot(warehouse) == before

        today = datetime.now(UTC).date()
        early = _prune(warehouse, "--before", today.isoformat())  # the marks were set today
        assert early.returncode == 0, early.stderr
        assert early.stdout.startswith(f"Removed 0 contexts marked deleted before {today}")
        assert warehouse_snapshot(warehouse) == before

        pruned = _prune(warehouse, "--before", (today + timedelta(days=1)).isoformat())
        assert pruned.returncode == 0, pruned.stderr
        assert pruned.stdout.startswith("Removed 3 contexts marked deleted")
        assert set(_rows_of(warehouse, set(gone)).values()) == {0}
        after = warehouse_snapshot(warehouse)
        for table, n in held.items():
            assert len(before[table]) - len(after[table]) == n, table

        # nothing comes back, nothing else is touched, every check still passes
        refresh = run_whole_graph(defs, day, day, instance=instance)
        assert refresh.success, refresh.failure
        assert [c for c in refresh.checks if not c.passed] == []
        assert set(_rows_of(warehouse, set(gone)).values()) == {0}


def test_prune_names_a_bad_option_in_one_line(tmp_path: Path) -> None:
    missing = _prune(tmp_path / "nowhere.duckdb")
    assert missing.returncode == 1
    assert (
        missing.stderr
        == f"oe-assets prune failed: --warehouse {tmp_path / 'nowhere.duckdb'} does not exist\n"
    )
    (tmp_path / "w.duckdb").touch()
    bad_day = _prune(tmp_path / "w.duckdb", "--before", "2025-3-1")
    assert bad_day.returncode == 1
    assert bad_day.stderr == "oe-assets prune failed: --before '2025-3-1' is not a date: use YYYY-MM-DD\n"
