"""An example agent registry of your own: ``FENCE_AGENTS=my_agents:registry``.

``docker-compose.agents.yml`` mounts this directory into the worker and gateway
containers and puts it on ``PYTHONPATH``; a derived image copies it in instead
(ops/README.md, "Your own agents"). A registry maps an agent name to a
``factory(memory) -> Agent``: workers build an agent with it for each turn, the
gateway and the CLI read only its names. For a real model, swap ``EchoModel`` for
``fence.models.openai.GPT4omini(source="concierge")`` (the image has the ``openai``
extra; give the worker containers ``OPENAI_API_KEY``).
"""

from __future__ import annotations

from fence.agents import Agent
from fence.memory.base import BaseMemory
from fence.models.local import EchoModel

GREETING = "Welcome to the Grand Hotel. How may I help?"


def concierge(memory: BaseMemory) -> Agent:
    return Agent(
        identifier="concierge",
        model=EchoModel(source="concierge"),
        memory=memory,
        role="You are the concierge of the Grand Hotel. Be warm and brief.",
        prefill=GREETING,  # opens each new conversation
    )


registry = {"concierge": concierge}
