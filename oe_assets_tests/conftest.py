"""Shared fixtures: a real simulator over HTTP, a real DuckDB file, a real Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.simulator import SimulatorServer

HERE = Path(__file__).resolve().parent
SAMPLES = HERE / "data" / "samples"  # copies of shared/reference/samples, so the suite runs anywhere
EVENT_LOG_SCRIPT = (
    HERE.parent / "oe_assets" / "sql" / "celonis_event_log.sql"
)  # the Celonis extractor's event-log script
EXTRACTOR_DOC = (
    HERE.parents[1] / "shared" / "seed" / "sending-data-from-oe-to-celonis.txt"
)  # when beside the clone


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=7, days=3, contexts_per_day=25) as server:
        yield server


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    (tmp_path / "warehouse").mkdir()
    return tmp_path / "warehouse" / "oe.duckdb"


@pytest.fixture
def resources(simulator: SimulatorServer, warehouse_path: Path) -> dict[str, object]:
    return {
        "oe_api": OeApiResource(
            api_url=simulator.url,
            client_id=simulator.client_id,
            client_secret=simulator.client_secret,
            page_size=50,
            retry_budget_seconds=20,
        ),
        "warehouse": WarehouseResource(database=str(warehouse_path)),
    }


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(
        temp_dir=str(home), overrides={"concurrency": {"pools": {"default_limit": 1}}}
    ) as inst:
        yield inst


from oe_assets_tests.reliability_support import reliability_figures  # noqa: E402, F401 - writes test-artifacts/reliability.json
