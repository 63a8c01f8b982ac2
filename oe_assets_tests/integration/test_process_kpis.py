"""Process KPIs (polars) and the process map, on warehouses built from the simulator by real runs:
every figure is recomputed here in SQL, independently of the polars code."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oe_assets.definitions import build_definitions
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.process_mining.kpis import TOP_VARIANTS
from oe_assets.simulator import SimulatorServer

KPI = dg.AssetKey(["process_kpis"])

_CASES_SQL = """
SELECT a._oe_partition AS day, a.execution_template_id AS tid, a.case_id, any_value(c.status) AS status,
       (epoch_us(max(a.event_time)) - epoch_us(min(a.event_time) FILTER (WHERE a.activity_type = 'start'))) / 1e6
           AS thr,
       string_agg(a.activity, ' → ' ORDER BY a.event_time, a.sort_order, a.activity) AS variant
FROM activity_log a LEFT JOIN execution_context c ON c."context$processid" = a.case_id
GROUP BY a._oe_partition, a.execution_template_id, a.case_id
"""


def _sql_kpis(conn: duckdb.DuckDBPyConnection) -> dict[tuple[object, object], tuple[object, ...]]:
    figures = conn.execute(
        f"""SELECT day, tid, count(*), median(thr), quantile_cont(thr, 0.9), count(DISTINCT variant)
            FROM ({_CASES_SQL}) GROUP BY day, tid"""
    ).fetchall()
    statuses = conn.execute(
        f"""SELECT day, tid, string_agg(coalesce(status, '(none)') || ': ' || n, ', '
                                        ORDER BY n DESC, status NULLS LAST)
            FROM (SELECT day, tid, status, count(*) AS n FROM ({_CASES_SQL}) GROUP BY ALL) GROUP BY day, tid"""
    ).fetchall()
    variants = conn.execute(
        f"""SELECT day, tid, list(n || '× ' || variant ORDER BY n DESC, variant)[1:{TOP_VARIANTS}]
            FROM (SELECT day, tid, variant, count(*) AS n FROM ({_CASES_SQL}) GROUP BY ALL) GROUP BY day, tid"""
    ).fetchall()
    mix = {(d, t): s for d, t, s in statuses}
    top = {(d, t): v for d, t, v in variants}
    return {(d, t): (n, med, p90, mix[(d, t)], nv, top[(d, t)]) for d, t, n, med, p90, nv in figures}


@pytest.fixture
def built(
    simulator: SimulatorServer, resources: dict, instance: dg.DagsterInstance, warehouse_path: Path
) -> dg.Definitions:
    defs = build_definitions(resources)
    today = simulator.world.now.date()
    report = run_whole_graph(defs, today - timedelta(days=simulator.world.days), today, instance=instance)
    assert report.success, report.failure
    return defs


def test_kpis_equal_the_same_figures_computed_in_sql(
    built: dg.Definitions, instance: dg.DagsterInstance, warehouse_path: Path
) -> None:
    conn = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        expected = _sql_kpis(conn)
        rows = conn.execute(
            "SELECT _oe_partition, execution_template_id, case_count, throughput_median_seconds, "
            "throughput_p90_seconds, status_mix, variant_count, top_variants FROM process_kpis"
        ).fetchall()
        cases = conn.execute("SELECT count(DISTINCT case_id) FROM activity_log").fetchone()
    finally:
        conn.close()
    got = {(d, t): (n, med, p90, mix, nv, top) for d, t, n, med, p90, mix, nv, top in rows}
    assert len(rows) == len(got)
    assert cases
    assert sum(v[0] for v in got.values()) == cases[0] > 20
    assert got.keys() == expected.keys()
    for key, (n, med, p90, mix, nv, top) in expected.items():
        assert got[key] == (n, pytest.approx(med), pytest.approx(p90), mix, nv, top), key
    assert any(len(v[5]) == TOP_VARIANTS for v in got.values())  # some day has several variants

    event = instance.get_latest_materialization_event(KPI)
    assert event is not None
    assert event.asset_materialization is not None
    meta = event.asset_materialization.metadata
    schema = meta["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema)
    assert [c.name for c in schema.columns][:4] == [
        "_oe_partition",
        "execution_template_id",
        "execution_template_name",
        "case_count",
    ]
    assert "median throughput" in meta["kpis"].value  # type: ignore[operator]
    assert built.resolve_assets_def(KPI).specs_by_key[KPI].kinds == {"duckdb", "polars"}


def test_process_map_draws_every_activity_and_the_directly_follows_counts(
    built: dg.Definitions, instance: dg.DagsterInstance, warehouse_path: Path
) -> None:
    event = instance.get_latest_materialization_event(KPI)
    assert event is not None
    assert event.asset_materialization is not None
    path = Path(str(event.asset_materialization.metadata["process_map"].value))
    assert path == warehouse_path.parent / "exports" / "process_map.svg"
    svg = ET.parse(path).getroot()  # noqa: S314 - the file this test's own run just wrote
    ns = {"s": "http://www.w3.org/2000/svg"}
    nodes = {g.get("data-activity") for g in svg.iterfind(".//s:g[@class='node']", ns)}
    edges = {
        (g.get("data-source"), g.get("data-target")): int(g.get("data-count") or -1)
        for g in svg.iterfind(".//s:g[@class='edge']", ns)
    }
    labels = {t.text for t in svg.iterfind(".//s:g[@class='node']/s:text", ns)}

    conn = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        activities = {
            str(a) for (a,) in conn.execute("SELECT DISTINCT activity FROM activity_log").fetchall()
        }
        counts = dict(conn.execute("SELECT activity, count(*) FROM activity_log GROUP BY ALL").fetchall())
        pairs = conn.execute(
            """SELECT activity, nxt, count(*) FROM (
                   SELECT activity, lead(activity) OVER (PARTITION BY case_id
                                                         ORDER BY event_time, sort_order, activity) AS nxt
                   FROM activity_log) WHERE nxt IS NOT NULL GROUP BY ALL"""
        ).fetchall()
    finally:
        conn.close()
    assert nodes == activities
    assert len(activities) > 5
    assert labels == {f"{a} ({counts[a]})" for a in activities}
    assert edges == {(a, b): n for a, b, n in pairs}
