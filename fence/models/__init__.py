"""Chat models: a small contract (``fence.models.base``), its streamed form
(``fence.models.streaming``) and its providers.

The provider classes load on first access, so ``import fence.models`` needs
neither the optional ``openai`` package nor boto3's import time.
"""

from __future__ import annotations

import importlib
from typing import Any

from fence.models.base import Model, ModelResponse, StreamItem, ToolSpec, Usage
from fence.models.local import EchoModel, ScriptedModel
from fence.models.streaming import StreamInterruptedError, TextDelta, ToolCallDelta

_PROVIDERS = {
    "OpenAIChat": "fence.models.openai",
    "GPT4o": "fence.models.openai",
    "GPT4omini": "fence.models.openai",
    "BedrockConverse": "fence.models.bedrock",
    "Claude35Sonnet": "fence.models.bedrock",
}

__all__ = [
    "EchoModel",
    "Model",
    "ModelResponse",
    "ScriptedModel",
    "StreamInterruptedError",
    "StreamItem",
    "TextDelta",
    "ToolCallDelta",
    "ToolSpec",
    "Usage",
    *_PROVIDERS,
]


def __getattr__(name: str) -> Any:
    """Import a provider class when it is first asked for (PEP 562)."""
    if name in _PROVIDERS:
        return getattr(importlib.import_module(_PROVIDERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
