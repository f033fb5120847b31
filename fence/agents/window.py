"""Shape a memory window into the history a model may be sent."""

from __future__ import annotations

from fence.memory.base import Window
from fence.messages import Message, Role


def history_from_window(window: Window) -> list[Message]:
    """The window's messages, starting on a user message when older ones were cut.

    Memory windows keep the newest messages that fit. When the cut fell inside
    a turn, the window may open on an assistant reply or a tool result whose
    call was cut off; dropping up to the first user message keeps every tool
    call with its result and gives the model a well-formed conversation. An
    untruncated window is the whole history and is kept as it is.
    """
    messages = window.messages
    if not window.truncated:
        return list(messages)
    for index, message in enumerate(messages):
        if message.role is Role.USER:
            return list(messages[index:])
    return []
