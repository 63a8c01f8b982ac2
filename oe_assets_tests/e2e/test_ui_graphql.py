"""The Dagster UI's API as users meet it: a real `dagster dev`, queried and driven through GraphQL.

The server, the simulator and the materialized day come from ui_support's session fixtures, shared
with test_ui_browser.py.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

pytest.register_assert_rewrite("oe_assets_tests.support.ui_support")

from oe_assets.definitions import build_definitions  # noqa: E402
from oe_assets.defs.automation.sensors import SENSOR_NAME  # noqa: E402
from oe_assets.model.declaration import MODEL  # noqa: E402
from oe_assets.orchestration.resources import DUCKDB_POOL  # noqa: E402
from oe_assets_tests.support.ui_support import (  # noqa: E402
    CATALOG_JOB,
    CONTEXTS_JOB,
    LOCATION,
    REPOSITORY,
    DagsterUi,
    MaterializedDay,
    lineage_label,
)

pytest_plugins = ["oe_assets_tests.support.ui_support"]

QUOTES_TABLE = "execution_context$context&celonis_postaction_feedback$quotes"
QUOTES = "/".join(MODEL.asset_key(QUOTES_TABLE))
LINES = "/".join(MODEL.asset_key(QUOTES_TABLE + "$lines"))
TRIGGER = "/".join(MODEL.asset_key("execution_templates$trigger"))
GROUPS = {"oe_raw", "celonis_model", "process_mining", "celonis"}
KINDS = {
    "oe_raw": {"duckdb"},
    "celonis_model": {"duckdb"},
    "process_mining": {"duckdb"},
    "celonis": {"celonis"},
}

ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    description
    kinds
    pools
    isPartitioned
    jobNames
    dependencyKeys { path }
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    metadataEntries {
      label
      __typename
      ... on TextMetadataEntry { text }
      ... on CodeReferencesMetadataEntry {
        codeReferences { __typename ... on LocalFileCodeReference { filePath lineNumber } }
      }
    }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name description blocking } }
    }
  }
}
"""

AUTOMATION = """
query Automation($repo: RepositorySelector!) {
  sensorsOrError(repositorySelector: $repo) {
    __typename
    ... on Sensors {
      results { name description minIntervalSeconds sensorState { status } targets { pipelineName } }
    }
  }
  repositoryOrError(repositorySelector: $repo) {
    __typename
    ... on Repository { jobs { name description } }
  }
  instance {
    poolConfig { defaultPoolLimit }
    concurrencyLimits { concurrencyKey slotCount }
  }
}
"""

MATERIALIZATION = """
query LatestMaterialization($keys: [AssetKeyInput!], $partition: String!) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetMaterializations(partitions: [$partition], limit: 1) {
      runId
      partition
      metadataEntries {
        label
        __typename
        ... on IntMetadataEntry { intValue }
        ... on TextMetadataEntry { text }
        ... on MarkdownMetadataEntry { mdStr }
        ... on TableSchemaMetadataEntry { schema { columns { name type } } }
        ... on TableColumnLineageMetadataEntry {
          lineage { columnName columnDeps { assetKey { path } columnName } }
        }
      }
    }
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks { name executionForLatestMaterialization { runId status evaluation { success } } }
      }
    }
  }
}
"""


def _key(node: dict[str, Any]) -> str:
    return "/".join(node["assetKey"]["path"])


@pytest.fixture(scope="module")
def nodes(dagster_ui: DagsterUi) -> dict[str, dict[str, Any]]:
    return {_key(node): node for node in dagster_ui.graphql(ASSET_NODES)["assetNodes"]}


@pytest.fixture(scope="module")
def designed() -> dg.Definitions:
    return build_definitions()


def test_every_asset_is_listed_in_its_layer_with_the_designed_lineage(
    nodes: dict[str, dict[str, Any]], designed: dg.Definitions
) -> None:
    graph = designed.resolve_asset_graph()
    expected = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    assert set(nodes) == set(expected)
    for name, node in nodes.items():
        spec = expected[name]
        assert node["groupName"] == spec.group_name, name
        assert node["groupName"] in GROUPS, name
        deps = {"/".join(d["path"]) for d in node["dependencyKeys"]}
        assert deps == {k.to_user_string() for k in spec.parent_keys}, name

    def deps_of(name: str) -> set[str]:
        return {"/".join(d["path"]) for d in nodes[name]["dependencyKeys"]}

    # The Celonis extractor's data model: raw -> execution_context -> child tables -> event log / activity log ...
    assert deps_of("execution_context") == {"raw_process_contexts"}
    assert deps_of(QUOTES) == {"execution_context"}
    assert deps_of(LINES) == {QUOTES}
    assert deps_of("event_log") == {"execution_context", "execution_templates"}
    assert {"execution_context", "execution_templates"} <= deps_of("activity_log")
    # ... raw templates -> execution_templates -> triggers; accounts.
    assert deps_of("execution_templates") == {"raw_execution_templates"}
    assert deps_of(TRIGGER) == {"execution_templates"}
    assert deps_of("accounts") == {"raw_accounts"}
    assert {n["groupName"] for n in nodes.values()} == GROUPS


def test_every_asset_explains_itself_and_links_to_its_code(nodes: dict[str, dict[str, Any]]) -> None:
    for name, node in nodes.items():
        assert len(node["description"] or "") > 30, name
        assert KINDS[node["groupName"]] <= set(node["kinds"]), name
        assert {"team": "data-engineering", "__typename": "TeamAssetOwner"} in node["owners"], name
        assert node["pools"] == [DUCKDB_POOL], name
        refs = [m for m in node["metadataEntries"] if m["__typename"] == "CodeReferencesMetadataEntry"]
        assert refs, f"{name} has no source code reference"
        local = refs[0]["codeReferences"][0]
        assert local["filePath"].endswith(".py"), name
        assert "/oe_assets/defs/" in local["filePath"], name
        assert (local["lineNumber"] or 0) > 0, name
    assert "Celonis" in nodes["execution_context"]["description"]
    assert set(nodes["execution_context"]["kinds"]) == {"duckdb"}  # no polars: nothing here uses it
    assert {"duckdb", "sql"} <= set(nodes["event_log"]["kinds"])
    assert nodes["raw_process_contexts"]["isPartitioned"]
    assert not nodes["execution_templates"]["isPartitioned"]
    assert CONTEXTS_JOB in nodes["event_log"]["jobNames"]
    assert CATALOG_JOB in nodes["accounts"]["jobNames"]


def test_checks_are_attached_to_the_tables_they_guard(
    nodes: dict[str, dict[str, Any]], designed: dg.Definitions
) -> None:
    listed = {
        (name, check["name"]): check
        for name, node in nodes.items()
        if node["assetChecksOrError"]["__typename"] == "AssetChecks"
        for check in node["assetChecksOrError"]["checks"]
    }
    specs = {  # the data-model checks, and the checks an asset emits itself (raw_process_contexts)
        (spec.asset_key.to_user_string(), spec.name): spec
        for definition in [*(designed.asset_checks or []), *(designed.assets or [])]
        for spec in definition.check_specs  # type: ignore[union-attr]
    }
    assert set(listed) == set(specs)
    for key, check in listed.items():
        assert check["blocking"] == specs[key].blocking, key
        assert check["description"], key
    fk = listed[("execution_context", "fk_context_to_template")]
    assert fk["blocking"]
    assert "execution_templates.id" in fk["description"]
    assert ("event_log", "fk_event_log_instance_to_context") in listed
    assert ("execution_templates", "fk_template_tenant_to_account") in listed


def test_sensor_jobs_and_pool_are_visible_and_explained(dagster_ui: DagsterUi) -> None:
    repo = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    data = dagster_ui.graphql(AUTOMATION, {"repo": repo})
    sensors = {s["name"]: s for s in data["sensorsOrError"]["results"]}
    sensor = sensors[SENSOR_NAME]
    assert sensor["sensorState"]["status"] == "STOPPED"  # the user turns it on in Automation
    assert "status=finished" in sensor["description"]
    assert {t["pipelineName"] for t in sensor["targets"]} == {CATALOG_JOB, CONTEXTS_JOB}
    jobs = {j["name"]: j for j in data["repositoryOrError"]["jobs"]}
    for job in (CATALOG_JOB, CONTEXTS_JOB):
        assert f"pool `{DUCKDB_POOL}`" in jobs[job]["description"], job
    limits = {c["concurrencyKey"]: c["slotCount"] for c in data["instance"]["concurrencyLimits"]}
    assert data["instance"]["poolConfig"]["defaultPoolLimit"] == 1
    assert limits.get(DUCKDB_POOL, 1) == 1


def test_a_day_materialized_through_graphql_succeeds_against_the_simulator(
    materialized_day: MaterializedDay,
) -> None:
    day = materialized_day
    assert day.catalog_status == "SUCCESS", day.failures
    assert day.contexts_status == "SUCCESS", day.failures
    assert day.seconds < 180, f"materializing one day took {day.seconds:.0f} s"


def _entries(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (materialization,) = node["assetMaterializations"]
    return {entry["label"]: entry for entry in materialization["metadataEntries"]}


def test_materialization_metadata_is_there(dagster_ui: DagsterUi, materialized_day: MaterializedDay) -> None:
    assert materialized_day.contexts_status == "SUCCESS", materialized_day.failures
    keys = [
        {"path": key.split("/")} for key in ("execution_context", "raw_process_contexts", "event_log", QUOTES)
    ]
    data = dagster_ui.graphql(MATERIALIZATION, {"keys": keys, "partition": materialized_day.partition})
    by_key = {_key(node): node for node in data["assetNodes"]}

    context = by_key["execution_context"]
    assert context["assetMaterializations"][0]["runId"] == materialized_day.contexts_run
    assert context["assetMaterializations"][0]["partition"] == materialized_day.partition
    meta = _entries(context)
    assert meta["dagster/row_count"]["__typename"] == "IntMetadataEntry"
    assert meta["dagster/row_count"]["intValue"] > 0
    assert meta["dagster/partition_row_count"]["intValue"] > 0
    schema = meta["dagster/column_schema"]
    assert schema["__typename"] == "TableSchemaMetadataEntry"
    columns = {c["name"]: c["type"] for c in schema["schema"]["columns"]}
    assert columns["context$processid"] == "VARCHAR"
    assert "metadata$createdAt" in columns
    assert meta["summary"]["__typename"] == "MarkdownMetadataEntry"
    assert "**execution_context**" in meta["summary"]["mdStr"]
    assert meta["quarantined"]["intValue"] == 0

    raw = _entries(by_key["raw_process_contexts"])
    assert raw["dagster/row_count"]["intValue"] > 0
    assert raw["api_pages"]["intValue"] >= 1
    assert raw["api_retries"]["__typename"] == "IntMetadataEntry"
    assert raw["quarantined"]["intValue"] == 0
    assert materialized_day.partition in raw["partition_window"]["text"]
    assert "api pages" in raw["summary"]["mdStr"]

    event_log = _entries(by_key["event_log"])
    assert event_log["dagster/row_count"]["intValue"] == meta["dagster/row_count"]["intValue"]
    lineage = {
        row["columnName"]: {("/".join(d["assetKey"]["path"]), d["columnName"]) for d in row["columnDeps"]}
        for row in event_log["dagster/column_lineage"]["lineage"]
    }
    assert lineage["instance_id"] == {("execution_context", "context$processid")}
    assert lineage["execution_template_name"] == {("execution_templates", "name")}

    assert _entries(by_key[QUOTES])["dagster/column_schema"]["__typename"] == "TableSchemaMetadataEntry"

    checks = {
        c["name"]: c["executionForLatestMaterialization"] for c in context["assetChecksOrError"]["checks"]
    }
    fk = checks["fk_context_to_template"]
    assert fk is not None
    assert fk["runId"] == materialized_day.contexts_run
    assert fk["status"] == "SUCCEEDED"
    assert fk["evaluation"]["success"]


def _table_name(node: dict[str, Any]) -> str | None:
    entries = {entry["label"]: entry for entry in node["metadataEntries"]}
    return entries["dagster/table_name"]["text"] if "dagster/table_name" in entries else None


def test_every_node_name_in_the_lineage_can_be_told_apart(nodes: dict[str, dict[str, Any]]) -> None:
    """The lineage graph names a node by its key's last part, cut to 18 characters: no two nodes of
    the whole graph may show the same name (the exact table name is in the metadata)."""
    labels = sorted(lineage_label(key.split("/")[-1]) for key in nodes)
    alike = sorted({label for label in labels if labels.count(label) > 1})
    assert alike == [], f"nodes that look alike in the lineage: {alike}"
    assert lineage_label(QUOTES.split("/")[-1]) == "quotes"
    assert lineage_label(LINES.split("/")[-1]) == "lines"
    for table in MODEL.declared_tables:
        node = nodes["/".join(table.asset_key)]
        assert _table_name(node) == table.name, table.name
        assert table.parent is None or table.name in (node["description"] or ""), table.name
