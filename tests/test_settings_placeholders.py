"""The example files' secrets are public: ``.env.example``'s ``change-me-...`` and
``ops/k8s/secret.example.yaml``'s ``REPLACE-...``. A stack started with one would
let in anyone who read them, so every entry point refuses them at start, with one
line naming each variable and never the value."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from fence.settings import PLACEHOLDER_RULE, Settings, describe_settings_error
from producer.stack.processes import free_port
from tests.deploy.test_compose import env_example
from tests.support import REPO
from tests.test_settings_secrets import ENTRY_POINTS, run_entry_point

SECRET_TEMPLATE = REPO / "ops" / "k8s" / "secret.example.yaml"
SECRET_VARIABLES = ("FENCE_API_TOKENS", "FENCE_FLOWER_BASIC_AUTH", "FENCE_REDIS_URL")


def example_secrets() -> dict[str, str]:
    """The secrets a user who copied the example files unedited would start with."""
    template = yaml.safe_load(SECRET_TEMPLATE.read_text())["stringData"]
    dotenv = env_example()
    return {
        "FENCE_API_TOKENS": dotenv["FENCE_API_TOKENS"],
        "FENCE_FLOWER_BASIC_AUTH": dotenv["FENCE_FLOWER_BASIC_AUTH"],
        "FENCE_REDIS_URL": template["FENCE_REDIS_URL"],
    }


def settings_from(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("FENCE_").lower(): v for k, v in env.items()})


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_entry_point_refuses_the_example_secrets_in_one_line(entry_point, tmp_path):
    secrets = example_secrets()
    secrets["FENCE_REDIS_URL"] = f"redis://:REPLACE-redis-password@127.0.0.1:{free_port()}/0"
    result = run_entry_point(entry_point, tmp_path, {**secrets, "PYTHONPATH": str(REPO)})

    assert result.returncode != 0, result.stdout
    [line] = [line for line in result.stdout.splitlines() if PLACEHOLDER_RULE in line]
    for variable in SECRET_VARIABLES:
        assert f"{variable}: {PLACEHOLDER_RULE}" in line, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    for value in (*secrets.values(), "change-me-api-token", "REPLACE-redis-password"):
        assert value not in result.stdout
    assert not (tmp_path / "stack" / "redis").exists()  # `fence stack` started nothing


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_each_example_secret_is_refused_by_name(variable):
    """Holds for both example files, so a placeholder edited in one of them and not
    in ``PLACEHOLDER_MARKERS`` fails here."""
    template = yaml.safe_load(SECRET_TEMPLATE.read_text())["stringData"]
    dotenv = env_example()
    examples = {
        "FENCE_API_TOKENS": [dotenv["FENCE_API_TOKENS"], template["FENCE_API_TOKENS"]],
        "FENCE_FLOWER_BASIC_AUTH": [
            dotenv["FENCE_FLOWER_BASIC_AUTH"],
            template["FLOWER_BASIC_AUTH"],
        ],
        "FENCE_REDIS_URL": [template["FENCE_REDIS_URL"]],
    }
    for value in examples[variable]:
        with pytest.raises(ValidationError) as raised:
            settings_from({variable: value})
        assert describe_settings_error(raised.value) == f"{variable}: {PLACEHOLDER_RULE}"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FENCE_API_TOKENS", "Zq8vJkWpQz7Yx9Vb2KqHgTm,CHANGE-ME"),  # any one of several
        ("FENCE_REDIS_URL", "rediss://fence:change%2Dme@cache:6380/0"),  # percent-encoded
        ("FENCE_FLOWER_BASIC_AUTH", "admin:Replace-this"),
    ],
)
def test_a_placeholder_anywhere_in_a_secret_is_refused(variable, value):
    with pytest.raises(ValidationError) as raised:
        settings_from({variable: value})
    assert describe_settings_error(raised.value) == f"{variable}: {PLACEHOLDER_RULE}"


def test_real_secrets_and_placeholder_free_urls_are_accepted():
    settings = settings_from(
        {
            "FENCE_API_TOKENS": "Zq8vJkWpQz7Yx9Vb2KqHgTm,JxQzk4JpWqVbKqZx8WjPq2Hm",
            "FENCE_FLOWER_BASIC_AUTH": "admin:QmZvXk4JpWq",
            # only the password is a secret: a host may be named anything
            "FENCE_REDIS_URL": "rediss://fence:VbKqZx8WjPq2Hm@replace-me.cache.internal:6380/0",
        }
    )
    assert len(settings.api_tokens) == 2
    assert settings_from({"FENCE_REDIS_URL": "redis://redis:6379/0"}).redis_url
