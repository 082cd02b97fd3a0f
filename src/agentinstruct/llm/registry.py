"""Backends by name, so a recipe picks one with ``backend: <name>``."""

from __future__ import annotations

from collections.abc import Callable

from agentinstruct.llm.base import ChatModel, LLMError, ModelSpec

BackendFactory = Callable[[ModelSpec], ChatModel]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def deco(factory: BackendFactory) -> BackendFactory:
        _BACKENDS[name] = factory
        return factory

    return deco


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def create_model(spec: ModelSpec) -> ChatModel:
    try:
        factory = _BACKENDS[spec.backend]
    except KeyError:
        raise LLMError(
            f"unknown backend {spec.backend!r}; available: {', '.join(available_backends())}"
        ) from None
    return factory(spec)


@register_backend("openai")
def _openai(spec: ModelSpec) -> ChatModel:
    from agentinstruct.llm.openai_backend import OpenAIChatModel

    return OpenAIChatModel(spec)


@register_backend("transformers")
def _transformers(spec: ModelSpec) -> ChatModel:
    from agentinstruct.llm.transformers_backend import TransformersChatModel

    return TransformersChatModel(spec)


@register_backend("vllm")
def _vllm(spec: ModelSpec) -> ChatModel:
    from agentinstruct.llm.vllm_backend import VLLMChatModel

    return VLLMChatModel(spec)
