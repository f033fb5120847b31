"""``Model.stream``: deltas then one response, retries only before the first delta."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from fence.errors import ModelError
from fence.messages import Message, Role, ToolCall
from fence.models import base
from fence.models.base import Model, ModelResponse, StreamItem, ToolSpec
from fence.models.local import EchoModel, ScriptedModel
from fence.models.streaming import (
    StreamInterruptedError,
    TextDelta,
    ToolCallDelta,
    ToolCallFragments,
)
from tests.models.conftest import user

HISTORY = [
    user("Hello there"),
    Message(role=Role.ASSISTANT, content="Hi."),
    user("Tell me  about\tstreams, please "),
]


def split(items: list[StreamItem]) -> tuple[list[StreamItem], ModelResponse]:
    """The deltas and the response of a whole stream; the response must come last, once."""
    *deltas, response = items
    assert isinstance(response, ModelResponse)
    assert not any(isinstance(item, ModelResponse) for item in deltas)
    return deltas, response


def text_of(deltas: list[StreamItem]) -> str:
    return "".join(delta.text for delta in deltas if isinstance(delta, TextDelta))


class Streaming(Model):
    """Streams scripted attempts: each a list of items, or items then an error."""

    model_id = "streaming"

    def __init__(self, *attempts: list, max_retries: int = 3) -> None:
        super().__init__(max_retries=max_retries, backoff_s=0)
        self.attempts = list(attempts)
        self.calls = 0
        self.closed = 0

    def _complete(self, messages, system, tools) -> ModelResponse:
        raise AssertionError("stream() must not call _complete on a streaming model")

    def _stream(self, messages, system, tools) -> Iterator[StreamItem]:
        self.calls += 1
        try:
            for item in self.attempts.pop(0):
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed += 1


# -- EchoModel ------------------------------------------------------------------------


def test_echo_streams_its_reply_word_by_word_and_ends_with_invokes_response():
    model = EchoModel()

    deltas, response = split(list(model.stream(HISTORY)))

    invoked = model.invoke(HISTORY)
    assert response == invoked
    assert text_of(deltas) == invoked.content
    assert [delta.text for delta in deltas] == [
        "I ",
        "was ",
        "sent ",
        "3 ",
        "messages. ",
        "You ",
        "said: ",
        "Tell ",
        "me  ",
        "about\t",
        "streams, ",
        "please ",
    ]


def test_echo_waits_its_token_delay_before_each_word():
    model = EchoModel(token_delay_s=0.02)
    started = time.perf_counter()

    arrivals = [time.perf_counter() - started for _ in model.stream(HISTORY)]

    tokens = len(arrivals) - 1
    assert tokens == 12
    assert arrivals[0] >= 0.02  # the first word waits too
    assert arrivals[-1] >= tokens * 0.02
    assert arrivals[-1] < tokens * 0.02 + 2.0


def test_echo_invoke_is_not_slowed_by_the_token_delay():
    started = time.perf_counter()

    EchoModel(token_delay_s=1.0).invoke(HISTORY)

    assert time.perf_counter() - started < 0.5


def test_echo_keeps_its_existing_arguments_and_checks_the_new_one():
    model = EchoModel(0.0, source="app")
    assert (model.latency, model.source, model.token_delay_s) == (0.0, "app", 0.0)
    with pytest.raises(ValueError, match="token_delay_s"):
        EchoModel(token_delay_s=-0.1)


def test_a_subclass_that_changes_echos_answer_streams_its_own_answer():
    call = ToolCall(id="call_1", name="lookup", arguments={"order": "1001"})

    class Calling(EchoModel):
        def _complete(self, messages, system, tools) -> ModelResponse:
            return ModelResponse(content="Looking it up.", tool_calls=(call,))

    deltas, response = split(list(Calling().stream([user("Where is 1001?")])))

    assert deltas == [
        TextDelta(text="Looking "),
        TextDelta(text="it "),
        TextDelta(text="up."),
        ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"order": "1001"}'),
    ]
    assert response.tool_calls == (call,)


# -- a model that implements only _complete ---------------------------------------------


def test_a_model_with_only_complete_streams_its_whole_answer():
    call = ToolCall(id="c1", name="add", arguments={"a": 2, "b": 3})
    answer = ModelResponse(content="Adding.", tool_calls=(call,), stop_reason="tool_use")
    model = ScriptedModel([answer])

    deltas, response = split(list(model.stream([user("2 + 3?")], system="Add.", tools=[])))

    assert deltas == [
        TextDelta(text="Adding."),
        ToolCallDelta(index=0, id="c1", name="add", arguments='{"a": 2, "b": 3}'),
    ]
    assert response == answer
    assert model.systems == ["Add."]


def test_the_tool_call_deltas_of_a_reply_assemble_into_its_calls():
    fragments = ToolCallFragments()
    for delta in [
        ToolCallDelta(index=1, id="b", name="two", arguments='{"x"'),
        ToolCallDelta(index=0, id="a", name="one"),
        ToolCallDelta(index=1, arguments=": 1}"),
        ToolCallDelta(index=0, id="a", name="one", arguments="{}"),  # a server that repeats
    ]:
        fragments.add(delta)

    assert fragments.calls() == [("a", "one", "{}"), ("b", "two", '{"x": 1}')]
    assert [json.loads(raw) for _, _, raw in fragments.calls()] == [{}, {"x": 1}]


# -- retries and failures ---------------------------------------------------------------


def test_a_failure_before_the_first_delta_is_retried_as_invoke_retries():
    model = ScriptedModel([ModelError("busy", retryable=True), "Made it."], max_retries=1)

    deltas, response = split(list(model.stream([user("Hi")])))

    assert text_of(deltas) == response.content == "Made it."
    assert len(model.calls) == 2


def test_an_empty_reply_is_retried_before_anything_is_streamed():
    model = ScriptedModel([ModelResponse(content="  "), "Now with text."], max_retries=1)

    deltas, response = split(list(model.stream([user("Hi")])))

    assert deltas == [TextDelta(text="Now with text.")]
    assert len(model.calls) == 2


def test_an_empty_reply_fails_as_invoke_does_when_retries_run_out():
    with pytest.raises(ModelError, match="neither text nor tool calls") as raised:
        list(ScriptedModel([ModelResponse(content="")]).stream([user("Hi")]))

    assert not isinstance(raised.value, StreamInterruptedError)


def test_a_failure_after_deltas_is_reported_as_such_and_not_retried():
    cause = ModelError("connection lost", retryable=True)
    model = Streaming(
        [TextDelta(text="Hel"), TextDelta(text="lo"), cause],
        [TextDelta(text="never"), ModelResponse(content="never")],
    )
    received = []

    with pytest.raises(StreamInterruptedError) as raised:
        for item in model.stream([user("Hi")]):
            received.append(item)

    error = raised.value
    assert isinstance(error, ModelError)
    assert received == [TextDelta(text="Hel"), TextDelta(text="lo")]
    assert error.after_deltas == 2
    assert error.retryable is True  # the provider's verdict; the caller decides
    assert error.__cause__ is cause
    assert "after 2 deltas" in str(error) and "connection lost" in str(error)
    assert model.calls == 1


def test_a_stream_that_ends_without_a_response_is_a_retryable_failure():
    model = Streaming([], [TextDelta(text="ok"), ModelResponse(content="ok")], max_retries=1)

    assert text_of(list(model.stream([user("Hi")]))) == "ok"
    assert model.calls == 2


def test_closing_the_stream_early_closes_the_providers_stream():
    model = Streaming([TextDelta(text="a"), TextDelta(text="b"), ModelResponse(content="ab")])
    stream = model.stream([user("Hi")])

    assert next(stream) == TextDelta(text="a")
    stream.close()

    assert model.closed == 1


# -- observers ----------------------------------------------------------------------------


def test_observers_see_each_successful_streamed_call_once(monkeypatch):
    monkeypatch.setattr(base, "_observers", [])
    seen = []
    base.observe_model_calls(lambda model, response, latency: seen.append((model, response)))
    model = ScriptedModel([ModelError("busy", retryable=True), "One."], max_retries=1)
    broken = Streaming([TextDelta(text="a"), ModelError("cut", retryable=True)])

    *_, response = model.stream([user("Hi")])
    with pytest.raises(StreamInterruptedError):
        list(broken.stream([user("Hi")]))

    assert seen == [(model, response)]


def test_stream_takes_the_same_arguments_as_invoke():
    model = ScriptedModel(["a"])
    spec = ToolSpec(name="t", description="d", parameters={"type": "object"})

    list(model.stream([user("Hi")], system="S", tools=[spec]))

    assert (model.systems, model.tools) == (["S"], [[spec]])
