"""The asset graph as designed: layers, lineage, partitions, pools, checks, sensor."""

from __future__ import annotations

import dagster as dg
import pytest

from oe_assets.config import settings
from oe_assets.definitions import build_definitions
from oe_assets.defs.automation.sensors import SENSOR_NAME
from oe_assets.defs.celonis.assets import CELONIS_GROUP, POOL_ROWS_CHECK
from oe_assets.model.declaration import MODEL
from oe_assets.orchestration.resources import DUCKDB_POOL, warehouse_resource

QUOTES = "execution_context$context&celonis_postaction_feedback$quotes"


def _graph(group: str | None = None) -> tuple[dg.Definitions, dict[str, object]]:
    """The graph's nodes by the table each asset is (a child table's key is a path, not its name):
    the warehouse's tables, or with ``group="celonis"`` the tables pushed to Celonis."""
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    nodes = (graph.get(key) for key in graph.get_all_asset_keys())
    return defs, {
        _table(node): node
        for node in nodes
        if (node.group_name == CELONIS_GROUP) == (group == CELONIS_GROUP)  # type: ignore[attr-defined]
    }


def _table(node: object) -> str:
    name = node.metadata.get("dagster/table_name")  # type: ignore[attr-defined]
    return str(getattr(name, "value", name)) if name is not None else node.key.to_user_string()  # type: ignore[attr-defined]


def test_every_declared_table_is_its_own_asset_in_its_layer() -> None:
    _, nodes = _graph()
    for table in MODEL.declared_tables:
        assert nodes[table.name].key == dg.AssetKey(table.asset_key)  # type: ignore[attr-defined]
        assert f"`{table.name}`" in (nodes[table.name].description or "") or table.parent is None  # type: ignore[attr-defined]
    groups = {name: n.group_name for name, n in nodes.items()}  # type: ignore[attr-defined]
    assert groups["raw_process_contexts"] == "oe_raw"
    assert groups["execution_context"] == "celonis_model"
    assert groups[QUOTES] == "celonis_model"
    assert groups["execution_templates$trigger"] == "celonis_model"
    assert groups["event_log"] == "process_mining"
    assert groups["activity_log"] == "process_mining"


def test_lineage_reads_like_the_seeds_data_model() -> None:
    _, nodes = _graph()

    tables = {node.key: name for name, node in nodes.items()}  # type: ignore[attr-defined]

    def parents(name: str) -> set[str]:
        return {tables[k] for k in nodes[name].parent_keys}  # type: ignore[attr-defined]

    assert parents("execution_context") == {"raw_process_contexts"}
    assert parents(QUOTES) == {"execution_context"}
    assert parents(QUOTES + "$lines") == {QUOTES}
    assert parents("execution_templates") == {"raw_execution_templates"}
    assert parents("execution_templates$trigger") == {"execution_templates"}
    assert parents("accounts") == {"raw_accounts"}
    assert parents("event_log") == {"execution_context", "execution_templates"}
    assert {"execution_context", "execution_templates"} <= parents("activity_log")


def test_partitioned_assets_backfill_as_one_run_and_writers_share_the_pool() -> None:
    defs, nodes = _graph()
    for name in ("raw_process_contexts", "execution_context", QUOTES, "event_log", "activity_log"):
        node = nodes[name]
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), name  # type: ignore[attr-defined]
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name  # type: ignore[attr-defined]
    for assets_def in defs.assets:  # type: ignore[union-attr]
        assert isinstance(assets_def, dg.AssetsDefinition)
        assert assets_def.op.pool == DUCKDB_POOL
    for checks_def in defs.asset_checks:  # type: ignore[union-attr]
        assert checks_def.op.pool == DUCKDB_POOL


def test_mandatory_relations_are_blocking_error_checks_on_their_tables() -> None:
    defs, nodes = _graph()
    tables = {node.key: name for name, node in nodes.items()}  # type: ignore[attr-defined]
    specs = {
        (tables[spec.asset_key], spec.name): spec
        for checks_def in defs.asset_checks  # type: ignore[union-attr]
        for spec in checks_def.check_specs
    }
    assert specs[("execution_context", "fk_context_to_template")].blocking
    assert specs[("event_log", "fk_event_log_instance_to_context")].blocking
    assert ("execution_templates", "fk_template_tenant_to_account") in specs
    assert ("execution_templates$trigger", "fk_execution_templates_trigger__to_root") in specs
    assert (QUOTES, "pk_" + QUOTES.replace("$", "_").replace("&", "_")) in specs


def test_every_table_the_model_delivers_has_a_push_asset_downstream_of_it_with_a_row_check() -> None:
    defs, tables = _graph()
    _, pushed = _graph(CELONIS_GROUP)
    delivered = {t.name for t in MODEL.declared_tables} | set(MODEL.activity_tables)
    assert set(pushed) == delivered
    for name, node in pushed.items():
        assert node.parent_keys == {tables[name].key}, name  # type: ignore[attr-defined]
        assert node.key.path[-1] == "pool_" + tables[name].key.path[-1]  # type: ignore[attr-defined]
    assert pushed["execution_context"].partitions_def == tables["execution_context"].partitions_def  # type: ignore[attr-defined]
    assert pushed["accounts"].partitions_def is None  # type: ignore[attr-defined]
    specs = [spec for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for spec in a.check_specs]
    checked = {spec.asset_key for spec in specs if spec.name == POOL_ROWS_CHECK}
    assert checked == {node.key for node in pushed.values()}  # type: ignore[attr-defined]


def test_sensor_is_declared_and_explains_itself() -> None:
    defs, _ = _graph()
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert "updatedSince" in (sensor.description or "")
    assert {j.name for j in sensor.jobs} == {"refresh_process_contexts", "refresh_catalog"}


def test_the_warehouse_assets_show_the_warehouse_the_settings_name() -> None:
    """The UI's kind icon of every asset in the warehouse: DuckDB by default, PostgreSQL when
    OE_WAREHOUSE is a postgresql:// URL (the graph is the same otherwise)."""
    postgres = settings.Settings(warehouse=settings.parse_warehouse("postgresql://oe@db.example:5432/oe"))
    kinds = {
        name: {str(key): spec.kinds for key, spec in ((s.key, s) for s in _specs(config))}
        for name, config in (("duckdb", settings.Settings()), ("postgres", postgres))
    }
    in_warehouse = {key for key, k in kinds["duckdb"].items() if "duckdb" in k}
    assert len(in_warehouse) > 40
    assert {key for key, k in kinds["postgres"].items() if "postgres" in k} == in_warehouse
    assert not any("duckdb" in k for k in kinds["postgres"].values())
    assert set(kinds["postgres"]) == set(kinds["duckdb"])


def _specs(config: settings.Settings) -> list[dg.AssetSpec]:
    defs = build_definitions(config=config)
    return [
        spec
        for assets in defs.assets or []
        if isinstance(assets, dg.AssetsDefinition)
        for spec in assets.specs
    ]


def test_a_warehouse_password_reaches_the_resource_only_through_envvar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The UI and the run storage show a resource's configuration: a password in OE_WAREHOUSE or
    PGPASSWORD is there only as the variable's name, and the resource reads it when a run starts."""
    monkeypatch.setenv(settings.WAREHOUSE, "postgresql://oe:pw-4711@db.example:5432/oe")
    monkeypatch.delenv(settings.PGPASSWORD, raising=False)
    in_url = warehouse_resource(settings.Settings.from_env())
    assert isinstance(in_url.database, dg.EnvVar)
    assert in_url.database.env_var_name == settings.WAREHOUSE
    assert in_url.postgres_target().password.reveal() == "pw-4711"
    monkeypatch.setenv(settings.WAREHOUSE, "postgresql://oe@db.example:5432/oe")
    monkeypatch.setenv(settings.PGPASSWORD, "pw-4711")
    from_variable = warehouse_resource(settings.Settings.from_env())
    assert from_variable.database == "postgresql://oe@db.example:5432/oe"
    assert isinstance(from_variable.postgres_password, dg.EnvVar)
    assert from_variable.postgres_target().password.reveal() == "pw-4711"
    for resource in (in_url, from_variable):
        assert "pw-4711" not in repr(resource) + str(resource.model_dump())
