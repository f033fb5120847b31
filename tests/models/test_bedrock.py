"""BedrockConverse on the wire: a real ``bedrock-runtime`` client under ``Stubber``.

``Stubber`` checks each request against the service model (required fields,
types, shapes) and ``expected_params`` checks it is exactly the request we
mean to send, so the conversion rules are proved on the real API surface.
"""

from __future__ import annotations

import json

import pytest
from botocore.awsrequest import AWSResponse

from fence.errors import MissingCredentialError, ModelError
from fence.messages import Message, Role, ToolCall
from fence.models.bedrock import (
    CLAUDE_35_SONNET_ID,
    CONVERSATION_START,
    BedrockConverse,
    Claude35Sonnet,
    bedrock_tool_use_id,
)
from tests.models.conftest import WEATHER, converse_reply, expect_converse, user

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"

WEATHER_CONFIG = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "inputSchema": {"json": WEATHER.parameters},
            }
        }
    ]
}


def assistant(text: str, *calls: ToolCall) -> Message:
    return Message(role=Role.ASSISTANT, content=text, tool_calls=calls)


def tool_result(call_id: str, text: str) -> Message:
    return Message(role=Role.TOOL, content=text, tool_call_id=call_id, name="get_weather")


def text(value: str) -> dict:
    return {"text": value}


def model_with(client, **options) -> BedrockConverse:
    return BedrockConverse(MODEL, client=client, backoff_s=0, **options)


# -- text and tool use ----------------------------------------------------------------


def test_text_reply_round_trip(stubber, bedrock_client):
    expect_converse(
        stubber,
        MODEL,
        converse_reply(text("Hello Alice."), usage=(30, 4)),
        system=[text("Be brief.")],
        messages=[{"role": "user", "content": [text("My name is Alice")]}],
        inferenceConfig={"maxTokens": 256, "temperature": 0.0},
        requestMetadata={"source": "app"},
    )
    model = model_with(
        bedrock_client, source="app", inference_config={"maxTokens": 256, "temperature": 0.0}
    )

    response = model.invoke([user("My name is Alice")], system="Be brief.")

    stubber.assert_no_pending_responses()
    assert response.content == "Hello Alice."
    assert response.tool_calls == ()
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 4)
    assert response.stop_reason == "end_turn"


def test_tool_use_round_trip(stubber, bedrock_client):
    question = user("Weather in Paris?")
    expect_converse(
        stubber,
        MODEL,
        converse_reply(
            text("Let me check."),
            {
                "toolUse": {
                    "toolUseId": "tooluse_abc",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            },
            stop_reason="tool_use",
        ),
        messages=[{"role": "user", "content": [text("Weather in Paris?")]}],
        toolConfig=WEATHER_CONFIG,
    )
    model = model_with(bedrock_client)

    first = model.invoke([question], tools=[WEATHER])

    assert first.content == "Let me check."
    assert first.tool_calls == (
        ToolCall(id="tooluse_abc", name="get_weather", arguments={"city": "Paris"}),
    )
    assert first.stop_reason == "tool_use"

    expect_converse(
        stubber,
        MODEL,
        converse_reply(text("18C and sunny.")),
        messages=[
            {"role": "user", "content": [text("Weather in Paris?")]},
            {
                "role": "assistant",
                "content": [
                    text("Let me check."),
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_abc",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "tooluse_abc",
                            "content": [text("18C, sunny")],
                        }
                    }
                ],
            },
        ],
        toolConfig=WEATHER_CONFIG,
    )
    history = [
        question,
        assistant(first.content, *first.tool_calls),
        tool_result("tooluse_abc", "18C, sunny"),
    ]

    second = model.invoke(history, tools=[WEATHER])

    stubber.assert_no_pending_responses()
    assert second.content == "18C and sunny."


def test_empty_reply_is_an_error_not_an_empty_message(stubber, bedrock_client):
    stubber.add_response("converse", converse_reply(stop_reason="max_tokens"))

    with pytest.raises(ModelError, match="empty reply") as raised:
        model_with(bedrock_client).invoke([user("Hi")])

    assert raised.value.retryable is False


def test_a_malformed_sample_is_retried(stubber, bedrock_client):
    stubber.add_response("converse", converse_reply(stop_reason="malformed_model_output"))
    bad_input = {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": ["Paris"]}}
    stubber.add_response("converse", converse_reply(bad_input, stop_reason="tool_use"))
    stubber.add_response("converse", converse_reply(text("Fine now.")))

    response = model_with(bedrock_client, max_retries=2).invoke([user("Hi")], tools=[WEATHER])

    stubber.assert_no_pending_responses()
    assert response.content == "Fine now."


# -- conversion rules -------------------------------------------------------------


def test_prefill_that_opens_the_conversation_gets_a_user_message_before_it(stubber, bedrock_client):
    expect_converse(
        stubber,
        MODEL,
        converse_reply(text("Sure.")),
        messages=[
            {"role": "user", "content": [text(CONVERSATION_START)]},
            {"role": "assistant", "content": [text("I understand. I'll help you.")]},
            {"role": "user", "content": [text("Help me plan a trip.")]},
        ],
    )

    model_with(bedrock_client).invoke(
        [assistant("I understand. I'll help you."), user("Help me plan a trip.")]
    )

    stubber.assert_no_pending_responses()


def test_system_notes_join_the_system_prompt_and_same_role_neighbours_merge(
    stubber, bedrock_client
):
    calls = (
        ToolCall(id="t1", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="t2", name="get_weather", arguments={"city": "Oslo"}),
    )
    history = [
        Message(role=Role.SYSTEM, content="Previous conversation summarized: Alice likes tea."),
        user("Weather in Paris and Oslo?"),
        assistant("", *calls),
        tool_result("t1", "18C"),
        tool_result("t2", "3C"),
        assistant("Paris 18C, Oslo 3C."),
        Message(role=Role.SYSTEM, content="The user is now on mobile."),
        user("Thanks."),
        user("Which is warmer?"),
    ]
    expect_converse(
        stubber,
        MODEL,
        converse_reply(text("Paris.")),
        system=[
            text("You are a travel agent."),
            text("Previous conversation summarized: Alice likes tea."),
            text("The user is now on mobile."),
        ],
        messages=[
            {"role": "user", "content": [text("Weather in Paris and Oslo?")]},
            {
                "role": "assistant",
                "content": [  # no blank text block for the empty content
                    {
                        "toolUse": {
                            "toolUseId": "t1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    },
                    {
                        "toolUse": {
                            "toolUseId": "t2",
                            "name": "get_weather",
                            "input": {"city": "Oslo"},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [text("18C")]}},
                    {"toolResult": {"toolUseId": "t2", "content": [text("3C")]}},
                ],
            },
            {"role": "assistant", "content": [text("Paris 18C, Oslo 3C.")]},
            {"role": "user", "content": [text("Thanks."), text("Which is warmer?")]},
        ],
        toolConfig=WEATHER_CONFIG,
    )

    model_with(bedrock_client).invoke(history, system="You are a travel agent.", tools=[WEATHER])

    stubber.assert_no_pending_responses()


def test_without_tools_past_tool_calls_are_sent_as_text(stubber, bedrock_client):
    call = ToolCall(id="t1", name="get_weather", arguments={"city": "Paris"})
    expect_converse(
        stubber,
        MODEL,
        converse_reply(text("Summary: Paris is 18C.")),
        messages=[
            {"role": "user", "content": [text("Weather in Paris?")]},
            {
                "role": "assistant",
                "content": [text('[called tool get_weather (call t1) with {"city": "Paris"}]')],
            },
            {
                "role": "user",
                "content": [
                    text("[result of tool get_weather call t1]\n18C"),
                    text("Summarize."),
                ],
            },
        ],
    )

    model_with(bedrock_client).invoke(
        [
            user("Weather in Paris?"),
            assistant("", call),
            tool_result("t1", "18C"),
            user("Summarize."),
        ]
    )

    stubber.assert_no_pending_responses()


def test_tool_call_ids_bedrock_would_reject_are_mapped_consistently(stubber, bedrock_client):
    foreign = "call 1/ä"  # e.g. written by another provider into shared memory
    mapped = bedrock_tool_use_id(foreign)
    assert mapped != foreign and bedrock_tool_use_id(foreign) == mapped
    assert bedrock_tool_use_id("tooluse_abc-1") == "tooluse_abc-1"
    expect_converse(
        stubber,
        MODEL,
        converse_reply(text("Done.")),
        messages=[
            {"role": "user", "content": [text("Go")]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": mapped, "name": "get_weather", "input": {}}}],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": mapped, "content": [text("ok")]}}],
            },
        ],
        toolConfig=WEATHER_CONFIG,
    )

    model_with(bedrock_client).invoke(
        [
            user("Go"),
            assistant("", ToolCall(id=foreign, name="get_weather")),
            tool_result(foreign, "ok"),
        ],
        tools=[WEATHER],
    )

    stubber.assert_no_pending_responses()


def test_source_is_made_safe_for_request_metadata(stubber, bedrock_client):
    expect_converse(
        stubber,
        MODEL,
        converse_reply(text("ok")),
        messages=[{"role": "user", "content": [text("Hi")]}],
        requestMetadata={"source": "billing_app v2"},
    )

    model_with(bedrock_client, source="billing|app v2").invoke([user("Hi")])

    stubber.assert_no_pending_responses()


# -- failures and retries -----------------------------------------------------------


def test_throttling_is_retried_by_fence_and_then_succeeds(stubber, bedrock_client):
    stubber.add_client_error(
        "converse", "ThrottlingException", "Too many requests", http_status_code=429
    )
    stubber.add_response("converse", converse_reply(text("Made it.")))

    response = model_with(bedrock_client).invoke([user("Hi")])

    stubber.assert_no_pending_responses()
    assert response.content == "Made it."


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 429),
        ("ServiceUnavailableException", 503),
        ("ModelNotReadyException", 429),
        ("InternalServerException", 500),
        ("ModelTimeoutException", 408),
        ("SomethingNewException", 502),
    ],
)
def test_transient_errors_are_retryable(stubber, bedrock_client, code, status):
    stubber.add_client_error("converse", code, "try again", http_status_code=status)

    with pytest.raises(ModelError) as raised:
        model_with(bedrock_client, max_retries=0).invoke([user("Hi")])

    assert raised.value.retryable is True
    assert code in str(raised.value)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", 400),
        ("AccessDeniedException", 403),
        ("ResourceNotFoundException", 404),
        ("ModelErrorException", 424),
    ],
)
def test_other_errors_are_not_retried_and_name_the_model(stubber, bedrock_client, code, status):
    stubber.add_client_error("converse", code, "the request is wrong", http_status_code=status)
    stubber.add_response("converse", converse_reply(text("never sent")))

    with pytest.raises(ModelError) as raised:
        model_with(bedrock_client).invoke([user("Hi")])

    assert raised.value.retryable is False
    assert MODEL in str(raised.value) and code in str(raised.value)
    with pytest.raises(AssertionError):  # the second reply is still waiting: no retry
        stubber.assert_no_pending_responses()


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: object):
        yield self.data


def test_the_model_builds_its_own_client_without_botocore_retries(aws_env, monkeypatch):
    """Throttling reaches the wire once per fence attempt: fence's retry is the only one."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    model = BedrockConverse(MODEL, region="eu-west-1", backoff_s=0, max_retries=2)
    client = model._get_client()
    sent = []

    def throttle(request, **_):
        sent.append(request)
        return AWSResponse(
            request.url,
            429,
            {"x-amzn-ErrorType": "ThrottlingException", "content-type": "application/json"},
            _Body(json.dumps({"message": "Too many requests"}).encode()),
        )

    client.meta.events.register("before-send.bedrock-runtime.Converse", throttle)

    with pytest.raises(ModelError) as raised:
        model.invoke([user("Hi")])

    assert raised.value.retryable is True
    assert len(sent) == 3  # 1 + max_retries; botocore alone would make 3 per call
    assert sent[0].url.startswith("https://bedrock-runtime.eu-west-1.amazonaws.com/model/")


def test_missing_aws_credentials_fail_on_first_call_naming_what_to_set(aws_env):
    model = Claude35Sonnet(region="us-east-1")  # constructing needs no credentials
    client = model._get_client()
    sent = []
    client.meta.events.register(
        "before-send.bedrock-runtime.Converse", lambda **kw: sent.append(kw)
    )

    with pytest.raises(MissingCredentialError) as raised:
        model.invoke([user("Hi")])

    assert "AWS_ACCESS_KEY_ID" in str(raised.value) and "AWS_PROFILE" in str(raised.value)
    assert sent == []  # failed before anything was sent


def test_missing_region_is_a_clear_error(aws_env):
    with pytest.raises(ModelError, match="AWS_REGION"):
        BedrockConverse(MODEL).invoke([user("Hi")])


def test_claude_35_sonnet_uses_the_documented_model_id():
    model = Claude35Sonnet(region="us-east-1", source="app")

    assert model.model_id == CLAUDE_35_SONNET_ID == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert model.region == "us-east-1" and model.source == "app"
    assert Claude35Sonnet(model_id="us.anthropic.claude-3-5-sonnet-20240620-v1:0").model_id == (
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    )
