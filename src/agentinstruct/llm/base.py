"""The one LLM interface every stage talks to."""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

from agentinstruct.embedded import DEFAULT_EMBEDDED
from agentinstruct.recipes import StrictModel

Messages = list[dict[str, str]]


class LLMError(RuntimeError):
    """A call failed for good (after the retry budget, or not retryable)."""


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" | "length" | whatever the server says
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        data = dict(data)
        data["usage"] = Usage(**data.get("usage", {}))
        return cls(**data)


@dataclass
class LLMStats:
    """Counters every backend keeps; summed into run summaries."""

    calls: int = 0
    failures: int = 0
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add_usage(self, usage: Usage) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ModelSpec(StrictModel):
    """How to reach a model; a section of every recipe that calls an LLM."""

    backend: str = Field("transformers", description="registry name: openai | transformers | vllm")
    model: str = Field(DEFAULT_EMBEDDED, description="model id, local folder or embedded:<key>")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL (openai backend)")
    api_key_env: str | None = Field(
        None, description="name of the environment variable holding the API key (never the key)"
    )
    max_concurrency: int = Field(8, ge=1, description="requests in flight for this model")
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema",
        description="how the openai backend asks for JSON (llama.cpp's server wants json_object)",
    )
    extra_body: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(8, ge=1, description="transformers backend: rows per generate()")
    batch_wait_ms: float = Field(20.0, ge=0, description="transformers: wait to fill a batch")
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    adapter: str | None = Field(None, description="PEFT adapter folder (transformers backend)")

    @field_validator("model")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model must not be empty")
        return v

    @classmethod
    def from_string(cls, name: str, **overrides: Any) -> ModelSpec:
        """Parse the CLI shorthand: ``embedded:KEY``, ``openai:BASE_URL:MODEL``, or a HF id/folder
        (optionally ``FOLDER+ADAPTER``)."""
        if name.startswith("openai:"):
            rest = name[len("openai:"):]
            base_url, sep, model = rest.rpartition(":")
            if not sep or not base_url or not model:
                raise ValueError(f"expected openai:BASE_URL:MODEL, got {name!r}")
            return cls(backend="openai", base_url=base_url, model=model, **overrides)
        if "+" in name:
            base, adapter = name.split("+", 1)
            return cls(backend="transformers", model=base, adapter=adapter, **overrides)
        return cls(backend="transformers", model=name, **overrides)

    def identity(self) -> dict[str, Any]:
        """The fields that decide what the model replies (not how it is reached): these go into
        recipe hashes, so a new base URL or concurrency limit does not invalidate a run."""
        return self.model_dump(mode="json", include={"backend", "model", "adapter", "dtype",
                                                     "structured_output", "extra_body"})

    def display_name(self) -> str:
        return self.model + (f"+{self.adapter}" if self.adapter else "")


def conversation(system: str | None, user: str) -> Messages:
    """A chat with an optional system turn and one user turn."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def json_schema_format(schema: dict[str, Any], name: str = "reply") -> dict[str, Any]:
    """An OpenAI ``response_format`` asking for JSON that matches ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format or response_format.get("type") != "json_schema":
        return None
    return response_format["json_schema"]["schema"]


def request_key(model: str, messages: Messages, **params: Any) -> str:
    """Canonical text of one request: the cache key and the default sampling seed."""
    return json.dumps({"model": model, "messages": messages, **params}, sort_keys=True)


class ChatModel(ABC):
    """Async chat interface. Implementations bound their own concurrency and retries."""

    name: str

    def __init__(self) -> None:
        self.stats = LLMStats()

    @abstractmethod
    async def chat(
        self,
        messages: Messages,
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        """One chat completion. Raises :class:`LLMError` when it fails for good."""

    async def chat_batch(
        self, conversations: list[Messages], **params: Any
    ) -> list[Completion | LLMError]:
        """Many completions at once; failures come back in place, not raised."""
        results = await asyncio.gather(
            *(self.chat(c, **params) for c in conversations), return_exceptions=True
        )
        out: list[Completion | LLMError] = []
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, LLMError):
                if isinstance(r, (asyncio.CancelledError, KeyboardInterrupt)):
                    raise r
                r = LLMError(f"{type(r).__name__}: {r}")
            out.append(r)
        return out

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
