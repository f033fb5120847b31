"""Memory backends that share one contract (see ``fence.memory.base``)."""

from fence.memory.base import BaseMemory, Window
from fence.memory.fleeting import FleetingMemory
from fence.memory.sqlite import SQLiteMemory

__all__ = ["BaseMemory", "FleetingMemory", "SQLiteMemory", "Window"]
