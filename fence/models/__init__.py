"""Chat models: a small contract (``fence.models.base``) and its providers."""

from fence.models.base import Model, ModelResponse, ToolSpec, Usage
from fence.models.local import EchoModel, ScriptedModel

__all__ = ["EchoModel", "Model", "ModelResponse", "ScriptedModel", "ToolSpec", "Usage"]
