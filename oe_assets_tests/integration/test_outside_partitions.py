"""Nothing skipped silently: contexts no partition can land are reported, days that are no
partition are refused.

Partitions run from ``OE_START_DATE`` to today. Contexts created before or after are counted by
every run of ``raw_process_contexts`` (its metadata and its WARN check
``no_contexts_outside_partitions``); ``oe-assets materialize`` refuses a day outside them in one
sentence. Real runs against the simulator over HTTP.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oe_assets.config import settings
from oe_assets.core.timestamps import format_oe_timestamp
from oe_assets.definitions import build_definitions
from oe_assets.orchestration.runner import CheckOutcome, run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.simulator import server as simulator_server
from oe_assets_tests.support.helpers import REPO, created_day
from oe_assets_tests.support.reliability_support import new_simulator, resources_for, world_days

ROOT = REPO
CHECK = "no_contexts_outside_partitions"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorServer]:
    """Two days of contexts; OE_START_DATE is the second, so the first day lies before it."""
    with new_simulator(190, days=2, contexts_per_day=6) as server:
        monkeypatch.setenv(settings.START_DATE, world_days(server)[1].isoformat())
        yield server


def _run(server: SimulatorServer, tmp_path: Path) -> tuple[list[CheckOutcome], dict[str, Any]]:
    days = world_days(server)[1:]
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs = build_definitions(resources_for(server, tmp_path / "oe.duckdb"))
        report = run_whole_graph(defs, days[0], days[-1], instance=instance)
        assert report.success, report.failure
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_process_contexts"))
    assert event is not None
    assert event.asset_materialization is not None
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    return [c for c in report.checks if c.name == CHECK], meta


def test_contexts_before_the_first_partition_and_after_today_are_reported(
    world: SimulatorServer, tmp_path: Path
) -> None:
    first = world_days(world)[1]
    before = [c for c in world.world.contexts() if created_day(c) < first]
    tomorrow = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
    future = copy.deepcopy(world.world.contexts()[0])
    future["context"]["processid"] += "-FUTURE"
    future["metadata"]["createdAt"] = future["metadata"]["updatedAt"] = format_oe_timestamp(tomorrow)
    world.world.put_context(future)
    assert before, "the simulated world must have contexts before OE_START_DATE"

    checks, meta = _run(world, tmp_path)

    assert meta["contexts_before_first_partition"] == len(before)
    assert meta["contexts_after_today"] == 1
    assert [(c.asset, c.passed, c.severity, c.offending_rows) for c in checks] == [
        ("raw_process_contexts", False, "WARN", len(before) + 1)
    ]


def test_an_api_without_counts_reports_unknown_and_the_run_goes_on(
    world: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = simulator_server._Handler._send

    def without_count(self: Any, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        honest(self, code, body, {k: v for k, v in (headers or {}).items() if k != "X-Total-Count"})

    monkeypatch.setattr(simulator_server._Handler, "_send", without_count)
    checks, meta = _run(world, tmp_path)
    assert meta["contexts_before_first_partition"] == "unknown"
    assert meta["contexts_after_today"] == "unknown"
    assert [(c.passed, c.severity) for c in checks] == [(True, "WARN")]


def _materialize(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OE_")}
    env.update(DAGSTER_HOME=str(tmp_path / "home"), OE_START_DATE="2025-01-01")
    return subprocess.run(
        [sys.executable, "-m", "oe_assets.cli", "materialize", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_materialize_refuses_a_day_that_is_not_a_partition_in_one_sentence(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    later = today + timedelta(days=1)
    cases = {
        ("--start", "2024-12-31"): (
            "--start 2024-12-31 is before OE_START_DATE=2025-01-01, the first partition; "
            "set OE_START_DATE earlier to land it"
        ),
        ("--start", today.isoformat(), "--end", later.isoformat()): (
            f"--end {later} is after today ({today}, UTC): it is not a partition yet"
        ),
        ("--start", "2025-3-1"): "--start '2025-3-1' is not a date: use YYYY-MM-DD",
        ("--start", "2025-03-01", "--end", "20250302"): "--end '20250302' is not a date: use YYYY-MM-DD",
    }
    for args, sentence in cases.items():
        result = _materialize(tmp_path, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr == f"oe-assets materialize failed: {sentence}\n", args
        assert result.stdout == ""
