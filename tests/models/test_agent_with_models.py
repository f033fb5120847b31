"""End to end: an Agent runs a full tool loop on each real model client (stubbed wire)."""

from __future__ import annotations

import json

from fence.agents import Agent
from fence.memory import FleetingMemory
from fence.messages import Role, ToolCall
from fence.models.bedrock import CONVERSATION_START, Claude35Sonnet
from fence.models.openai import GPT4omini
from fence.tools import Tool
from tests.models.conftest import OpenAIServer, completion, converse_reply, expect_converse


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


ADD_SCHEMA = Tool(add).spec.parameters


def stored(memory: FleetingMemory) -> list[tuple]:
    return [(m.role, m.content, m.tool_calls, m.tool_call_id) for m in memory.get_messages()]


def test_openai_agent_runs_a_tool_loop_and_stores_the_whole_turn(openai_server: OpenAIServer):
    openai_server.queue(
        completion(
            None, tool_calls=[("call_1", "add", '{"a": 2, "b": 3}')], finish_reason="tool_calls"
        ),
        completion("2 + 3 = 5."),
    )
    memory = FleetingMemory()
    agent = Agent(
        identifier="calculator",
        model=GPT4omini(
            source="app", api_key="sk-test", backoff_s=0, http_client=openai_server.http_client()
        ),
        memory=memory,
        role="You add numbers with the add tool.",
        tools=[add],
    )

    answer = agent.run("What is 2 + 3?")

    assert answer == "2 + 3 = 5."
    call = ToolCall(id="call_1", name="add", arguments={"a": 2, "b": 3})
    assert stored(memory) == [
        (Role.USER, "What is 2 + 3?", (), None),
        (Role.ASSISTANT, "", (call,), None),
        (Role.TOOL, "5", (), "call_1"),
        (Role.ASSISTANT, "2 + 3 = 5.", (), None),
    ]
    first, second = openai_server.bodies
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two integers.",
                "parameters": ADD_SCHEMA,
            },
        }
    ]
    assert second["messages"] == [
        {"role": "system", "content": "You add numbers with the add tool."},
        {"role": "user", "content": "What is 2 + 3?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": json.dumps({"a": 2, "b": 3})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]


def test_bedrock_agent_runs_a_tool_loop_with_prefill_and_stores_the_whole_turn(
    stubber, bedrock_client
):
    tool_config = {
        "tools": [
            {
                "toolSpec": {
                    "name": "add",
                    "description": "Add two integers.",
                    "inputSchema": {"json": ADD_SCHEMA},
                }
            }
        ]
    }
    opening = [
        {"role": "user", "content": [{"text": CONVERSATION_START}]},
        {"role": "assistant", "content": [{"text": "Hi! I add numbers."}]},
        {"role": "user", "content": [{"text": "What is 2 + 3?"}]},
    ]
    tool_use = {"toolUse": {"toolUseId": "tooluse_1", "name": "add", "input": {"a": 2, "b": 3}}}
    expect_converse(
        stubber,
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        converse_reply(tool_use, stop_reason="tool_use"),
        system=[{"text": "You add numbers with the add tool."}],
        messages=opening,
        toolConfig=tool_config,
        requestMetadata={"source": "app"},
    )
    expect_converse(
        stubber,
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        converse_reply({"text": "2 + 3 = 5."}),
        system=[{"text": "You add numbers with the add tool."}],
        messages=[
            *opening,
            {"role": "assistant", "content": [tool_use]},
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "5"}]}}],
            },
        ],
        toolConfig=tool_config,
        requestMetadata={"source": "app"},
    )
    memory = FleetingMemory()
    agent = Agent(
        identifier="calculator",
        model=Claude35Sonnet(region="us-east-1", client=bedrock_client, source="app", backoff_s=0),
        memory=memory,
        role="You add numbers with the add tool.",
        tools=[add],
        prefill="Hi! I add numbers.",
    )

    answer = agent.run("What is 2 + 3?")

    stubber.assert_no_pending_responses()
    assert answer == "2 + 3 = 5."
    call = ToolCall(id="tooluse_1", name="add", arguments={"a": 2, "b": 3})
    assert stored(memory) == [
        (Role.ASSISTANT, "Hi! I add numbers.", (), None),
        (Role.USER, "What is 2 + 3?", (), None),
        (Role.ASSISTANT, "", (call,), None),
        (Role.TOOL, "5", (), "tooluse_1"),
        (Role.ASSISTANT, "2 + 3 = 5.", (), None),
    ]
