"""Secrets never appear, not even in part: every entry point, started as a real
process with settings that break a rule, names the variable and the rule and
prints no piece of any secret it was given; nor do the gateway and a worker when
Redis is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from pydantic import ValidationError

from fence.settings import Settings, describe_settings_error, get_settings
from producer.stack.launch import gateway_missing, launch_worker, start_gateway
from producer.stack.processes import free_port
from tests.support import REPO

# Distinctive on purpose: no four characters in a row of these occur in ordinary output,
# so finding any of them proves a leak. The short token would leak whole if echoed.
TOKEN = "ZqXvJkWpQz7Yx9Vb2KqHgTm"
SHORT_TOKEN = "JxQz"
REDIS_PASSWORD = "VbKqZx8WjPq2Hm"
FLOWER_PASSWORD = "QmZvXk4JpWq"
AWS_SECRET = "XjQvZk9PwBm3KqYz"
SECRETS = (TOKEN, SHORT_TOKEN, REDIS_PASSWORD, FLOWER_PASSWORD, AWS_SECRET)

BAD_LEASE = {"FENCE_LEASE_MS": "1000", "FENCE_LEASE_RENEW_MS": "900"}
RULE = "FENCE_LEASE_RENEW_MS: must be at most half of FENCE_LEASE_MS"

CELERY = [sys.executable, "-m", "celery", "-A", "workers"]
FENCE = [sys.executable, "-m", "producer.cli"]
ENTRY_POINTS = {
    "gateway": [sys.executable, "-m", "producer.gateway", "--port", "0"],
    "worker": [*CELERY, "worker", "--pool", "solo"],
    "beat": [*CELERY, "beat", "--schedule", "{tmp}/beat-schedule"],
    "flower": [*CELERY, "flower", "--port", "0"],
    "fence status": [*FENCE, "status", "some-run"],
    "fence stack": [*FENCE, "stack", "--dir", "{tmp}/stack", "--quiet"],
}


def secret_env(redis_port: int) -> dict[str, str]:
    return {
        "FENCE_API_TOKENS": f"{TOKEN},{SHORT_TOKEN}",
        "FENCE_REDIS_URL": f"redis://fence:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0",
        "FENCE_FLOWER_BASIC_AUTH": f"fence:{FLOWER_PASSWORD}",
        "AWS_ACCESS_KEY_ID": "fence-test",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "PYTHONPATH": str(REPO),
    }


def leaked(output: str) -> list[str]:
    """Every piece of four or more characters of a secret that ``output`` contains."""
    return [
        secret[i : i + 4] for secret in SECRETS for i in range(len(secret) - 3)
        if secret[i : i + 4] in output
    ]  # fmt: skip


def run_entry_point(entry_point: str, tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Start ``entry_point`` with only ``env`` beside a clean environment; its output."""
    argv = [part.replace("{tmp}", str(tmp_path)) for part in ENTRY_POINTS[entry_point]]
    return subprocess.run(
        argv,
        env={**_clean_environ(), **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_settings_error_names_the_rule_and_no_secret(entry_point, tmp_path):
    result = run_entry_point(entry_point, tmp_path, {**secret_env(free_port()), **BAD_LEASE})

    assert result.returncode != 0, result.stdout
    assert RULE in result.stdout
    assert leaked(result.stdout) == [], result.stdout
    assert not (tmp_path / "stack" / "redis").exists()  # `fence stack` started nothing


def test_pydantic_errors_and_reprs_carry_no_secret():
    """The library's own surface: ``Settings(...)`` raised or printed shows no value."""
    with pytest.raises(ValidationError) as raised:
        Settings(
            redis_url=f"redis://:{REDIS_PASSWORD}@h:1/0",
            api_tokens=[TOKEN, SHORT_TOKEN],
            flower_basic_auth=f"fence:{FLOWER_PASSWORD}",
            lease_ms=1000,
            lease_renew_ms=900,
        )
    assert RULE in str(raised.value)
    assert leaked(str(raised.value)) == []
    assert leaked(describe_settings_error(raised.value)) == []

    settings = Settings(
        redis_url=f"redis://:{REDIS_PASSWORD}@h:1/0",
        api_tokens=[TOKEN, SHORT_TOKEN],
        flower_basic_auth=f"fence:{FLOWER_PASSWORD}",
    )
    assert leaked(repr(settings)) == []
    assert leaked(str(settings)) == []


def test_get_settings_names_every_bad_variable(monkeypatch):
    monkeypatch.setenv("FENCE_METRICS_PORT", "not-a-port")
    monkeypatch.setenv("FENCE_LOG_FORMAT", TOKEN)
    get_settings.cache_clear()
    try:
        with pytest.raises(ValueError) as raised:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(raised.value)
    assert "FENCE_METRICS_PORT: Input should be a valid integer" in message
    assert "FENCE_LOG_FORMAT: Input should be 'text' or 'json'" in message
    assert leaked(message) == []
    assert raised.value.__suppress_context__  # the pydantic error is not chained


@pytest.mark.skipif(gateway_missing() is not None, reason=str(gateway_missing()))
def test_the_gateway_shows_no_redis_password_while_redis_is_unreachable(tmp_path):
    port = free_port()
    env = {**secret_env(free_port()), "FENCE_MEMORY": f"sqlite:///{tmp_path / 'memory.db'}"}
    gateway = start_gateway(env, port, cwd=REPO, log_path=tmp_path / "gateway.log")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            health = client.get("/healthz")
            submit = client.post("/v1/sessions/alice/runs", json={"message": "hello"})
            status = client.get("/v1/runs/some-run")
    finally:
        gateway.stop()

    assert (health.status_code, submit.status_code, status.status_code) == (503, 503, 503)
    assert health.json()["components"]["redis"]["ok"] is False
    answers = health.text + submit.text + status.text
    assert leaked(answers) == [], answers
    assert "redis unavailable" in gateway.output
    assert leaked(gateway.output) == [], gateway.output


def test_a_worker_shows_no_redis_password_while_redis_is_unreachable(tmp_path):
    env = {**secret_env(free_port()), "FENCE_MEMORY": f"sqlite:///{tmp_path / 'memory.db'}"}
    worker = launch_worker("w1", env, cwd=REPO, log_path=tmp_path / "worker.log")
    try:
        worker.wait_for(r"Cannot connect to redis://fence:\*\*@127\.0\.0\.1")
        mark = worker.line_count()
        worker.wait_for(r"Cannot connect to", start=mark)  # and again, on the retry
    finally:
        worker.stop()
    assert leaked(worker.output) == [], worker.output


def _clean_environ() -> dict[str, str]:
    """This environment without FENCE_* and AWS_* variables: only the test's settings apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("FENCE_", "AWS_"))}
