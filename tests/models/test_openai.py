"""OpenAIChat on the wire: a real ``openai`` client talking to an in-process endpoint."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fence.errors import MissingCredentialError, ModelError
from fence.messages import Message, Role, ToolCall
from fence.models.openai import GPT4o, GPT4omini, OpenAIChat
from tests.models.conftest import WEATHER, OpenAIServer, api_error, completion, user

KEY = "sk-test-0123456789abcdef-SECRET"
REPO_ROOT = Path(__file__).resolve().parents[2]


def model_on(server: OpenAIServer, **options) -> OpenAIChat:
    options.setdefault("api_key", KEY)
    return GPT4omini(source="app", backoff_s=0, http_client=server.http_client(), **options)


# -- the request --------------------------------------------------------------------


def test_request_sends_system_prompt_first_then_history_in_openai_shape(openai_server):
    openai_server.queue(completion("It is sunny."))
    history = [
        Message(role=Role.SYSTEM, content="Previous conversation summarized: Alice, Paris."),
        user("What's the weather in Paris?"),
        Message(
            role=Role.ASSISTANT,
            content="",
            tool_calls=(ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),),
        ),
        Message(role=Role.TOOL, content="18C, sunny", tool_call_id="call_1", name="get_weather"),
        Message(role=Role.ASSISTANT, content="It is 18C and sunny."),
        user("And tomorrow?"),
    ]

    model_on(openai_server).invoke(history, system="You are a weather bot.", tools=[WEATHER])

    (request,) = openai_server.requests
    assert request.method == "POST"
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(request.content)
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "system", "content": "Previous conversation summarized: Alice, Paris."},
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "assistant", "content": "It is 18C and sunny."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert "tool_choice" not in body  # the model decides (the API default, "auto")
    assert body["user"] == "app"  # the source, for attribution on the provider side
    assert "stream" not in body


def test_request_without_tools_or_system_prompt_omits_them(openai_server):
    openai_server.queue(completion("Hi."))

    OpenAIChat(
        "llama3.1", api_key=KEY, backoff_s=0, http_client=openai_server.http_client()
    ).invoke([user("Hello")])

    body = openai_server.bodies[0]
    assert body == {"model": "llama3.1", "messages": [{"role": "user", "content": "Hello"}]}


def test_base_url_points_the_model_at_a_compatible_server(openai_server):
    openai_server.queue(completion("Hi from Ollama."))
    model = OpenAIChat(
        "llama3.1",
        base_url="http://localhost:11434/v1",
        api_key="ollama",
        http_client=openai_server.http_client(),
    )

    assert model.invoke([user("Hello")]).content == "Hi from Ollama."
    assert openai_server.requests[0].url == "http://localhost:11434/v1/chat/completions"


def test_named_models_use_their_openai_model_ids():
    assert GPT4o(source="app").model_id == "gpt-4o"
    assert GPT4omini(source="app").model_id == "gpt-4o-mini"
    assert GPT4omini(source="app").source == "app"


# -- the response -------------------------------------------------------------------


def test_text_reply_is_parsed_with_usage_and_stop_reason(openai_server):
    openai_server.queue(completion("Paris is sunny.", usage=(120, 9)))

    response = model_on(openai_server).invoke([user("Weather?")])

    assert response.content == "Paris is sunny."
    assert response.tool_calls == ()
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 9)
    assert response.stop_reason == "stop"


def test_tool_calls_are_parsed_with_json_arguments(openai_server):
    openai_server.queue(
        completion(
            None,
            tool_calls=[
                ("call_a", "get_weather", '{"city": "Paris"}'),
                ("call_b", "get_weather", '{"city": "Oslo"}'),
                ("call_c", "now", ""),  # some servers send "" for a tool without arguments
            ],
            finish_reason="tool_calls",
        )
    )

    response = model_on(openai_server).invoke([user("Weather in Paris and Oslo?")], tools=[WEATHER])

    assert response.content == ""
    assert response.tool_calls == (
        ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"}),
        ToolCall(id="call_c", name="now", arguments={}),
    )
    assert response.stop_reason == "tool_calls"


def test_missing_usage_counts_as_zero(openai_server):
    openai_server.queue(completion("ok", usage=None))

    response = model_on(openai_server).invoke([user("Hi")])

    assert (response.usage.input_tokens, response.usage.output_tokens) == (0, 0)


def test_malformed_tool_arguments_are_retried_as_a_fresh_sample(openai_server):
    openai_server.queue(
        completion(None, tool_calls=[("c1", "get_weather", '{"city": "Par')]),
        completion(None, tool_calls=[("c2", "get_weather", '{"city": "Paris"}')]),
    )

    response = model_on(openai_server, max_retries=1).invoke([user("Weather?")], tools=[WEATHER])

    assert len(openai_server.requests) == 2
    assert response.tool_calls[0].arguments == {"city": "Paris"}


def test_tool_call_arguments_that_are_not_a_json_object_are_retried(openai_server):
    openai_server.queue(
        completion(None, tool_calls=[("c1", "get_weather", '["Paris"]')]),
        completion(None, tool_calls=[("c2", "get_weather", '{"city": NaN}')]),
        completion(None, tool_calls=[("c3", "get_weather", '{"city": "Paris"}')]),
    )

    response = model_on(openai_server, max_retries=2).invoke([user("Weather?")], tools=[WEATHER])

    assert len(openai_server.requests) == 3
    assert response.tool_calls[0].id == "c3"


def test_empty_reply_is_an_error_not_an_empty_message(openai_server):
    openai_server.queue(completion(None, finish_reason="length"))

    with pytest.raises(ModelError, match="empty reply") as raised:
        model_on(openai_server).invoke([user("Hi")])

    assert raised.value.retryable is False
    assert len(openai_server.requests) == 1


# -- failures and retries -----------------------------------------------------------


def test_rate_limit_is_retried_once_by_fence_and_then_succeeds(openai_server):
    openai_server.queue(
        api_error(429, "Rate limit reached for gpt-4o-mini", type_="requests"),
        completion("Made it."),
    )

    response = model_on(openai_server).invoke([user("Hi")])

    assert response.content == "Made it."
    assert len(openai_server.requests) == 2
    # The SDK's own retry loop is off: each request is its first attempt.
    assert [r.headers["x-stainless-retry-count"] for r in openai_server.requests] == ["0", "0"]


def test_server_errors_are_retried_up_to_max_retries(openai_server):
    openai_server.queue(*[api_error(503, "overloaded", type_="server_error")] * 3)

    with pytest.raises(ModelError) as raised:
        model_on(openai_server, max_retries=2).invoke([user("Hi")])

    assert raised.value.retryable is True
    assert "503" in str(raised.value)
    assert len(openai_server.requests) == 3


def test_timeouts_and_lost_connections_are_retryable(openai_server):
    openai_server.queue(
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        completion("Back."),
    )

    response = model_on(openai_server).invoke([user("Hi")])

    assert response.content == "Back."
    assert len(openai_server.requests) == 3


def test_bad_request_is_not_retried_and_names_the_model(openai_server):
    openai_server.queue(api_error(400, "Invalid 'messages[1].content': empty string."))

    with pytest.raises(ModelError) as raised:
        model_on(openai_server).invoke([user("Hi")])

    assert raised.value.retryable is False
    assert len(openai_server.requests) == 1
    assert "gpt-4o-mini" in str(raised.value)
    assert "Invalid 'messages[1].content'" in str(raised.value)


def test_exhausted_quota_is_a_429_that_is_not_retried(openai_server):
    openai_server.queue(
        api_error(429, "You exceeded your current quota.", code="insufficient_quota")
    )

    with pytest.raises(ModelError, match="insufficient_quota") as raised:
        model_on(openai_server).invoke([user("Hi")])

    assert raised.value.retryable is False
    assert len(openai_server.requests) == 1


# -- credentials --------------------------------------------------------------------


def test_missing_key_constructs_but_fails_on_first_call_naming_the_variable(
    openai_server, monkeypatch
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = GPT4omini(source="app", http_client=openai_server.http_client())  # no error yet

    with pytest.raises(MissingCredentialError, match="OPENAI_API_KEY"):
        model.invoke([user("Hi")])

    assert openai_server.requests == []


def test_key_is_read_from_the_environment_on_first_call(openai_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = GPT4omini(source="app", backoff_s=0, http_client=openai_server.http_client())
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    openai_server.queue(completion("ok"))

    model.invoke([user("Hi")])

    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_the_key_never_appears_in_errors_logs_or_repr(openai_server, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    model = GPT4omini(source="app", backoff_s=0, http_client=openai_server.http_client())
    openai_server.queue(
        api_error(503, f"upstream echoed {KEY}", type_="server_error"),
        api_error(401, f"Incorrect API key provided: {KEY}.", code="invalid_api_key"),
    )

    with caplog.at_level(logging.DEBUG), pytest.raises(ModelError) as raised:
        model.invoke([user("Hi")])

    error = raised.value
    assert "OPENAI_API_KEY" in str(error)  # says what to check ...
    assert KEY not in str(error)  # ... without the key itself
    assert error.__cause__ is None  # the SDK error (which echoes the key) is not chained
    assert error.retryable is False
    assert len(openai_server.requests) == 2  # the 503 was retried; the 401 was not
    assert KEY not in caplog.text
    assert KEY not in repr(model)


# -- the optional dependency ---------------------------------------------------------


def test_without_the_openai_package_construction_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # makes ``import openai`` fail

    with pytest.raises(ImportError, match=r"pip install 'fence\[openai\]'"):
        GPT4omini(source="app")


def test_importing_fence_models_does_not_need_the_openai_package():
    code = (
        "import sys; sys.modules['openai'] = None\n"
        "import fence.models, fence.models.openai, fence.models.bedrock\n"
        "assert fence.models.OpenAIChat is fence.models.openai.OpenAIChat\n"
        "assert fence.models.Claude35Sonnet is fence.models.bedrock.Claude35Sonnet\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
