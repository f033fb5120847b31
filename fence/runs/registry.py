"""Agent registries: a mapping of agent name to a factory that builds the agent
for one session's memory. ``FENCE_AGENTS=package.module:attribute`` names it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from fence.agents import Agent
from fence.memory.base import BaseMemory

AgentFactory = Callable[[BaseMemory], Agent]
Registry = Mapping[str, AgentFactory]


def load_registry(spec: str) -> Registry:
    """Import ``module:attribute`` and check it is a mapping of callables."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"FENCE_AGENTS: write module:attribute (got {spec!r})")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"FENCE_AGENTS: cannot import {module_name!r}: {error}") from error
    registry = getattr(module, attribute, None)
    if not isinstance(registry, Mapping) or not registry:
        raise ValueError(f"FENCE_AGENTS: {spec!r} is not a non-empty mapping of name -> factory")
    for name, factory in registry.items():
        if not callable(factory):
            raise ValueError(f"FENCE_AGENTS: factory for agent {name!r} is not callable")
    return registry
