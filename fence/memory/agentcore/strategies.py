"""The long-term strategies Fence's set-up creates, and the namespaces they fill.

Every namespace starts with the actor, so one hierarchical search
(``namespacePath`` ``/actors/<actor id>/``) covers an actor's facts,
preferences and the summaries of all its sessions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Strategy:
    """A built-in AgentCore strategy as ``CreateMemory`` takes it."""

    key: str
    """The ``memoryStrategies`` entry's key, e.g. ``semanticMemoryStrategy``."""
    type: str
    """The strategy's ``type`` as ``GetMemory`` reports it."""
    name: str
    namespace: str
    """Namespace template: ``{actorId}`` and ``{sessionId}`` are the event's."""
    description: str

    def request(self) -> dict[str, dict[str, object]]:
        return {
            self.key: {
                "name": self.name,
                "description": self.description,
                "namespaceTemplates": [self.namespace],
            }
        }


STRATEGIES = {
    "semantic": Strategy(
        "semanticMemoryStrategy",
        "SEMANTIC",
        "fence_semantic",
        "/actors/{actorId}/facts/",
        "Facts stated in the conversation",
    ),
    "summary": Strategy(
        "summaryMemoryStrategy",
        "SUMMARIZATION",
        "fence_summary",
        "/actors/{actorId}/sessions/{sessionId}/summary/",
        "A running summary of each session",
    ),
    "user_preference": Strategy(
        "userPreferenceMemoryStrategy",
        "USER_PREFERENCE",
        "fence_user_preference",
        "/actors/{actorId}/preferences/",
        "The user's preferences",
    ),
}
"""The built-in strategies, by the name ``aws_setup --strategies`` takes."""

ACTOR_NAMESPACE_PATH = "/actors/{actorId}/"
"""What ``AgentCoreMemory.search`` searches when given no namespace."""


def expand(template: str, *, actor_id: str, session_id: str) -> str:
    """``template`` with ``{actorId}`` and ``{sessionId}`` filled in."""
    return template.replace("{actorId}", actor_id).replace("{sessionId}", session_id)
