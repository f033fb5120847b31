"""OpenAIChat.stream on the wire: a real ``openai`` client reading a local server's SSE chunks."""

from __future__ import annotations

import time

import pytest

from fence.errors import ModelError
from fence.messages import ToolCall
from fence.models.base import ModelResponse
from fence.models.openai import GPT4omini, OpenAIChat
from fence.models.streaming import StreamInterruptedError, TextDelta, ToolCallDelta
from tests.models.conftest import WEATHER, user
from tests.models.wire import (
    LocalServer,
    Reply,
    chat_chunk,
    json_reply,
    sse_reply,
    streamed_completion,
    tool_call_chunks,
)

KEY = "sk-test-0123456789abcdef-SECRET"


def model_on(server: LocalServer, **options) -> OpenAIChat:
    return GPT4omini(source="app", api_key=KEY, base_url=f"{server.url}/v1", backoff_s=0, **options)


def api_error(status: int, message: str, type_: str) -> Reply:
    body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return json_reply(body, status=status)


def weather_calls() -> list[dict]:
    """Two tool calls whose JSON arguments arrive split across chunks."""
    return [
        *tool_call_chunks(0, "call_a", "get_weather", '{"ci', 'ty": "Pa', 'ris"}'),
        *tool_call_chunks(1, "call_b", "get_weather", '{"city":', ' "Oslo"}'),
    ]


def test_text_streams_as_the_chunks_arrive_then_the_whole_response(local_server):
    reply = sse_reply(streamed_completion("Paris ", "is ", "sunny.", usage=(120, 9)))
    reply.hold_after = 2  # the opening chunk and "Paris ", then wait
    local_server.queue(reply)

    stream = model_on(local_server).stream([user("Weather?")], system="Be brief.")
    started = time.perf_counter()
    first = next(stream)
    assert time.perf_counter() - started < 5  # arrived while the server held the rest (10 s)
    reply.resume.set()
    *deltas, response = [first, *stream]

    assert deltas == [TextDelta(text="Paris "), TextDelta(text="is "), TextDelta(text="sunny.")]
    assert response == ModelResponse(
        content="Paris is sunny.",
        usage={"input_tokens": 120, "output_tokens": 9},
        stop_reason="stop",
    )
    (request,) = local_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
    ]
    assert body["user"] == "app"


def test_tool_call_argument_deltas_are_passed_on_and_assembled(local_server):
    local_server.queue(
        sse_reply(streamed_completion(tool_calls=weather_calls(), finish_reason="tool_calls"))
    )

    *deltas, response = model_on(local_server).stream([user("Paris and Oslo?")], tools=[WEATHER])

    assert deltas == [
        ToolCallDelta(index=0, id="call_a", name="get_weather", arguments=""),
        ToolCallDelta(index=0, arguments='{"ci'),
        ToolCallDelta(index=0, arguments='ty": "Pa'),
        ToolCallDelta(index=0, arguments='ris"}'),
        ToolCallDelta(index=1, id="call_b", name="get_weather", arguments=""),
        ToolCallDelta(index=1, arguments='{"city":'),
        ToolCallDelta(index=1, arguments=' "Oslo"}'),
    ]
    assert response.content == ""
    assert response.tool_calls == (
        ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"}),
    )
    assert response.stop_reason == "tool_calls"
    assert local_server.requests[0].json()["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("texts", "tool_calls", "finish_reason"),
    [
        (("It is ", "18C."), [], "stop"),
        (("Let me check.",), weather_calls(), "tool_calls"),
    ],
)
def test_the_streamed_response_equals_the_invoked_one(
    local_server, texts, tool_calls, finish_reason
):
    message = {"role": "assistant", "content": "".join(texts), "refusal": None}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": id_,
                "type": "function",
                "function": {"name": "get_weather", "arguments": args},
            }
            for id_, args in [("call_a", '{"city": "Paris"}'), ("call_b", '{"city": "Oslo"}')]
        ]
    completion = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
    local_server.queue(
        json_reply(completion),
        sse_reply(streamed_completion(*texts, tool_calls=tool_calls, finish_reason=finish_reason)),
    )
    model = model_on(local_server)

    invoked = model.invoke([user("Weather?")], tools=[WEATHER])
    *deltas, streamed = model.stream([user("Weather?")], tools=[WEATHER])

    assert streamed == invoked
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == invoked.content


def test_rate_limits_and_server_errors_before_the_stream_are_retried(local_server):
    local_server.queue(
        api_error(429, "Rate limit reached for gpt-4o-mini", "requests"),
        api_error(500, "The server had an error", "server_error"),
        sse_reply(streamed_completion("Made ", "it.")),
    )

    *deltas, response = model_on(local_server).stream([user("Hi")])

    assert response.content == "Made it."
    assert deltas == [TextDelta(text="Made "), TextDelta(text="it.")]
    assert len(local_server.requests) == 3


def test_a_bad_request_before_the_stream_is_not_retried(local_server):
    local_server.queue(api_error(400, "Invalid 'messages'.", "invalid_request_error"))

    with pytest.raises(ModelError, match="HTTP 400") as raised:
        list(model_on(local_server).stream([user("Hi")]))

    assert raised.value.retryable is False
    assert not isinstance(raised.value, StreamInterruptedError)
    assert len(local_server.requests) == 1


def test_a_stream_cut_after_two_deltas_is_reported_as_such_and_not_retried(local_server):
    chunks = streamed_completion("Once ", "upon ", "a time.")
    local_server.queue(sse_reply(chunks, cut_after=3), sse_reply(chunks))
    received = []

    with pytest.raises(StreamInterruptedError) as raised:
        for item in model_on(local_server).stream([user("A story?")]):
            received.append(item)

    assert received == [TextDelta(text="Once "), TextDelta(text="upon ")]
    assert raised.value.after_deltas == 2
    assert raised.value.retryable is True  # a lost connection: trying again may help
    assert "after 2 deltas" in str(raised.value)
    assert len(local_server.requests) == 1


def test_an_error_chunk_before_any_delta_is_retried_when_the_server_failed(local_server):
    server_error = {"error": {"message": "The server had an error", "type": "server_error"}}
    local_server.queue(
        sse_reply([chat_chunk({"role": "assistant", "content": ""}), server_error]),
        sse_reply(streamed_completion("Back.")),
    )

    *_, response = model_on(local_server).stream([user("Hi")])

    assert response.content == "Back."
    assert len(local_server.requests) == 2


def test_an_error_chunk_after_deltas_is_reported_with_the_servers_message(local_server):
    refused = {"error": {"message": f"Bad key {KEY}", "type": "invalid_request_error"}}
    local_server.queue(sse_reply([chat_chunk({"content": "Hel"}), refused]))

    with pytest.raises(StreamInterruptedError) as raised:
        list(model_on(local_server).stream([user("Hi")]))

    assert raised.value.after_deltas == 1
    assert raised.value.retryable is False
    assert "Bad key ***" in str(raised.value) and KEY not in str(raised.value)


def test_malformed_streamed_arguments_fail_after_the_deltas_were_sent(local_server):
    calls = tool_call_chunks(0, "c1", "get_weather", '{"city": "Par')
    local_server.queue(sse_reply(streamed_completion(tool_calls=calls)))

    with pytest.raises(StreamInterruptedError, match="not a JSON object") as raised:
        list(model_on(local_server).stream([user("Weather?")], tools=[WEATHER]))

    assert raised.value.retryable is True  # a fresh sample usually fixes it
    assert len(local_server.requests) == 1
