"""deploy/helm/ is valid for Dagster's Helm chart and agrees with the code and the other deploy files.

Nothing here installs the chart or talks to a cluster. The values are checked against the chart's own
JSON schema (oe_assets_tests/data/helm, with where it came from), as Helm checks them; the dagster.yaml
the chart would render from them is rebuilt the way its templates build it and handed to Dagster's own
validation; and every name that must match one elsewhere (image, module, port, variables, Secret,
ConfigMap, pool) is compared. A Kubernetes deployment that drifts fails late and far away: a code
location that serves the wrong module, a run pod without a variable, a daemon that refuses its instance.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from jsonschema import Draft202012Validator

from oe_assets.config import settings
from oe_assets.definitions import build_definitions
from oe_assets.orchestration.resources import DUCKDB_POOL
from oe_assets.warehouse.postgres.url import PostgresUrl
from oe_assets_tests.unit.test_deploy_files import (
    CODE,
    DEPLOY,
    ROOT,
    SHARED_ENV,
    _arguments,
    _compose,
    _default,
    _image_cmd,
    _option,
    _service,
    _setting_names,
    _team_instance,
    _yaml,
)

HELM = DEPLOY / "helm"
SCHEMA = ROOT / "oe_assets_tests" / "data" / "helm" / "values.schema.json"
SECRET = "oe-assets-secrets"
CONFIG_MAP = "oe-assets-env"
PG_PASSWORD_KEY = "postgresql-password"  # the key the chart reads, not a secret
PG_PASSWORD_ENV = "DAGSTER_PG_PASSWORD"  # the variable's name, not a secret
SECRETS = {settings.CLIENT_SECRET, settings.PGPASSWORD, *settings.CELONIS_SECRETS}
STORAGES = {
    "run_storage": ("dagster_postgres.run_storage", PostgresRunStorage),
    "event_log_storage": ("dagster_postgres.event_log", PostgresEventLogStorage),
    "schedule_storage": ("dagster_postgres.schedule_storage", PostgresScheduleStorage),
}
"""Each storage block the chart writes: the module it names, and the class Dagster loads from it."""

CHART_DEFAULTS: dict[str, Any] = {
    "global": {"dagsterHome": "/opt/dagster/dagster_home"},
    "postgresql": {"postgresqlParams": {}, "postgresqlScheme": "", "service": {"port": 5432}},
    "runLauncher": {
        "type": "K8sRunLauncher",
        "config": {
            "k8sRunLauncher": {
                "imagePullPolicy": "Always",
                "jobNamespace": None,
                "loadInclusterConfig": True,
                "envConfigMaps": [],
                "envSecrets": [],
            }
        },
    },
    "dagsterDaemon": {
        "enabled": True,
        "runCoordinator": {
            "enabled": True,
            "type": "QueuedRunCoordinator",
            "config": {
                "queuedRunCoordinator": {
                    "maxConcurrentRuns": None,
                    "tagConcurrencyLimits": [],
                    "dequeueIntervalSeconds": None,
                    "dequeueUseThreads": True,
                    "dequeueNumWorkers": 4,
                }
            },
        },
        "runMonitoring": {
            "enabled": True,
            "startTimeoutSeconds": 300,
            "pollIntervalSeconds": 120,
            "maxResumeRunAttempts": 0,
            "freeSlotsAfterRunEndSeconds": 0,
        },
    },
    "concurrency": {"enabled": False, "pools": {}, "runs": {"tagConcurrencyLimits": []}},
}
"""The chart's own values that the instance below is rendered from, where ours leave them (its
values.yaml, at the commit the data README names): the rest of that file changes nothing rendered here."""


# --- reading the files ---------------------------------------------------------------------------


def _values() -> dict[str, Any]:
    return _yaml(HELM / "values.yaml")


def _config_map_manifest() -> dict[str, Any]:
    return _yaml(HELM / "oe-assets-env.yaml")


def _config_map() -> dict[str, str]:
    data: dict[str, str] = _config_map_manifest()["data"]
    return data


def _secret_literals() -> dict[str, str]:
    """Each key the header's `kubectl create secret generic` gives the Secret, with the value shown."""
    text = (HELM / "values.yaml").read_text(encoding="utf-8")
    command = re.search(rf"kubectl create secret generic {SECRET}((?: \\\n#\s+--from-literal=\S+)+)", text)
    assert command, f"values.yaml's header shows no `kubectl create secret generic {SECRET}`"
    return dict(re.findall(r"--from-literal=([^=\s]+)=(\S*?)(?: \\)?$", command.group(1), re.MULTILINE))


def _deployment() -> dict[str, Any]:
    deployments: list[dict[str, Any]] = _values()["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    return deployments[0]


def _launcher() -> dict[str, Any]:
    launcher: dict[str, Any] = _values()["runLauncher"]["config"]["k8sRunLauncher"]
    return launcher


def _names(sources: Sequence[Mapping[str, str]]) -> list[str]:
    return [source["name"] for source in sources]


def _with(values: dict[str, Any], path: Sequence[str], value: object) -> dict[str, Any]:
    """A copy of ``values`` with ``value`` at ``path``."""
    changed = copy.deepcopy(values)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


# --- the chart's schema ----------------------------------------------------------------------------


def _helm_schema() -> dict[str, Any]:
    """The chart's schema as Helm applies it to a values file.

    Helm validates the values once merged into the chart's own values.yaml, which is not stored here:
    a mapping may leave out keys the chart's defaults supply, so ``required`` is dropped there. A list
    replaces the chart's list whole, so inside list items every required key is kept: each ``$defs``
    entry comes twice, lenient and ``__strict``, and ``items`` leads to the strict ones. Kubernetes'
    own object schemas (``$ref`` to kubernetes-json-schema) are not stored either: those ``$ref`` are
    dropped, and the rest of each definition still applies.
    """
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    definitions = schema.pop("$defs")
    lenient = {name: _helm_node(node, strict=False) for name, node in definitions.items()}
    strict = {f"{name}__strict": _helm_node(node, strict=True) for name, node in definitions.items()}
    return {**_helm_node(schema, strict=False), "$defs": {**lenient, **strict}}


def _helm_node(node: Any, *, strict: bool) -> Any:
    if isinstance(node, list):
        return [_helm_node(item, strict=strict) for item in node]
    if not isinstance(node, dict):
        return node
    kept: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            if value.startswith("#/$defs/"):
                kept[key] = value + ("__strict" if strict else "")
        elif key != "required" or strict:
            kept[key] = _helm_node(value, strict=strict or key == "items")
    return kept


def _schema_errors(values: Mapping[str, Any]) -> list[str]:
    validator = Draft202012Validator(_helm_schema())
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    )


def test_the_values_are_valid_for_the_charts_schema() -> None:
    assert _schema_errors(_values()) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("dagsterDaemon", "runCoordinatr"), {}),  # a misspelt key
        (("concurrency", "pools", "defaultLimit"), "4"),  # a string where the chart wants a number
        (("runLauncher", "type"), "DockerRunLauncher"),  # not one of the chart's launchers
    ],
)
def test_the_schema_check_refuses_what_the_chart_refuses(path: tuple[str, ...], value: object) -> None:
    assert _schema_errors(_with(_values(), path, value)) != []


def test_a_deployment_must_be_whole_since_helm_merges_nothing_into_a_list_item() -> None:
    values = _values()
    del values["dagster-user-deployments"]["deployments"][0]["port"]
    assert any("'port' is a required property" in error for error in _schema_errors(values))


# --- the code location: image, module, port, name --------------------------------------------------


def test_the_code_location_serves_the_images_module_on_the_images_port() -> None:
    deployment, command = _deployment(), _image_cmd()
    args = deployment["dagsterApiGrpcArgs"]
    assert _option(args, "--module-name", "-m") == _option(command, "--module-name", "-m")
    assert not {"-h", "--host", "-p", "--port"} & set(args)  # the chart adds those itself
    assert deployment["port"] == int(_option(command, "--port", "-p")) == int(_arguments("EXPOSE")[0]) == 4000


def test_the_code_location_runs_the_image_the_dockerfile_builds() -> None:
    repository, tag = _service(CODE)["image"].rsplit(":", 1)
    image = _deployment()["image"]
    assert image["repository"].rsplit("/", 1)[-1] == repository  # a registry path may come before it
    assert str(image["tag"]) == tag


def test_the_location_is_the_one_machine_locations_in_a_kubernetes_name() -> None:
    local = _yaml(ROOT / "workspace.yaml")["load_from"][0]["python_module"]["location_name"]
    name = _deployment()["name"]
    assert name == local.replace("_", "-")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)  # a DNS-1123 label, as Kubernetes wants


# --- the variables: ConfigMap and Secret -------------------------------------------------------------


def test_every_variable_oe_assets_reads_reaches_the_code_location_and_the_runs() -> None:
    names = _setting_names() | {settings.PGPASSWORD}
    assert {settings.WAREHOUSE, settings.CLIENT_SECRET, settings.CELONIS_URL} <= names
    assert set(_config_map()) | (set(_secret_literals()) - {PG_PASSWORD_KEY}) == names
    assert _config_map_manifest()["metadata"]["name"] == CONFIG_MAP
    deployment, launcher = _deployment(), _launcher()
    assert _names(deployment["envConfigMaps"]) == _names(launcher["envConfigMaps"]) == [CONFIG_MAP]
    assert _names(deployment["envSecrets"]) == _names(launcher["envSecrets"]) == [SECRET]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}


def test_secrets_reach_the_pods_only_through_the_secret() -> None:
    values, data, literals = _values(), _config_map(), _secret_literals()
    assert set(literals) == SECRETS | {PG_PASSWORD_KEY}
    assert not SECRETS & set(data)
    assert set(literals.values()) <= {"", "..."}  # the command shows where values go, never one
    assert values["global"]["postgresqlSecretName"] == SECRET
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlPassword"] == ""
    warehouse = settings.parse_warehouse(data[settings.WAREHOUSE])
    assert isinstance(warehouse, PostgresUrl)
    assert not warehouse.password  # PGPASSWORD, from the Secret


def test_the_warehouse_is_on_the_postgresql_server_of_dagsters_storage() -> None:
    postgresql = _values()["postgresql"]
    warehouse = settings.parse_warehouse(_config_map()[settings.WAREHOUSE])
    assert isinstance(warehouse, PostgresUrl)
    assert postgresql["enabled"] is False  # the external server, not the chart's bundled one
    assert (warehouse.host, warehouse.port) == (postgresql["postgresqlHost"], postgresql["service"]["port"])


def test_dagsters_storage_is_the_compose_files_database_with_its_driver() -> None:
    shared, postgresql = _compose()[SHARED_ENV], _values()["postgresql"]
    assert postgresql["postgresqlHost"] == _default(shared["DAGSTER_POSTGRES_HOST"])
    assert str(postgresql["service"]["port"]) == _default(shared["DAGSTER_POSTGRES_PORT"])
    assert postgresql["postgresqlUsername"] == _default(shared["DAGSTER_POSTGRES_USER"])
    assert postgresql["postgresqlDatabase"] == _default(shared["DAGSTER_POSTGRES_DB"])
    assert postgresql["postgresqlScheme"] == _team_instance()["storage"]["postgres"]["postgres_db"]["scheme"]


# --- the instance the chart renders ------------------------------------------------------------------


def _helm_merge(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` over ``defaults`` as Helm merges them: mappings key by key, anything else replaced
    whole, and a null removes the default's key."""
    merged = dict(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _rendered_instance(values: Mapping[str, Any]) -> dict[str, Any]:
    """The blocks of the dagster.yaml the chart renders (templates/configmap-instance.yaml and its
    helpers/instance/*.tpl) that our values set or that Dagster checks against each other."""
    merged = _helm_merge(CHART_DEFAULTS, values)
    daemon = merged["dagsterDaemon"]
    assert daemon["enabled"]
    assert daemon["runCoordinator"]["enabled"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    instance = {
        **_storage(merged["postgresql"]),
        "run_launcher": _run_launcher(merged),
        "run_coordinator": _run_coordinator(
            daemon["runCoordinator"]["config"].get("queuedRunCoordinator", {})
        ),
        "run_monitoring": _run_monitoring(daemon["runMonitoring"]),
    }
    if "telemetry" in merged:
        instance["telemetry"] = {"enabled": merged["telemetry"]["enabled"]}
    if merged["concurrency"]["enabled"]:
        instance["concurrency"] = _concurrency(merged["concurrency"])
    return instance


def _storage(postgresql: Mapping[str, Any]) -> dict[str, Any]:
    """_postgresql.tpl: one postgres_db for the three storages, its password from DAGSTER_PG_PASSWORD."""
    database = {
        "username": postgresql["postgresqlUsername"],
        "password": {"env": PG_PASSWORD_ENV},
        "hostname": postgresql["postgresqlHost"],
        "db_name": postgresql["postgresqlDatabase"],
        "port": postgresql["service"]["port"],
        "params": postgresql["postgresqlParams"],
    }
    if postgresql.get("postgresqlScheme"):
        database["scheme"] = postgresql["postgresqlScheme"]
    return {
        block: {"module": module, "class": cls.__name__, "config": {"postgres_db": database}}
        for block, (module, cls) in STORAGES.items()
    }


def _run_launcher(merged: Mapping[str, Any]) -> dict[str, Any]:
    """_run-launcher.tpl's K8sRunLauncher, the release's names left out (they need a release)."""
    k8s = merged["runLauncher"]["config"]["k8sRunLauncher"]
    config = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "image_pull_policy": k8s["imagePullPolicy"],
        "dagster_home": merged["global"]["dagsterHome"],
        "postgres_password_secret": merged["global"]["postgresqlSecretName"],
    }
    if k8s["envConfigMaps"]:
        config["env_config_maps"] = _names(k8s["envConfigMaps"])
    if k8s["envSecrets"]:
        config["env_secrets"] = _names(k8s["envSecrets"])
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def _helm_empty(value: object) -> bool:
    """What sprig's ``empty`` (and so ``compact``) drops."""
    return value is None or value is False or value == 0 or value in ("", [], {})


def _run_coordinator(queued: Mapping[str, Any]) -> dict[str, Any]:
    """_run-coordinator.tpl: the config block only once a value is set, and then max_concurrent_runs
    always (-1 when unset)."""
    coordinator: dict[str, Any] = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
    if all(_helm_empty(value) for value in queued.values()):
        return coordinator
    limit = queued.get("maxConcurrentRuns")
    config: dict[str, Any] = {"max_concurrent_runs": -1 if limit is None else limit}
    for key, name in (
        ("tagConcurrencyLimits", "tag_concurrency_limits"),
        ("dequeueIntervalSeconds", "dequeue_interval_seconds"),
        ("dequeueUseThreads", "dequeue_use_threads"),
        ("dequeueNumWorkers", "dequeue_num_workers"),
    ):
        if queued.get(key):
            config[name] = queued[key]
    if block := queued.get("blockOpConcurrencyLimitedRuns"):
        config["block_op_concurrency_limited_runs"] = {
            "enabled": block["enabled"],
            "op_concurrency_slot_buffer": block["opConcurrencySlotBuffer"],
        }
    return {**coordinator, "config": config}


def _run_monitoring(monitoring: Mapping[str, Any]) -> dict[str, Any]:
    rendered = {"enabled": monitoring["enabled"], "start_timeout_seconds": monitoring["startTimeoutSeconds"]}
    for key, name in (
        ("cancelTimeoutSeconds", "cancel_timeout_seconds"),
        ("maxRuntimeSeconds", "max_runtime_seconds"),
        ("maxResumeRunAttempts", "max_resume_run_attempts"),
    ):
        if monitoring.get(key) is not None:
            rendered[name] = monitoring[key]
    rendered["poll_interval_seconds"] = monitoring["pollIntervalSeconds"]
    rendered["free_slots_after_run_end_seconds"] = monitoring["freeSlotsAfterRunEndSeconds"]
    return rendered


def _concurrency(concurrency: Mapping[str, Any]) -> dict[str, Any]:
    """_concurrency.tpl: each block, and each key in it, only when set."""
    pools, runs = concurrency.get("pools") or {}, concurrency.get("runs") or {}
    pool_keys = {"defaultLimit": "default_limit", "granularity": "granularity"}
    pool_keys["opGranularityRunBuffer"] = "op_granularity_run_buffer"
    rendered: dict[str, Any] = {}
    if set_pools := {name: pools[key] for key, name in pool_keys.items() if pools.get(key) is not None}:
        rendered["pools"] = set_pools
    set_runs: dict[str, Any] = {}
    if runs.get("maxConcurrentRuns") is not None:
        set_runs["max_concurrent_runs"] = runs["maxConcurrentRuns"]
    if runs.get("tagConcurrencyLimits"):
        set_runs["tag_concurrency_limits"] = runs["tagConcurrencyLimits"]
    if set_runs:
        rendered["runs"] = set_runs
    return rendered


def _validated(instance: Mapping[str, Any], folder: Path) -> Mapping[str, Any]:
    """``instance`` as Dagster loads a dagster.yaml: its schema, and the blocks checked against each other."""
    (folder / "dagster.yaml").write_text(yaml.safe_dump(dict(instance)), encoding="utf-8")
    config, _ = dagster_instance_config(str(folder))
    return config


@pytest.fixture
def pg_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PG_PASSWORD_ENV, "placeholder")


@pytest.mark.usefixtures("pg_password")
def test_the_instance_the_chart_renders_is_valid_for_dagster(tmp_path: Path) -> None:
    instance = _rendered_instance(_values())
    config = _validated(instance, tmp_path)
    assert "config" not in config["run_coordinator"]  # the run limits are in `concurrency` alone
    assert config["concurrency"] == {
        "pools": {"default_limit": 4, "granularity": "run"},
        "runs": {"max_concurrent_runs": 4},
    }
    assert config["run_launcher"]["config"]["env_secrets"] == [SECRET]
    # The release's own names (the chart derives them from the release) complete the launcher.
    launcher = {**instance["run_launcher"]["config"], "instance_config_map": "oe-assets-instance"}
    checked = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), launcher)
    assert checked.success, checked.errors
    for block, (module, cls) in STORAGES.items():
        assert getattr(importlib.import_module(module), cls.__name__) is cls
        result = process_config(resolve_to_config_type(cls.config_type()), instance[block]["config"])
        assert result.success, (block, result.errors)


@pytest.mark.usefixtures("pg_password")
def test_dagster_refuses_the_instance_while_the_charts_run_coordinator_defaults_stay(tmp_path: Path) -> None:
    values = _with(_values(), ("dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator"), {})
    instance = _rendered_instance(values)
    assert instance["run_coordinator"]["config"]["max_concurrent_runs"] == -1
    with pytest.raises(DagsterInvalidConfigError, match="max_concurrent_runs"):
        _validated(instance, tmp_path)


def test_run_monitoring_is_the_team_instances() -> None:
    rendered, team = _rendered_instance(_values())["run_monitoring"], _team_instance()["run_monitoring"]
    assert {key: rendered[key] for key in team} == team


# --- the pool ----------------------------------------------------------------------------------------


def test_the_default_limit_is_the_warehouse_pools_and_lets_several_runs_write() -> None:
    defs = build_definitions()
    nodes: list[Any] = [*(defs.assets or []), *(defs.asset_checks or [])]
    assert all(isinstance(node, dg.AssetsDefinition | dg.AssetChecksDefinition) for node in nodes)
    assert {node.op.pool for node in nodes} - {None} == {
        DUCKDB_POOL
    }  # the only pool: the default is its limit
    pools, team = _values()["concurrency"]["pools"], _team_instance()["concurrency"]
    assert pools["defaultLimit"] > 1  # PostgreSQL: several runs write at once (a DuckDB file takes 1)
    assert pools["granularity"] == team["pools"]["granularity"]
    assert _values()["concurrency"]["runs"]["maxConcurrentRuns"] == team["runs"]["max_concurrent_runs"]
