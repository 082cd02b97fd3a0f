"""The LLM layer: one async chat interface, backends by name, structured output."""

from agentinstruct.llm.base import (
    ChatModel,
    Completion,
    LLMError,
    LLMStats,
    Messages,
    ModelSpec,
    Usage,
    conversation,
    json_schema_format,
)
from agentinstruct.llm.registry import available_backends, create_model, register_backend
from agentinstruct.llm.structured import StructuredResult, chat_structured, extract_json

__all__ = [
    "ChatModel", "Completion", "LLMError", "LLMStats", "Messages", "ModelSpec", "Usage",
    "conversation", "json_schema_format", "available_backends", "create_model", "register_backend",
    "StructuredResult", "chat_structured", "extract_json",
]
