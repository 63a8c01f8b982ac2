"""The client secret and the tokens never reach anything Dagster stores, the warehouse, or the output."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from oe_assets.definitions import build_definitions
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import created_day

SECRET = "s3cr3t-Value-that-must-never-leak-8c1f"


def _files_containing(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {n[:6]}…" for n in needles if n.encode() in data]
    return found


def test_a_full_materialization_stores_no_secret_or_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    warehouse = tmp_path / "w" / "oe.duckdb"
    monkeypatch.setenv("OE_CLIENT_SECRET", SECRET)
    with SimulatorServer(seed=5, days=2, contexts_per_day=10, client_secret=SECRET) as server:
        monkeypatch.setenv("OE_CLIENT_ID", server.client_id)
        resources = {
            "oe_api": OeApiResource(
                api_url=server.url,
                client_id=dg.EnvVar("OE_CLIENT_ID"),
                client_secret=dg.EnvVar("OE_CLIENT_SECRET"),
            ),
            "warehouse": WarehouseResource(database=str(warehouse)),
        }
        days = sorted({created_day(c) for c in server.world.contexts()})
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            defs = build_definitions(resources)
            report = run_whole_graph(defs, days[0], days[-1], instance=instance)
            assert report.success, report.failure
            records = instance.get_event_records(
                dg.EventRecordsFilter(event_type=dg.DagsterEventType.RUN_START)
            )
            assert records, "the runs are stored"
            every_event = "".join(
                str(e) for run in instance.get_runs() for e in instance.all_logs(run.run_id)
            )
            run_configs = "".join(str(run.run_config) for run in instance.get_runs())
        tokens = server.tokens.issued()
    assert tokens, "the client authenticated"
    needles = [SECRET, *tokens]
    out, err = capfd.readouterr()
    assert not [n for n in needles if n in out + err]
    assert not [n for n in needles if n in every_event + run_configs]
    assert _files_containing(home, needles) == []
    assert _files_containing(warehouse.parent, needles) == []
    assert "***" in repr(resources["oe_api"])
    assert SECRET not in repr(resources["oe_api"])
