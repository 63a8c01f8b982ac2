"""The team deployment's files (deploy/, .dockerignore) agree with the code and with each other.

Nothing here builds an image or starts a container: the files are parsed, and every name that must
be the same in two places is compared. A Docker deployment fails late and far away when one of them
drifts: a run container that cannot reach the network, a volume compose prefixed with its project's
name, a variable the run launcher cannot find in the daemon's environment (it raises), a location
renamed so schedules lose their history, or a secret written into the repository.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import ConfigurableClassData
from dagster_docker import DockerRunLauncher
from packaging.specifiers import SpecifierSet

from oe_assets.config import settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CODE, WEBSERVER, DAEMON = "oe_assets_code", "dagster_webserver", "dagster_daemon"
DAGSTER_SERVICES = (CODE, WEBSERVER, DAEMON)
SHARED_ENV = "x-oe-environment"
PASSWORD = "DAGSTER_POSTGRES_PASSWORD"  # the variable's name, not a secret
SECRETS = (settings.CLIENT_SECRET, *settings.CELONIS_SECRETS)


# --- reading the files ---------------------------------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


def _compose() -> dict[str, Any]:
    return _yaml(DEPLOY / "docker-compose.yaml")


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _team_instance() -> dict[str, Any]:
    return _yaml(DEPLOY / "dagster.yaml")


def _launcher_config() -> dict[str, Any]:
    config: dict[str, Any] = _team_instance()["run_launcher"]["config"]
    return config


def _dockerfile_text() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    logical = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", _dockerfile_text())
    lines = (line.strip() for line in logical.splitlines())
    pairs = (line.split(maxsplit=1) for line in lines if line and not line.startswith("#"))
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def _arguments(keyword: str) -> list[str]:
    return [args for key, args in _instructions() if key == keyword]


def _image_cmd() -> list[str]:
    cmd = json.loads(_arguments("CMD")[-1])
    assert isinstance(cmd, list)
    return [str(part) for part in cmd]


def _image_env() -> dict[str, str]:
    pairs = (item.split("=", 1) for args in _arguments("ENV") for item in shlex.split(args))
    return {name: value for name, value in pairs}


def _copies() -> dict[str, str]:
    """Each file or folder the image copies from the build context, and where it lands."""
    copied: dict[str, str] = {}
    for args in _arguments("COPY"):
        *sources, target = args.split()
        for source in sources:
            dest = target + PurePosixPath(source).name if target.endswith("/") else target
            copied[source.rstrip("/")] = str(PurePosixPath(dest))
    return copied


def _option(command: list[str], *names: str) -> str:
    """The value after the first of ``names`` in ``command``."""
    index = next(i for i, part in enumerate(command) if part in names)
    return command[index + 1]


def _default(value: str) -> str:
    """The default of a compose value ``${NAME:-default}``."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    assert match, f"{value!r} is not ${{NAME:-default}}"
    return match.group(1)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _setting_names() -> set[str]:
    """Every variable oe_assets reads: the names oe_assets.config.settings fixes in one place."""
    return {
        value
        for name, value in vars(settings).items()
        if name.isupper() and isinstance(value, str) and value.startswith(("OE_", "CELONIS_"))
    }


def _postgres_names() -> set[str]:
    db = _team_instance()["storage"]["postgres"]["postgres_db"]
    return {value["env"] for value in db.values() if isinstance(value, dict)}


# --- the files parse -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["deploy/dagster.yaml", "deploy/workspace.yaml", "deploy/docker-compose.yaml", "workspace.yaml"]
)
def test_every_yaml_file_parses(path: str) -> None:
    assert _yaml(ROOT / path)


def test_the_dockerfile_parses_into_a_python_image_with_a_json_command() -> None:
    keywords = [key for key, _ in _instructions()]
    assert keywords[0] == "FROM"
    assert set(keywords) <= {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "EXPOSE", "CMD"}
    assert _image_cmd()[0] == "dagster"


def test_the_image_python_is_one_the_project_supports() -> None:
    image = _arguments("FROM")[0]
    match = re.fullmatch(r"python:(\d+\.\d+)-slim", image)
    assert match, image
    assert SpecifierSet(_pyproject()["project"]["requires-python"]).contains(match.group(1))


def test_the_image_installs_the_package_with_the_team_extra() -> None:
    team = " ".join(_pyproject()["project"]["optional-dependencies"]["team"])
    assert "dagster-postgres" in team
    assert "dagster-docker" in team
    assert any("pip install --no-cache-dir '.[team]'" in run for run in _arguments("RUN"))
    assert {"pyproject.toml", "README.md", "oe_assets"} <= set(_copies())


# --- one image -----------------------------------------------------------------------------------


def test_the_code_server_is_built_from_the_dockerfile_with_the_repository_as_context() -> None:
    build = _service(CODE)["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_the_image_built_is_the_one_every_service_and_every_run_uses() -> None:
    built = re.search(r"docker build -f (\S+) -t (\S+) \.", _dockerfile_text())
    assert built, "the Dockerfile's header names no `docker build -f ... -t IMAGE .`"
    code = _service(CODE)
    assert built.group(1) == code["build"]["dockerfile"]
    assert code["image"] == built.group(2)
    assert code["environment"]["DAGSTER_CURRENT_IMAGE"] == code["image"]
    assert {_service(name)["image"] for name in (WEBSERVER, DAEMON)} == {code["image"]}


# --- the code server: port, module, location -----------------------------------------------------


def test_the_grpc_port_is_the_same_everywhere() -> None:
    server = _yaml(DEPLOY / "workspace.yaml")["load_from"][0]["grpc_server"]
    ports = {
        "EXPOSE": _arguments("EXPOSE")[0],
        "CMD": _option(_image_cmd(), "--port", "-p"),
        "compose command": _option(_service(CODE)["command"], "--port", "-p"),
        "compose healthcheck": _option(_service(CODE)["healthcheck"]["test"], "--port", "-p"),
        "deploy/workspace.yaml": str(server["port"]),
    }
    assert len(set(ports.values())) == 1, ports
    assert server["host"] == CODE


def test_compose_runs_the_image_default_command_for_the_code_server() -> None:
    assert _service(CODE)["command"] == _image_cmd()


def test_the_location_name_is_the_one_machine_workspaces() -> None:
    team = _yaml(DEPLOY / "workspace.yaml")["load_from"][0]["grpc_server"]["location_name"]
    local = _yaml(ROOT / "workspace.yaml")["load_from"][0]["python_module"]["location_name"]
    assert team == local == _pyproject()["tool"]["dg"]["project"]["code_location_name"]


def test_the_code_server_serves_the_projects_definitions_module() -> None:
    project = _pyproject()["tool"]["dg"]["project"]
    target = project.get("code_location_target_module", f"{project['root_module']}.definitions")
    local = _yaml(ROOT / "workspace.yaml")["load_from"][0]["python_module"]["module_name"]
    assert _option(_image_cmd(), "--module-name", "-m") == target == local
    assert importlib.util.find_spec(target) is not None


# --- what the image holds, where the services look for it ----------------------------------------


def test_the_team_instance_is_dagster_home_in_the_image() -> None:
    assert _copies()["deploy/dagster.yaml"] == f"{_image_env()['DAGSTER_HOME']}/dagster.yaml"


def test_webserver_and_daemon_read_the_workspace_the_image_holds() -> None:
    workspace = _copies()["deploy/workspace.yaml"]
    for name in (WEBSERVER, DAEMON):
        assert _option(_service(name)["command"], "-w", "--workspace") == workspace, name


def _dockerignore_regexes() -> list[re.Pattern[str]]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "the matcher below knows no exceptions"
    return [re.compile(_glob_regex(pattern)) for pattern in patterns]


def _glob_regex(pattern: str) -> str:
    """A .dockerignore pattern (relative to the context's root; ``**`` spans folders) as a regex."""
    tokens = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    parts = re.split(r"(\*\*/?|\*|\?)", pattern)
    return "".join(tokens.get(part, re.escape(part)) for part in parts)


def _ignored(relative: PurePosixPath, regexes: list[re.Pattern[str]]) -> bool:
    """Whether the path, or a folder it is in, matches a pattern (Docker drops the whole folder)."""
    prefixes = [PurePosixPath(*relative.parts[: i + 1]).as_posix() for i in range(len(relative.parts))]
    return any(regex.fullmatch(prefix) for regex in regexes for prefix in prefixes)


def _files_copied() -> list[PurePosixPath]:
    found: list[PurePosixPath] = []
    for source in _copies():
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        found += [
            PurePosixPath(f.relative_to(ROOT).as_posix()) for f in files if "__pycache__" not in f.parts
        ]
    return found


def test_dockerignore_drops_none_of_the_files_the_image_copies() -> None:
    regexes = _dockerignore_regexes()
    files = _files_copied()
    assert any(f.suffix == ".sql" for f in files)  # the package data is among them
    assert [f for f in files if _ignored(f, regexes)] == []


@pytest.mark.parametrize(
    "local",
    [".venv", "data", "dagster_home", "bench_results", "exports", ".git", ".env", "oe_assets_tests"],
)
def test_dockerignore_keeps_local_state_and_tests_out(local: str) -> None:
    assert _ignored(PurePosixPath(local, "anything"), _dockerignore_regexes())


# --- the run launcher's network, volume and environment -------------------------------------------


def test_compose_network_and_volume_have_the_names_the_run_launcher_uses() -> None:
    compose, launcher = _compose(), _launcher_config()
    volume, mount = launcher["container_kwargs"]["volumes"][0].split(":")[:2]
    assert [net["name"] for net in compose["networks"].values()] == [launcher["network"]]
    assert volume in {v["name"] for v in compose["volumes"].values() if v and "name" in v}
    for name in DAGSTER_SERVICES:
        assert _service(name)["networks"] == list(compose["networks"]), name
    assert f"{_compose_volume_key(volume)}:{mount}" in _service(CODE)["volumes"]


def _compose_volume_key(name: str) -> str:
    """The key under compose's ``volumes:`` of the volume named ``name``."""
    return next(key for key, v in _compose()["volumes"].items() if v and v.get("name") == name)


def test_the_warehouse_is_the_compose_servers_database_and_the_exports_are_on_the_volume() -> None:
    shared, database = _compose()[SHARED_ENV], _service("postgresql")
    warehouse = settings.parse_warehouse(_default(shared[settings.WAREHOUSE]))
    assert isinstance(warehouse, settings.PostgresUrl)
    assert (warehouse.host, str(warehouse.port)) == (
        _default(shared["DAGSTER_POSTGRES_HOST"]), _default(shared["DAGSTER_POSTGRES_PORT"]),
    )  # fmt: skip
    assert warehouse.user == _default(shared["DAGSTER_POSTGRES_USER"])
    init = DEPLOY / "postgres-init"
    assert f"./{init.name}:/docker-entrypoint-initdb.d:ro" in database["volumes"]
    created = re.findall(r"CREATE DATABASE (\w+);", "".join(p.read_text() for p in init.glob("*.sql")))
    assert created == [warehouse.database]
    mount = _launcher_config()["container_kwargs"]["volumes"][0].split(":")[1]
    assert str(PurePosixPath(_default(shared[settings.EXPORT_DIR])).parent) == mount


def test_every_variable_oe_assets_reads_reaches_the_code_server_the_daemon_and_the_runs() -> None:
    names = _setting_names() | _postgres_names() | {settings.PGPASSWORD}
    assert {settings.WAREHOUSE, settings.CLIENT_SECRET, "CELONIS_URL", PASSWORD} <= names
    assert names <= set(_launcher_config()["env_vars"])
    assert names <= set(_compose()[SHARED_ENV])


def test_the_daemon_sets_every_variable_the_run_launcher_passes_on() -> None:
    passed = set(_launcher_config()["env_vars"])
    for name in DAGSTER_SERVICES:
        assert passed <= set(_service(name)["environment"]), name


def test_each_shared_variable_comes_from_the_environment_of_the_same_name() -> None:
    for name, value in _compose()[SHARED_ENV].items():
        assert re.fullmatch(rf"\$\{{{name}:[-?][^}}]*\}}", value), f"{name}: {value!r}"


def test_the_postgres_defaults_point_at_the_compose_database() -> None:
    shared, database = _compose()[SHARED_ENV], _service("postgresql")
    assert _default(shared["DAGSTER_POSTGRES_HOST"]) == "postgresql"
    assert _default(shared["DAGSTER_POSTGRES_PORT"]) == "5432"
    assert _default(database["environment"]["POSTGRES_USER"]) == _default(shared["DAGSTER_POSTGRES_USER"])
    assert _default(database["environment"]["POSTGRES_DB"]) == _default(shared["DAGSTER_POSTGRES_DB"])
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])


def test_services_start_once_what_they_need_is_up() -> None:
    assert _service(CODE)["depends_on"] == {"postgresql": {"condition": "service_healthy"}}
    for name in (WEBSERVER, DAEMON):
        depends = _service(name)["depends_on"]
        assert depends["postgresql"]["condition"] == "service_healthy", name
        assert CODE in depends, name
    assert "/var/run/docker.sock:/var/run/docker.sock" in _service(DAEMON)["volumes"]


# --- no secret in the repository -----------------------------------------------------------------


def test_no_password_or_secret_value_is_written() -> None:
    shared, database = _compose()[SHARED_ENV], _service("postgresql")["environment"]
    required = re.compile(rf"\$\{{{PASSWORD}:\?[^}}]+\}}")
    assert required.fullmatch(shared[PASSWORD])
    assert required.fullmatch(database["POSTGRES_PASSWORD"])
    assert re.fullmatch(rf"\$\{{{settings.PGPASSWORD}:\?[^}}]+\}}", shared[settings.PGPASSWORD])
    for name in SECRETS:
        assert shared[name] == f"${{{name}:-}}", name
    assert _team_instance()["storage"]["postgres"]["postgres_db"]["password"] == {"env": PASSWORD}
    assert not set(_image_env()) & {PASSWORD, settings.PGPASSWORD, *SECRETS}


# --- the team instance is Dagster's ---------------------------------------------------------------


@pytest.fixture
def postgres_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _postgres_names():
        monkeypatch.setenv(name, "5432" if name.endswith("_PORT") else "placeholder")


@pytest.mark.usefixtures("postgres_env")
def test_the_team_instance_is_a_valid_dagster_instance_config(tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": PASSWORD}
    launcher = config["run_launcher"]
    data = ConfigurableClassData(launcher["module"], launcher["class"], yaml.safe_dump(launcher["config"]))
    docker = data.rehydrate(DockerRunLauncher)  # checks the config against its schema; no daemon needed
    assert docker.networks == [launcher["config"]["network"]]


def test_run_monitoring_is_the_one_machine_instances() -> None:
    one_machine = _yaml(ROOT / "oe_assets" / "orchestration" / "dagster_instance.yaml")
    assert _team_instance()["run_monitoring"] == one_machine["run_monitoring"]


def test_pools_let_the_postgresql_warehouse_take_parallel_runs_and_duckdb_one() -> None:
    """Warehouse ops share one pool: 1 on one machine (a DuckDB file has one writer), as many as the
    runs allowed at once for the team (PostgreSQL takes parallel writers)."""
    one_machine = _yaml(ROOT / "oe_assets" / "orchestration" / "dagster_instance.yaml")["concurrency"]
    team = _team_instance()["concurrency"]
    assert one_machine["pools"] == {"default_limit": 1, "granularity": "run"}
    assert team["pools"]["granularity"] == "run"
    assert team["pools"]["default_limit"] == team["runs"]["max_concurrent_runs"] > 1
