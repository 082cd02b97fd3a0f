"""The one LLM interface every stage talks to."""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from agentinstruct.embedded import DEFAULT_EMBEDDED
from agentinstruct.recipes import StrictModel

if TYPE_CHECKING:
    from agentinstruct.records import ToolCall

# OpenAI-format chat turns: role and content, plus tool_calls / tool_call_id / name on tool turns
Messages = list[dict[str, Any]]


class LLMError(RuntimeError):
    """A call failed for good (after the retry budget, or not retryable).

    ``permanent``: the request itself was refused (HTTP 400: e.g. a prompt over the context
    window), so sending it again gets the same answer. Other failures (outage, timeouts, 5xx,
    setup errors) are transient: a unit that met one is retried on the next run.
    """

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


_CALL_FAILURES: ContextVar[list[LLMError] | None] = ContextVar("call_failures", default=None)


@contextmanager
def track_call_failures() -> Iterator[list[LLMError]]:
    """Collect the transient call failures of everything awaited inside, including tasks it
    starts (they inherit the context): how a unit of work learns that it is incomplete."""
    sink: list[LLMError] = []
    token = _CALL_FAILURES.set(sink)
    try:
        yield sink
    finally:
        _CALL_FAILURES.reset(token)


def note_call_failure(exc: LLMError) -> None:
    """Record a failed call in the innermost :func:`track_call_failures` scope, if any."""
    sink = _CALL_FAILURES.get()
    if sink is not None and not exc.permanent:
        sink.append(exc)


_CALL_STARTED: ContextVar[Callable[[], None] | None] = ContextVar("call_started", default=None)


@contextmanager
def on_first_call(callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` when the code awaited inside (tasks it starts included) makes its first
    model call: how the engine learns that an admitted seed now shows in the models' demand."""
    fired = False

    def once() -> None:
        nonlocal fired
        if not fired:
            fired = True
            callback()

    token = _CALL_STARTED.set(once)
    try:
        yield
    finally:
        _CALL_STARTED.reset(token)


def note_call_started() -> None:
    """Called by a model wrapper as a call begins (see :func:`on_first_call`)."""
    hook = _CALL_STARTED.get()
    if hook is not None:
        hook()


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
    tool_calls: list[ToolCall] | None = None  # native tool calling: the calls the reply makes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, tool_calls=None))
        if self.tool_calls is not None:
            data["tool_calls"] = [call.model_dump(mode="json") for call in self.tool_calls]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        data = dict(data)
        data["usage"] = Usage(**data.get("usage", {}))
        if data.get("tool_calls") is not None:
            from agentinstruct.records import ToolCall

            data["tool_calls"] = [ToolCall.model_validate(c) for c in data["tool_calls"]]
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
    max_concurrency: int | Literal["auto"] = Field(
        8, description="requests in flight for this model; auto: found at run time (openai "
        "backend: AIMD, growing while replies come back, cut on 429s and timeouts) between "
        "min_concurrency and concurrency_limit"
    )
    min_concurrency: int = Field(1, ge=1, description="max_concurrency auto: the lowest limit")
    concurrency_limit: int = Field(
        1024, ge=1, description="max_concurrency auto: the highest limit (and the size of the "
        "connection pool)"
    )
    initial_concurrency: int = Field(
        8, ge=1, description="max_concurrency auto: the limit it starts from (slow start doubles "
        "it every round trip until the first 429)"
    )
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
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype; auto: bfloat16 on a CUDA GPU (float16 without bf16), "
        "float32 on CPU (llm/dtypes.py), not the checkpoint's dtype"
    )
    adapter: str | None = Field(
        None, description="PEFT (LoRA) adapter folder applied on top of `model` (transformers and "
        "vllm backends; evaluation passes it to lm-eval)"
    )
    prefix_caching: bool = Field(
        True, description="vllm backend: reuse the KV cache of shared prompt prefixes (every "
        "request of a flow repeats the same long system prompt)"
    )
    native_tools: bool = Field(
        True, description="openai backend: send tool steps as OpenAI `tools` (native function "
        "calling); false for servers without tool support, where tool steps use the JSON "
        "tool-request fallback (llm/tools.py) like the local backends"
    )

    @field_validator("model")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model must not be empty")
        return v

    @field_validator("max_concurrency")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"max_concurrency must be at least 1 or 'auto', got {v}")
        return v

    @property
    def adaptive_concurrency(self) -> bool:
        return self.max_concurrency == "auto"

    def concurrency_ceiling(self) -> int:
        """The most requests this model may have in flight: the fixed limit, or auto's top."""
        return self.concurrency_limit if self.max_concurrency == "auto" else int(self.max_concurrency)

    @model_validator(mode="after")
    def _concurrency_order(self) -> ModelSpec:
        if self.max_concurrency == "auto" and not (
                self.min_concurrency <= self.initial_concurrency <= self.concurrency_limit):
            raise ValueError(f"need min_concurrency ({self.min_concurrency}) <= initial_concurrency "
                             f"({self.initial_concurrency}) <= concurrency_limit ({self.concurrency_limit})")
        return self

    @model_validator(mode="after")
    def _backoff_order(self) -> ModelSpec:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s}) must be at least "
                             f"backoff_base_s ({self.backoff_base_s})")
        return self

    @classmethod
    def from_string(cls, name: str, **overrides: Any) -> ModelSpec:
        """Parse the CLI shorthand: ``embedded:KEY``, ``openai:BASE_URL:MODEL``, or a HF id/folder
        (optionally ``FOLDER+ADAPTER``), prefixed ``vllm:`` for the vLLM backend."""
        if name.startswith("openai:"):
            rest = name[len("openai:"):]
            base_url, sep, model = rest.rpartition(":")
            if not sep or not base_url or not model:
                raise ValueError(f"expected openai:BASE_URL:MODEL, got {name!r}")
            return cls(backend="openai", base_url=base_url, model=model, **overrides)
        backend = "transformers"
        if name.startswith("vllm:"):  # vllm:MODEL[+ADAPTER]: the same model on the vLLM backend
            backend, name = "vllm", name[len("vllm:"):]
        if "+" in name:
            base, adapter = name.split("+", 1)
            return cls(backend=backend, model=base, adapter=adapter, **overrides)
        return cls(backend=backend, model=name, **overrides)

    def identity(self) -> dict[str, Any]:
        """The fields that decide what the model replies (not how it is reached): these go into
        recipe hashes, so a new base URL or concurrency limit does not invalidate a run."""
        identity = self.model_dump(mode="json", include={"backend", "model", "adapter", "dtype",
                                                         "structured_output", "extra_body"})
        if not self.native_tools:  # only when off: the hashes of existing recipes stay as they were
            identity["native_tools"] = False
        return identity

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
    # True: ``chat`` takes OpenAI ``tools`` and returns ``Completion.tool_calls`` (native function
    # calling); False: tool steps go through the JSON tool-request fallback of llm/tools.py
    supports_tools: bool = False

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
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
    ) -> Completion:
        """One chat completion. Raises :class:`LLMError` when it fails for good. ``tools``
        (OpenAI function specs) and ``tool_choice`` (``"none"``: answer without calling them)
        only where :attr:`supports_tools`; callers use
        :func:`agentinstruct.llm.tools.chat_with_tools` rather than passing them directly."""

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

    def capacity(self) -> int | None:
        """Requests this model serves at once now (None: it gives no such signal). The engine
        keeps admitting seeds while the demand on a model is below it."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
