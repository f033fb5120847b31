"""The agents override at work: a real gateway and a real ``celery worker`` started
with the settings ``docker-compose.agents.yml`` gives their containers (the mounted
directory on PYTHONPATH, FENCE_AGENTS, FENCE_DEFAULT_AGENT) run a turn on the
example module's agent, which no built-in registry has."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import httpx
import pytest

from producer.stack.launch import gateway_missing, start_gateway, start_redis, start_worker
from producer.stack.processes import free_port
from tests.deploy.test_compose import AGENTS_OVERRIDE, rendered
from tests.support import REPO

TOKEN = "Zq8vJkWpQz7Yx9Vb2KqHgTm"


def agent_settings(service: dict) -> dict[str, str]:
    """The override's settings for ``service``, with the container's mount point on
    PYTHONPATH replaced by the directory it mounts."""
    [mount] = service["volumes"]
    environment = service["environment"]
    pythonpath = environment["PYTHONPATH"].replace(mount["target"], mount["source"])
    return {
        "PYTHONPATH": f"{pythonpath}:{REPO}",
        "FENCE_AGENTS": environment["FENCE_AGENTS"],
        "FENCE_DEFAULT_AGENT": environment["FENCE_DEFAULT_AGENT"],
    }


@pytest.fixture
def runtime_env(tmp_path) -> Iterator[dict[str, str]]:
    redis, url = start_redis(tmp_path / "redis")
    yield {
        "FENCE_REDIS_URL": url,
        "FENCE_MEMORY": f"sqlite:///{tmp_path / 'memory.db'}",
        "FENCE_API_TOKENS": TOKEN,
    }
    redis.stop()


@pytest.mark.skipif(gateway_missing() is not None, reason=str(gateway_missing()))
def test_a_worker_and_the_gateway_run_the_mounted_agents(runtime_env, tmp_path, monkeypatch):
    services = rendered(AGENTS_OVERRIDE)["services"]
    worker_env = {**runtime_env, **agent_settings(services["worker"])}
    gateway_env = {**runtime_env, **agent_settings(services["gateway"])}
    module = worker_env["FENCE_AGENTS"].partition(":")[0]
    monkeypatch.syspath_prepend(services["worker"]["volumes"][0]["source"])
    example = importlib.import_module(module)
    port = free_port()
    # started elsewhere than the repository, so only PYTHONPATH can find the module
    worker = start_worker("w1", worker_env, cwd=tmp_path, log_path=tmp_path / "worker.log")
    gateway = start_gateway(gateway_env, port, cwd=tmp_path, log_path=tmp_path / "gateway.log")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
        ) as client:
            unknown = client.post(
                "/v1/sessions/guest-1/runs", json={"message": "hi", "agent": "demo"}
            )
            accepted = client.post(
                "/v1/sessions/guest-1/runs", json={"message": "A late check-out?"}
            )
            run_id = accepted.json()["run_id"]
            finished = client.get(f"/v1/runs/{run_id}", params={"wait": 30}).json()
            history = client.get("/v1/sessions/guest-1/messages").json()["messages"]
    finally:
        gateway.stop()
        worker.stop()

    assert unknown.status_code == 422 and "concierge" in unknown.text  # only its agents
    assert accepted.status_code == 202
    assert (finished["agent"], finished["state"]) == ("concierge", "succeeded"), finished
    oldest_first = [(m["role"], m["content"]) for m in reversed(history)]
    assert oldest_first[0] == ("assistant", example.GREETING)  # the agent's prefill
    assert oldest_first[1] == ("user", "A late check-out?")
    assert oldest_first[2][0] == "assistant" and "A late check-out?" in oldest_first[2][1]
