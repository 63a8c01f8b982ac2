"""OCEL 2.0 and XES exports of a warehouse built from the simulator, read back with pm4py (dev-only)."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from oe_assets.cli import main
from oe_assets.definitions import build_definitions
from oe_assets.exports.ocel import export_ocel
from oe_assets.exports.xes import export_xes
from oe_assets.orchestration.resources import OeApiResource, WarehouseResource
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer

pm4py = pytest.importorskip("pm4py")

QUOTES = '"execution_context$context&celonis_postaction_feedback$quotes"'


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days of about twelve contexts, through the whole graph."""
    path = tmp_path_factory.mktemp("exports") / "oe.duckdb"
    exports = path.parent / "exports"  # beside the warehouse, where the assets write by default
    with (
        SimulatorServer(seed=7, days=2, contexts_per_day=12) as sim,
        dg.DagsterInstance.ephemeral() as inst,
    ):
        api = OeApiResource(
            api_url=sim.url, client_id=sim.client_id, client_secret=sim.client_secret, page_size=50
        )
        defs = build_definitions({"oe_api": api, "warehouse": WarehouseResource(database=str(path))})
        end = sim.world.now.date()
        assert run_whole_graph(defs, end - timedelta(days=2), end, instance=inst).success
    assert {p.name for p in exports.iterdir()} >= {
        "oe_process_contexts.jsonocel",
        "oe_process_contexts.sqlite",
        "oe_activity_log.xes",
    }  # the assets ran with the graph and wrote their files
    return path


def _expected(path: Path) -> dict[str, int]:
    """The figures, counted in SQL independently of the export's code."""
    conn = duckdb.connect(str(path), read_only=True)
    try:

        def one(sql: str) -> int:
            row = conn.execute(sql).fetchone()
            assert row is not None
            return int(row[0])

        return {
            "contexts": one("SELECT count(*) FROM execution_context"),
            "events": one("SELECT count(*) FROM activity_log"),
            "process context": one("SELECT count(DISTINCT case_id) FROM activity_log"),
            "digital process": one("SELECT count(DISTINCT execution_template_id) FROM activity_log"),
            "account": one(
                "SELECT count(DISTINCT t.tenant) FROM execution_templates t JOIN accounts a ON a.id = t.tenant "
                "WHERE t.id IN (SELECT execution_template_id FROM activity_log)"
            ),
            "quote": one(
                f'SELECT count(DISTINCT q) FROM (SELECT "quoteId" q FROM {QUOTES} UNION '
                'SELECT "context$quote.requested$quoteId" FROM execution_context) WHERE q IS NOT NULL'
            ),
            "order": one(
                'SELECT count(DISTINCT o) FROM (SELECT "context$order.found$orderId" o FROM execution_context UNION '
                'SELECT "context$order.created$order$id" FROM execution_context) WHERE o IS NOT NULL'
            ),
        }
    finally:
        conn.close()


def _read(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        readers = {
            ".jsonocel": pm4py.read_ocel2_json,
            ".sqlite": pm4py.read_ocel2_sqlite,
            ".xmlocel": pm4py.read_ocel2_xml,
        }
        return readers[path.suffix](str(path))


@pytest.mark.parametrize("suffix", [".jsonocel", ".sqlite", ".xmlocel"])
def test_ocel_reads_back_with_pm4py(built: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"log{suffix}"
    assert main(["export", "ocel", "--out", str(out), "--warehouse", str(built)]) == 0
    expected = _expected(built)
    ocel = _read(out)
    assert expected["events"] > 0
    assert expected["quote"] > 0
    assert len(ocel.events) == expected["events"]
    per_type = ocel.objects.groupby("ocel:type").size().to_dict()
    for object_type in ("process context", "digital process", "account", "quote", "order"):
        assert per_type.get(object_type) == expected[object_type], object_type
    assert per_type["process context"] == expected["contexts"]
    related = set(ocel.relations["ocel:eid"])
    assert related == set(ocel.events["ocel:eid"])  # every event relates to at least one object
    assert set(ocel.objects["ocel:oid"]) <= set(ocel.relations["ocel:oid"])  # every object takes part
    o2o = set(zip(ocel.o2o["ocel:oid"], ocel.o2o["ocel:qualifier"], strict=True))
    assert {q for _, q in o2o} >= {"digital process", "account", "process context"}
    assert pm4py.discover_ocdfg(ocel)["activities"]


def test_xes_reads_back_with_pm4py(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "log.xes"
    assert main(["export", "xes", "--out", str(out), "--warehouse", str(built)]) == 0
    expected = _expected(built)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = pm4py.read_xes(str(out))
    assert log["case:concept:name"].nunique() == expected["contexts"]
    assert len(log) == expected["events"]
    assert {
        "time:timestamp",
        "lifecycle:transition",
        "case:digital process",
        "case:status",
        "case:account",
    } <= set(log.columns)
    dfg, _start, _end = pm4py.discover_dfg(log)
    assert dfg


def test_hostile_values_are_escaped_or_dropped_with_a_count(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "hostile.duckdb"
    copy.write_bytes(built.read_bytes())
    conn = duckdb.connect(str(copy))
    try:
        conn.execute(f"UPDATE {QUOTES} SET price = 'NaN'::DOUBLE WHERE _oe_position = 0")
        nan_rows = conn.execute(f"SELECT count(*) FROM {QUOTES} WHERE isnan(price)").fetchone()[0]  # type: ignore[index]
        conn.execute("UPDATE accounts SET name = name || chr(1) || chr(27)")
        conn.execute(
            "UPDATE execution_context SET status = 'fin' || chr(11) || 'ished' WHERE status = 'finished'"
        )
        report_json = export_ocel(conn, tmp_path / "h.jsonocel")
        report_xml = export_ocel(conn, tmp_path / "h.xmlocel")
        report_xes = export_xes(conn, tmp_path / "h.xes")
    finally:
        conn.close()
    assert nan_rows > 0
    assert report_json.dropped["NaN or infinite numbers dropped"] == nan_rows
    assert report_json.dropped["control characters escaped"] > 0
    assert report_xes.dropped["control characters escaped"] > 0
    ocel = _read(tmp_path / "h.xmlocel")  # well-formed XML despite the control characters
    assert len(ocel.events) == report_xml.events
    names = set(ocel.objects.get("name", []).dropna()) if "name" in ocel.objects else set()
    assert any("\\u0001" in str(n) for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = pm4py.read_xes(str(tmp_path / "h.xes"))
    assert any("\\u000b" in str(s) for s in log["case:status"].dropna())


def test_export_of_an_empty_warehouse_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert main(["export", "ocel", "--out", str(tmp_path / "x.jsonocel"), "--warehouse", str(empty)]) == 1
    err = capsys.readouterr().err.strip()
    assert "oe-assets materialize" in err
    assert "activity_log" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.jsonocel").exists()
