"""Agent: a model, a memory, tools, and the loop that runs one turn."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fence.agents.events import (
    AgentEvent,
    StepEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
)
from fence.agents.journal import (
    ApprovalRequired,
    Decision,
    Journal,
    Replay,
    ToolResult,
    reply_entry,
    result_entry,
)
from fence.agents.window import history_from_window
from fence.errors import FenceError
from fence.memory.base import BaseMemory
from fence.memory.fleeting import FleetingMemory
from fence.memory.long_term import LongTermRecall, MemoryRecord, with_recalled
from fence.messages import Message, Role, ToolCall
from fence.models.base import Model, ModelResponse, ToolSpec
from fence.models.streaming import TextDelta
from fence.tools import Tool, ToolContext, as_tool
from fence.validation import clip

log = logging.getLogger(__name__)

SUMMARY_PROMPT = (
    "Summarize the conversation so far in a few sentences. Keep names, numbers, "
    "decisions and open questions."
)


class MaxIterationsError(FenceError):
    """The model kept calling tools past ``max_iterations``; nothing was committed."""


@dataclass(frozen=True)
class PreparedTurn:
    """A turn's messages before commit; ``last_seq`` is the history it was based on.

    ``recalled`` are the long-term records the model was given (not stored)."""

    messages: list[Message]
    answer: str
    last_seq: int
    recalled: tuple[MemoryRecord, ...] = ()


@dataclass(frozen=True)
class TurnResult:
    """What one turn produced. ``committed`` is False when the turn id was already stored."""

    turn_id: str
    answer: str
    messages: list[Message]
    committed: bool
    recalled: tuple[MemoryRecord, ...] = ()


class Agent:
    """Runs turns: load a token window, call the model and tools, commit the turn.

    ``role`` is the system prompt; without one, the memory's system prompt is
    used. ``max_memory_size`` bounds the tokens of stored history sent per
    model call (the system prompt and the current turn are always sent); it
    limits what is sent, not what is stored. ``prefill`` is an assistant
    message that opens a conversation: it is committed with the first turn of
    a session whose history is empty (so again after ``memory.clear()``, which
    starts a new conversation), never after every run. ``long_term`` recalls
    long-term records for each prompt and sends them with the system prompt
    (``fence.memory.long_term``); they are not stored.

    A turn writes nothing unless it finishes: a model error, an empty answer,
    ``MaxIterationsError`` or a raising ``checkpoint`` leave memory untouched.
    Tool failures do not end the turn; their error text goes back to the model.
    """

    def __init__(
        self,
        identifier: str,
        model: Model,
        memory: BaseMemory | None = None,
        role: str | None = None,
        description: str | None = None,
        tools: Sequence[Callable[..., Any] | Tool] = (),
        max_memory_size: int | None = None,
        prefill: str | None = None,
        max_iterations: int = 10,
        long_term: LongTermRecall | None = None,
    ) -> None:
        _require_text("identifier", identifier)
        if not isinstance(model, Model):
            raise ValueError(f"model: must be a fence Model (got {type(model).__name__})")
        if role is not None:
            _require_text("role", role)
        if description is not None and not isinstance(description, str):
            raise ValueError(
                f"description: must be a string or None (got {clip(repr(description), 40)})"
            )
        if max_memory_size is not None and not _is_positive_int(max_memory_size):
            raise ValueError(
                f"max_memory_size: must be a positive token count or None (got {max_memory_size!r})"
            )
        if not _is_positive_int(max_iterations):
            raise ValueError(f"max_iterations: must be an integer >= 1 (got {max_iterations!r})")
        if prefill is not None:
            _require_text("prefill", prefill)
        if long_term is not None and not isinstance(long_term, LongTermRecall):
            raise ValueError(
                "long_term: must be a LongTermRecall, e.g. LongTermRecall(agentcore_memory) "
                f"(got {type(long_term).__name__})"
            )
        self.identifier = identifier
        self.model = model
        self.memory = memory if memory is not None else FleetingMemory()
        self.role = role
        self.description = description
        self.tools = _tools_by_name(tools)
        self.max_memory_size = max_memory_size
        self.prefill = (
            Message(
                role=Role.ASSISTANT, content=prefill, meta={"agent": identifier, "prefill": True}
            )
            if prefill is not None
            else None
        )
        self.max_iterations = max_iterations
        self.long_term = long_term

    @property
    def memory(self) -> BaseMemory:
        """The session this agent reads and writes; assign another to switch sessions."""
        return self._memory

    @memory.setter
    def memory(self, memory: BaseMemory) -> None:
        if not isinstance(memory, BaseMemory):
            raise ValueError(f"memory: must be a fence memory (got {type(memory).__name__})")
        self._memory = memory

    def run(self, prompt: str) -> str:
        """Run one turn and return the model's final answer."""
        return self.run_turn(prompt).answer

    def run_turn(
        self,
        prompt: str,
        *,
        turn_id: str | None = None,
        fenced: bool = False,
        checkpoint: Callable[[], None] | None = None,
        journal: Journal | None = None,
    ) -> TurnResult:
        """Run one turn and commit its messages atomically under ``turn_id``.

        ``checkpoint`` is called before every model and tool step and before
        the commit; raising from it abandons the turn with nothing written.
        With ``fenced`` the commit succeeds only if the history did not move
        since the window was read (``StaleWriteError`` otherwise). With a
        ``journal``, running the same turn (same ``turn_id``) again after a crash
        or an ``ApprovalRequired`` repeats none of the steps it recorded.
        """
        turn_id = turn_id or uuid.uuid4().hex
        prepared = self.prepare_turn(
            prompt, checkpoint=checkpoint, journal=journal, turn_id=turn_id
        )
        if checkpoint:
            checkpoint()
        return self._commit(turn_id, prepared, fenced=fenced)

    def stream(
        self, prompt: str, *, turn_id: str | None = None, journal: Journal | None = None
    ) -> Iterator[AgentEvent]:
        """Run one turn as ``run_turn`` does, yielding what happens as it happens: the
        model's text as it is generated, each tool call and result, and, once the turn
        is committed, a ``TurnEvent`` with the ``TurnResult``. Nothing is written
        unless the turn finishes; stopping early writes nothing. A ``journal`` works as
        in ``run_turn`` (its steps are yielded again, not run again)."""
        turn_id = turn_id or uuid.uuid4().hex
        context = ToolContext("", turn_id, self.memory.session_id, 1)
        prepared = yield from self._steps(
            prompt, lambda: None, streamed=True, context=context, journal=journal
        )
        yield TurnEvent(self._commit(turn_id, prepared, fenced=False))

    def _commit(self, turn_id: str, prepared: PreparedTurn, *, fenced: bool) -> TurnResult:
        committed = self.memory.commit_turn(
            turn_id, prepared.messages, expected_last_seq=prepared.last_seq if fenced else None
        )
        log.info(
            "turn finished",
            extra={
                "agent": self.identifier,
                "session_id": self.memory.session_id,
                "turn_id": turn_id,
                "committed": committed,
                "messages": len(prepared.messages),
            },
        )
        return TurnResult(turn_id, prepared.answer, prepared.messages, committed, prepared.recalled)

    def prepare_turn(
        self,
        prompt: str,
        *,
        checkpoint: Callable[[], None] | None = None,
        on_event: Callable[[StepEvent], None] | None = None,
        journal: Journal | None = None,
        turn_id: str | None = None,
        attempt: int = 1,
    ) -> PreparedTurn:
        """Run the model and tool loop for one turn without writing to memory.

        The runtime uses this to save the answer before committing, so a
        redelivered turn whose commit already happened need not call the
        model again. With ``on_event``, the model streams and each step's events
        are handed to it as they happen. With a ``journal``, steps it holds are
        replayed (their events handed on again) instead of run, and each new step
        is recorded in it as soon as it finishes (``fence.agents.journal``); a tool
        that needs approval without a decision there raises ``ApprovalRequired``.
        Tools taking a ``ToolContext`` get keys made from ``turn_id``, stable across
        runs of the same turn, and ``attempt``.
        """
        context = ToolContext("", turn_id or uuid.uuid4().hex, self.memory.session_id, attempt)
        steps = self._steps(
            prompt,
            checkpoint or (lambda: None),
            streamed=on_event is not None,
            journal=journal,
            context=context,
        )
        while True:
            try:
                event = next(steps)
            except StopIteration as done:
                return done.value
            if on_event is not None:
                on_event(event)

    def _steps(
        self,
        prompt: str,
        check: Callable[[], None],
        *,
        streamed: bool,
        context: ToolContext,
        journal: Journal | None = None,
    ) -> Generator[StepEvent, None, PreparedTurn]:
        """The model and tool loop: yields what happens, returns the prepared turn."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt: must be a non-empty string (got {clip(repr(prompt), 40)})")
        user_message = Message(role=Role.USER, content=prompt)
        window = self.memory.get_window(self.max_memory_size)
        history = history_from_window(window)
        turn: list[Message] = []
        # An empty window that was not truncated is an empty conversation.
        if self.prefill and not window.messages and not window.truncated:
            turn.append(self.prefill)
        turn.append(user_message)
        recalled = self._recall(prompt)
        system = with_recalled(self.role or window.system, recalled)
        specs = [tool.spec for tool in self.tools.values()]
        done = Replay(journal.entries()) if journal is not None else Replay()
        for step in range(1, self.max_iterations + 1):
            check()
            response = done.replies.get(step)
            if response is not None:  # journaled: not asked again; its text is told again
                if streamed and response.content:
                    yield TextEvent(response.content, step)
            else:
                if streamed:
                    response = yield from self._streamed_reply(history + turn, system, specs, step)
                else:
                    response = self.model.invoke(history + turn, system=system, tools=specs)
                if journal is not None:
                    journal.record(reply_entry(step, response))
            calls = [
                _as_decided(call, done.decisions.get((step, index)))
                for index, call in enumerate(response.tool_calls)
            ]
            turn.append(
                Message(
                    role=Role.ASSISTANT,
                    content=response.content,
                    tool_calls=calls,
                    meta={"agent": self.identifier, "model": self.model.model_id},
                )
            )
            if not calls:
                return PreparedTurn(turn, response.content, window.last_seq, recalled)
            if step == self.max_iterations:
                break  # no model call left to read the results: don't run the tools
            for index, call in enumerate(calls):
                check()
                yield ToolCallEvent(call.id, call.name, call.arguments, step)
                result = done.results.get((step, index))
                if result is None:
                    decision = done.decisions.get((step, index))
                    key = f"{context.run_id}:{step}:{index}"
                    result = self._run_tool(
                        step, index, call, decision, replace(context, idempotency_key=key)
                    )
                    if journal is not None:
                        journal.record(result_entry(step, index, result.content, result.failed))
                yield ToolResultEvent(call.id, call.name, result.content, result.failed, step)
                turn.append(
                    Message(
                        role=Role.TOOL, content=result.content, tool_call_id=call.id, name=call.name
                    )
                )
        raise MaxIterationsError(
            f"agent {self.identifier!r}: still calling tools after "
            f"max_iterations={self.max_iterations}; the turn was not committed"
        )

    def _recall(self, prompt: str) -> tuple[MemoryRecord, ...]:
        if self.long_term is None:
            return ()
        return tuple(self.long_term.recall(prompt, session_id=self.memory.session_id))

    def _streamed_reply(
        self, messages: list[Message], system: str | None, specs: list[ToolSpec], step: int
    ) -> Generator[TextEvent, None, ModelResponse]:
        """One model call, streamed: its text as it comes, then the whole reply."""
        for item in self.model.stream(messages, system=system, tools=specs):
            if isinstance(item, ModelResponse):
                return item
            if isinstance(item, TextDelta) and item.text:
                yield TextEvent(item.text, step)
        raise AssertionError("Model.stream ended without a response")

    def _run_tool(
        self,
        step: int,
        index: int,
        call: ToolCall,
        decision: Decision | None,
        context: ToolContext,
    ) -> ToolResult:
        """Call ``index`` of ``step`` run (or denied), as the model reads its result."""
        tool = self.tools.get(call.name)
        if tool is None:
            text = f"error: no tool named {call.name!r}; available: {sorted(self.tools)}"
            return ToolResult(text, failed=True)
        if tool.requires_approval:
            if decision is None:
                raise ApprovalRequired(step, index, call, tool.spec.parameters)
            if not decision.approved:
                return ToolResult(f"denied: {decision.reason or 'no reason given'}", failed=True)
        outcome = tool.run(call.arguments, context)
        return ToolResult(outcome.text or "(empty result)", outcome.failed)

    def summarize_memory(self) -> str:
        """Replace the history with a model-written summary note; keep the system prompt.

        The seed's "monitor memory size" pattern as a method: the summary is
        left as a system note, so the session's original system prompt stays.
        If the model fails (an empty reply is a failure), the history is kept.
        """
        window = self.memory.get_window()
        if not window.messages:
            return ""
        request = Message(role=Role.USER, content=SUMMARY_PROMPT)
        response = self.model.invoke(window.messages + [request], system=self.role or window.system)
        summary = response.content.strip()  # never empty: Model.invoke refuses that
        self.memory.clear()
        self.memory.add_message(Role.SYSTEM, f"Previous conversation summarized: {summary}")
        return summary

    def __repr__(self) -> str:
        return (
            f"Agent(identifier={self.identifier!r}, model={self.model!r}, memory={self.memory!r})"
        )


def _require_text(field: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}: must be a non-empty string (got {clip(repr(value), 40)})")


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _tools_by_name(tools: Sequence[Callable[..., Any] | Tool]) -> dict[str, Tool]:
    if not isinstance(tools, Sequence) or isinstance(tools, str):
        raise ValueError(
            f"tools: must be a list of functions or Tools (got {type(tools).__name__})"
        )
    by_name: dict[str, Tool] = {}
    for index, item in enumerate(tools):
        if not isinstance(item, Tool) and not callable(item):
            raise ValueError(
                f"tools[{index}]: must be a function or Tool (got {clip(repr(item), 40)})"
            )
        try:
            tool = as_tool(item)
        except ValueError as error:
            raise ValueError(f"tools[{index}]: {error}") from None
        if tool.name in by_name:
            raise ValueError(f"tools[{index}]: another tool is already named {tool.name!r}")
        by_name[tool.name] = tool
    return by_name


def _as_decided(call: ToolCall, decision: Decision | None) -> ToolCall:
    """The call as it runs: with the arguments a person approved it with, if edited."""
    if decision is None or decision.arguments is None:
        return call
    return call.model_copy(update={"arguments": decision.arguments})
