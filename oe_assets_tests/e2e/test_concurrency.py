"""One writer per DuckDB file: concurrent runs both succeed, a killed writer frees the warehouse, and
a run waiting on the API does not hold it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from oe_assets.definitions import build_definitions
from oe_assets.orchestration.runner import GraphRunReport, run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.simulator.world import ContextPage
from oe_assets.warehouse.locking import WarehouseBusyError, exclusive_file_lock, lock_path_for
from oe_assets_tests.support.helpers import REPO, created_day
from oe_assets_tests.support.reliability_support import new_simulator, resources_for, world_days

ROOT = REPO


def test_two_materializations_started_together_both_succeed_with_all_rows(tmp_path: Path) -> None:
    warehouse = tmp_path / "shared.duckdb"
    with SimulatorServer(seed=21, days=3, contexts_per_day=30) as server:
        contexts = server.world.contexts()
        days = sorted({created_day(c) for c in contexts})[:2]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OE_")}
        env.update(
            DAGSTER_HOME=str(tmp_path / "home"),
            OE_API_URL=server.url,
            OE_CLIENT_ID=server.client_id,
            OE_CLIENT_SECRET=server.client_secret,
            OE_WAREHOUSE=str(warehouse),
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "oe_assets.cli", "materialize", "--start", day.isoformat()],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for day in days
        ]
        outcomes = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "Materialized" in out
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        landed = {r[0] for r in conn.execute('SELECT "context$processid" FROM execution_context').fetchall()}
        logged = {r[0] for r in conn.execute("SELECT instance_id FROM event_log").fetchall()}
    finally:
        conn.close()
    expected = {c["context"]["processid"] for c in contexts if created_day(c) in days}
    assert landed == expected
    assert logged == expected


def test_a_killed_writer_cannot_hold_the_warehouse(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from pathlib import Path
                from oe_assets.warehouse.locking import exclusive_file_lock, lock_path_for
                with exclusive_file_lock(lock_path_for(Path({str(database)!r}))):
                    print("locked", flush=True)
                    time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    with (
        pytest.raises(WarehouseBusyError, match="held by another process"),
        exclusive_file_lock(lock_path_for(database), timeout_seconds=0.3),
    ):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    with exclusive_file_lock(lock_path_for(database), timeout_seconds=5):
        pass
    assert time.monotonic() - started < 10


PROBE = """
import sys, duckdb
from oe_assets.warehouse.locking import exclusive_file_lock, lock_path_for
database = sys.argv[1]
with exclusive_file_lock(lock_path_for(database), timeout_seconds=5):
    conn = duckdb.connect(database)  # for writing: DuckDB refuses while another process has it open
    print(conn.execute("SELECT count(*) FROM raw_execution_templates").fetchone()[0], flush=True)
    conn.close()
"""


def test_another_process_opens_the_warehouse_while_a_run_waits_on_a_slow_api(tmp_path: Path) -> None:
    """The API is read into a stage, not into the warehouse: while every process-contexts request
    hangs, another process takes the warehouse's lock and opens it for writing."""
    warehouse = tmp_path / "oe.duckdb"
    with (
        new_simulator(180, days=1, contexts_per_day=5) as server,
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
    ):
        defs = build_definitions(resources_for(server, warehouse, timeout_seconds=60.0))
        days = world_days(server)
        waiting, release = threading.Event(), threading.Event()
        honest = server.world.page

        def slow_page(template_id: str, **kwargs: Any) -> ContextPage:
            waiting.set()
            release.wait(timeout=60)
            return honest(template_id, **kwargs)

        server.world.page = slow_page  # type: ignore[method-assign]
        reports: list[GraphRunReport] = []
        run = threading.Thread(
            target=lambda: reports.append(run_whole_graph(defs, days[0], days[-1], instance=instance))
        )
        run.start()
        try:
            assert waiting.wait(timeout=120), "the run never asked for process contexts"
            probe = subprocess.run(
                [sys.executable, "-c", PROBE, str(warehouse)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            release.set()
            run.join(timeout=300)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert int(probe.stdout) == len(server.world.templates())
    assert reports, "the run did not finish"
    assert reports[0].success, reports[0].failure


COUNTER = """
import sys
from pathlib import Path
from oe_assets.warehouse.locking import exclusive_file_lock
lock, counter = Path(sys.argv[1]), Path(sys.argv[2])
for _ in range(int(sys.argv[3])):
    with exclusive_file_lock(lock, timeout_seconds=60, poll_seconds=0.001):
        value = int(counter.read_text())
        counter.write_text(str(value + 1))  # lost if two processes ever held the lock at once
"""


def test_the_lock_file_is_gone_once_released_and_still_excludes_every_other_holder(tmp_path: Path) -> None:
    """The holder removes the lock file before letting go (no run leaves an empty `.lock` behind);
    a process that opened the removed file meanwhile must not take it for the lock."""
    lock, counter = tmp_path / "w.duckdb.lock", tmp_path / "counter"
    counter.write_text("0")
    workers = [
        subprocess.Popen([sys.executable, "-c", COUNTER, str(lock), str(counter), "150"]) for _ in range(4)
    ]
    assert [w.wait(timeout=300) for w in workers] == [0, 0, 0, 0]
    assert int(counter.read_text()) == 4 * 150
    assert not lock.exists()
    with exclusive_file_lock(lock, timeout_seconds=1):
        assert lock.exists()
    assert not lock.exists()
