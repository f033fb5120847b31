"""BedrockConverse.stream on the wire: a real ``bedrock-runtime`` client reading a local
endpoint's ``application/vnd.amazon.eventstream`` body through botocore's own decoder."""

from __future__ import annotations

import json
import time

import pytest

from fence.errors import ModelError
from fence.messages import ToolCall
from fence.models.base import ModelResponse
from fence.models.bedrock import BedrockConverse
from fence.models.streaming import StreamInterruptedError, TextDelta, ToolCallDelta
from tests.models.conftest import WEATHER, converse_reply, user
from tests.models.wire import (
    converse_event,
    converse_exception,
    converse_stream_events,
    event_stream_reply,
    json_reply,
)

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
STREAM_PATH = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"


def model_with(client, **options) -> BedrockConverse:
    return BedrockConverse(MODEL, client=client, backoff_s=0, **options)


def opening(*texts: str) -> list[bytes]:
    """The first events of a text reply: messageStart and a delta per text."""
    return converse_stream_events({"text": list(texts)})[: 1 + len(texts)]


def test_text_streams_as_the_events_arrive_then_the_whole_response(
    local_server, local_bedrock_client
):
    reply = event_stream_reply(
        converse_stream_events({"text": ["Hello ", "Alice."]}, usage=(30, 4))
    )
    reply.hold_after = 2  # messageStart and "Hello ", then wait
    local_server.queue(reply)
    model = model_with(local_bedrock_client, source="app", inference_config={"maxTokens": 256})

    stream = model.stream([user("My name is Alice")], system="Be brief.")
    started = time.perf_counter()
    first = next(stream)
    assert time.perf_counter() - started < 5  # arrived while the server held the rest (10 s)
    reply.resume.set()
    *deltas, response = [first, *stream]

    assert deltas == [TextDelta(text="Hello "), TextDelta(text="Alice.")]
    assert response == ModelResponse(
        content="Hello Alice.",
        usage={"input_tokens": 30, "output_tokens": 4},
        stop_reason="end_turn",
    )
    (request,) = local_server.requests
    assert request.path == STREAM_PATH
    assert request.json() == {
        "messages": [{"role": "user", "content": [{"text": "My name is Alice"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 256},
        "requestMetadata": {"source": "app"},
    }


def test_tool_use_input_deltas_are_passed_on_and_assembled(local_server, local_bedrock_client):
    local_server.queue(
        event_stream_reply(
            converse_stream_events(
                {"text": ["Let me ", "check."]},
                {"toolUse": ("tooluse_a", "get_weather", ['{"city"', ': "Paris"}'])},
                {"toolUse": ("tooluse_b", "get_weather", ['{"city": "Oslo"}'])},
                stop_reason="tool_use",
            )
        )
    )

    *deltas, response = model_with(local_bedrock_client).stream(
        [user("Paris and Oslo?")], tools=[WEATHER]
    )

    assert deltas == [
        TextDelta(text="Let me "),
        TextDelta(text="check."),
        ToolCallDelta(index=0, id="tooluse_a", name="get_weather", arguments=""),
        ToolCallDelta(index=0, arguments='{"city"'),
        ToolCallDelta(index=0, arguments=': "Paris"}'),
        ToolCallDelta(index=1, id="tooluse_b", name="get_weather", arguments=""),
        ToolCallDelta(index=1, arguments='{"city": "Oslo"}'),
    ]
    assert response.content == "Let me check."
    assert response.tool_calls == (
        ToolCall(id="tooluse_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="tooluse_b", name="get_weather", arguments={"city": "Oslo"}),
    )
    assert response.stop_reason == "tool_use"
    assert "toolConfig" in local_server.requests[0].json()


@pytest.mark.parametrize(
    "blocks",
    [
        [{"text": ["18C ", "and sunny."]}],
        [
            {"text": ["Checking."]},
            {"toolUse": ("tooluse_a", "get_weather", ['{"ci', 'ty": "Paris"}'])},
            {"text": ["One moment."]},  # converse joins text blocks with a newline
        ],
        [{"toolUse": ("tooluse_a", "now", [])}],  # a tool call without input
    ],
)
def test_the_streamed_response_equals_the_invoked_one(local_server, local_bedrock_client, blocks):
    def whole(block: dict) -> dict:
        if "text" in block:
            return {"text": "".join(block["text"])}
        call_id, name, fragments = block["toolUse"]
        arguments = json.loads("".join(fragments) or "{}")
        return {"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}}

    local_server.queue(
        json_reply(converse_reply(*map(whole, blocks), stop_reason="tool_use")),
        event_stream_reply(converse_stream_events(*blocks, stop_reason="tool_use")),
    )
    model = model_with(local_bedrock_client)

    invoked = model.invoke([user("Weather?")], tools=[WEATHER])
    *deltas, streamed = model.stream([user("Weather?")], tools=[WEATHER])

    assert streamed == invoked
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == invoked.content
    assert [r.path.rsplit("/", 1)[1] for r in local_server.requests] == [
        "converse",
        "converse-stream",
    ]
    assert local_server.requests[0].json() == local_server.requests[1].json()


def test_throttling_before_the_stream_is_retried(local_server, local_bedrock_client):
    local_server.queue(
        json_reply(
            {"message": "Too many requests"},
            status=429,
            headers={"x-amzn-ErrorType": "ThrottlingException"},
        ),
        event_stream_reply(converse_stream_events({"text": ["Made it."]})),
    )

    *_, response = model_with(local_bedrock_client).stream([user("Hi")])

    assert response.content == "Made it."
    assert len(local_server.requests) == 2


def test_a_stream_error_event_before_any_delta_is_retried(local_server, local_bedrock_client):
    local_server.queue(
        event_stream_reply(
            [
                converse_event("messageStart", {"role": "assistant"}),
                converse_exception("modelStreamErrorException", "stream failed, retry"),
            ]
        ),
        event_stream_reply(converse_stream_events({"text": ["Back."]})),
    )

    *_, response = model_with(local_bedrock_client).stream([user("Hi")])

    assert response.content == "Back."
    assert len(local_server.requests) == 2


def test_throttling_in_the_stream_after_a_delta_is_reported_as_such_and_not_retried(
    local_server, local_bedrock_client
):
    local_server.queue(
        event_stream_reply([*opening("Once "), converse_exception("throttlingException", "slow")]),
        event_stream_reply(converse_stream_events({"text": ["never read"]})),
    )
    received = []

    with pytest.raises(StreamInterruptedError) as raised:
        for item in model_with(local_bedrock_client).stream([user("A story?")]):
            received.append(item)

    error = raised.value
    assert received == [TextDelta(text="Once ")]
    assert error.after_deltas == 1
    assert error.retryable is True
    assert "throttlingException (in the stream): slow" in str(error)
    assert MODEL in str(error)
    assert len(local_server.requests) == 1


def test_a_validation_error_in_the_stream_is_not_retried(local_server, local_bedrock_client):
    local_server.queue(
        event_stream_reply([converse_exception("validationException", "bad input")]),
        event_stream_reply(converse_stream_events({"text": ["never read"]})),
    )

    with pytest.raises(ModelError, match="validationException") as raised:
        list(model_with(local_bedrock_client).stream([user("Hi")]))

    assert raised.value.retryable is False
    assert not isinstance(raised.value, StreamInterruptedError)
    assert len(local_server.requests) == 1


def test_a_stream_cut_after_two_deltas_is_reported_as_such_and_not_retried(
    local_server, local_bedrock_client
):
    local_server.queue(
        event_stream_reply(opening("Once ", "upon "), cut=True),
        event_stream_reply(converse_stream_events({"text": ["never read"]})),
    )

    with pytest.raises(StreamInterruptedError) as raised:
        list(model_with(local_bedrock_client).stream([user("A story?")]))

    assert raised.value.after_deltas == 2
    assert raised.value.retryable is True  # a lost connection: trying again may help
    assert len(local_server.requests) == 1


def test_malformed_streamed_input_fails_after_the_deltas_were_sent(
    local_server, local_bedrock_client
):
    bad = {"toolUse": ("tooluse_a", "get_weather", ['["Paris"]'])}
    local_server.queue(event_stream_reply(converse_stream_events(bad, stop_reason="tool_use")))

    with pytest.raises(StreamInterruptedError, match="malformed tool call") as raised:
        list(model_with(local_bedrock_client).stream([user("Weather?")], tools=[WEATHER]))

    assert raised.value.retryable is True  # a fresh sample usually fixes it
