"""Stub of the parts of vLLM's offline API that agentinstruct and lm-eval use (see ../README.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm.sampling_params import SamplingParams

__all__ = ["LLM", "SamplingParams", "TokensPrompt", "CompletionOutput", "RequestOutput"]
__version__ = "0.6.0"


class TokensPrompt(dict):
    pass


@dataclass
class CompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str | None = "stop"


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class LLM:
    """Records its arguments and every ``chat`` call; ``script`` holds what the next calls do:
    an exception instance is raised, a callable is called with the call's arguments and its
    result returned; with the script empty, each request gets ``echo: <last user message>``."""

    instances: list[LLM] = []

    def __init__(self, model: str, **kwargs: Any):
        self.model = model
        self.kwargs = kwargs
        self.calls: list[dict[str, Any]] = []
        self.script: list[Any] = []
        LLM.instances.append(self)

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, **kwargs):
        call = {"messages": messages, "sampling_params": sampling_params, "use_tqdm": use_tqdm,
                "lora_request": lora_request, **kwargs}
        self.calls.append(call)
        if self.script:
            action = self.script.pop(0)
            if isinstance(action, BaseException):
                raise action
            return action(call)
        return [RequestOutput(list(range(len(m[-1]["content"].split()))),
                              [CompletionOutput(f"echo: {m[-1]['content']}", [1, 2, 3])])
                for m in messages]
