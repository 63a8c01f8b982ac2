"""The fixtures most tests share (a pytest plugin): a real simulator over HTTP, a DuckDB file on
disk, the resources that point at both, and a Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from oe_assets.client import OeClient, OeClientConfig
from oe_assets.config.secret import Secret
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.simulator import SimulatorServer


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
def instance() -> Iterator[dg.DagsterInstance]:
    """Dagster's in-memory instance: real runs, events and cursors, without the run storage's
    SQLite files (which took half the time of a test's runs). Tests that need DAGSTER_HOME on
    disk (the CLI, the UI) make their own."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def oe_client(simulator: SimulatorServer) -> Iterator[OeClient]:
    """The OE client against the simulator, small pages (several per day)."""
    config = OeClientConfig(
        api_url=simulator.url,
        auth_url=simulator.url,
        client_id=simulator.client_id,
        client_secret=Secret(simulator.client_secret),
        page_size=20,
    )
    with OeClient(config) as oe:
        yield oe
