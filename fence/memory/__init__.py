"""Memory backends that share one contract (see ``fence.memory.base``), and the
long-term memory option an Agent can recall from (``fence.memory.long_term``).

The AWS backends are imported on first use, so code that only needs
FleetingMemory or SQLiteMemory does not pay for importing boto3.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from fence.memory.base import BaseMemory, Window
from fence.memory.fleeting import FleetingMemory
from fence.memory.long_term import LongTermMemory, LongTermRecall, MemoryRecord
from fence.memory.sqlite import SQLiteMemory

if TYPE_CHECKING:
    from fence.memory.agentcore import AgentCoreMemory
    from fence.memory.dynamodb import DynamoDBMemory

_LAZY = {
    "AgentCoreMemory": "fence.memory.agentcore",
    "DynamoDBMemory": "fence.memory.dynamodb",
}

__all__ = [
    "AgentCoreMemory",
    "BaseMemory",
    "DynamoDBMemory",
    "FleetingMemory",
    "LongTermMemory",
    "LongTermRecall",
    "MemoryRecord",
    "SQLiteMemory",
    "Window",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fence.memory' has no attribute {name!r}")
