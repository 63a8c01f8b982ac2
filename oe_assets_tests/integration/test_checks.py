"""Data-model checks: pass on demo data, fail with exact counts and samples when a relation is broken."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from oe_assets.definitions import build_definitions
from oe_assets.model.data_model import build_data_model
from oe_assets.model.declaration import MODEL
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.helpers import created_day


@pytest.fixture
def loaded_defs(simulator: SimulatorServer, resources: dict, instance: dg.DagsterInstance) -> dg.Definitions:
    defs = build_definitions(resources)
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    assert run_whole_graph(defs, days[0], days[-1], instance=instance).success
    return defs


def _evaluate_checks(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> dict[str, dg.AssetCheckEvaluation]:
    """Every check, each group in its own run (a failing blocking check would skip the groups after it)."""
    evaluations = {}
    for checks_def in defs.asset_checks:  # type: ignore[union-attr]
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],  # type: ignore[list-item]
            selection=dg.AssetSelection.checks(*checks_def.check_keys),
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
        )
        evaluations.update({e.check_name: e for e in result.get_asset_check_evaluations()})
    return evaluations


def _break(path: Path, *statements: str) -> None:
    conn = duckdb.connect(str(path))
    try:
        for sql in statements:
            conn.execute(sql)
    finally:
        conn.close()


def test_checks_fail_with_counts_and_samples_when_relations_break(
    loaded_defs: dg.Definitions, instance: dg.DagsterInstance, warehouse_path: Path
) -> None:
    baseline = _evaluate_checks(loaded_defs, instance)
    assert len(baseline) == sum(len(c.check_keys) for c in loaded_defs.asset_checks)  # type: ignore[union-attr]
    assert all(e.passed for e in baseline.values())

    conn = duckdb.connect(str(warehouse_path), read_only=True)
    template_id, n_contexts = conn.execute(
        'SELECT "context$executionTemplateID", count(*) FROM execution_context GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1'
    ).fetchone()
    victim_instance = conn.execute("SELECT min(instance_id) FROM event_log").fetchone()[0]
    dup_id = conn.execute('SELECT min("context$processid") FROM execution_context').fetchone()[0]
    # a grandchild row: its parent is found by (process id, _oe_parent_row_id)
    lines_table = "execution_context$context&celonis_postaction_feedback$quotes$lines"
    orphan_line, orphan_context = conn.execute(
        f'SELECT rowid, "context$processid" FROM "{lines_table}" ORDER BY rowid LIMIT 1'
    ).fetchone()
    conn.close()

    _break(
        warehouse_path,
        f"DELETE FROM execution_templates WHERE id = '{template_id}'",
        f"DELETE FROM event_log WHERE instance_id = '{victim_instance}'",
        f"INSERT INTO execution_context BY NAME SELECT * FROM execution_context WHERE \"context$processid\" = '{dup_id}'",
        f"UPDATE \"{lines_table}\" SET _oe_parent_row_id = 'no-such-row' WHERE rowid = {orphan_line}",
    )
    broken = _evaluate_checks(loaded_defs, instance)

    fk = broken["fk_context_to_template"]
    assert not fk.passed
    assert fk.severity == dg.AssetCheckSeverity.ERROR
    # the duplicated context may belong to the deleted template too
    expected = n_contexts + (1 if dup_id in _ids_of(warehouse_path, template_id) else 0)
    assert fk.metadata["offending_rows"].value == expected
    assert fk.metadata["sample_offending_keys"].value == [template_id]

    one_to_one = broken["fk_event_log_instance_to_context"]
    assert not one_to_one.passed
    assert f"execution_context: {victim_instance}" in one_to_one.metadata["sample_offending_keys"].value

    pk = broken["pk_execution_context"]
    assert not pk.passed
    assert pk.metadata["offending_rows"].value == 2
    assert pk.metadata["sample_offending_keys"].value == [dup_id]

    parent = broken[
        "fk_" + "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in lines_table + "__to_parent_row")
    ]
    assert not parent.passed
    assert parent.metadata["offending_rows"].value == 1
    assert parent.metadata["sample_offending_keys"].value == [f"{orphan_context} | no-such-row"]

    tenant = broken["fk_template_tenant_to_account"]
    assert tenant.passed  # untouched relations still pass


def _ids_of(path: Path, template_id: str) -> set[str]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        rows = conn.execute(
            'SELECT "context$processid" FROM execution_context WHERE "context$executionTemplateID" = ?',
            [template_id],
        ).fetchall()
        return {r[0] for r in rows}
    finally:
        conn.close()


def test_data_model_export_lists_tables_keys_relations_and_activity_table() -> None:
    model = build_data_model(MODEL).to_dict()
    names = {t["name"] for t in model["tables"]}
    assert {"execution_context", "execution_templates", "accounts", "event_log", "activity_log"} <= names
    assert "execution_templates$trigger" in names
    relations = {(r["child_table"], tuple(r["child_columns"]), r["parent_table"]) for r in model["relations"]}
    assert ("execution_context", ("context$executionTemplateID",), "execution_templates") in relations
    assert ("event_log", ("instance_id",), "execution_context") in relations
    assert ("execution_templates$trigger", ("execution_templates_id",), "execution_templates") in relations
    assert ("execution_templates", ("tenant",), "accounts") in relations
    assert "event_log" in model["activity_tables"]
