"""vLLM offline batch backend (GPU boxes; ``pip install agentinstruct[vllm]``).

Concurrent ``chat`` calls are collected for ``batch_wait_ms`` and run as one ``LLM.chat`` batch
in a worker thread (vLLM schedules the batch itself; prefix caching lets the many requests that
share a flow's system prompt reuse its KV cache). Every request ends, one way or the other:

* ``LLM.chat`` raising fails every request of that batch with :class:`LLMError`, and the loop
  goes on serving later requests;
* the batching loop dying (or vLLM reporting its engine dead) fails every pending request, and
  every later one at once, instead of leaving them waiting forever.

JSON schemas go to vLLM's structured outputs (grammar-constrained decoding); a ``FOLDER+ADAPTER``
model runs the base weights with the LoRA adapter attached to every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from agentinstruct.embedded import resolve_model_path
from agentinstruct.llm.adapters import lora_rank
from agentinstruct.llm.base import (
    ChatModel,
    Completion,
    LLMError,
    Messages,
    ModelSpec,
    Usage,
    request_key,
    schema_of,
)
from agentinstruct.llm.dtypes import resolve_device, resolve_dtype

ADAPTER_NAME = "adapter"  # the LoRARequest name; one adapter per engine, id 1
ADAPTER_ID = 1


def structured_outputs_kwargs(response_format: dict[str, Any] | None) -> dict[str, Any]:
    """The ``SamplingParams`` keyword asking for JSON (empty when none is asked for).

    The one place vLLM's versions differ: newer releases take
    ``structured_outputs=StructuredOutputsParams(...)``, older ones (0.8 to 0.10)
    ``guided_decoding=GuidedDecodingParams(...)``; whichever this vLLM has is used.
    """
    schema = schema_of(response_format)
    if schema is not None:
        spec: dict[str, Any] = {"json": schema}
    elif response_format and response_format.get("type") == "json_object":
        spec = {"json_object": True}
    else:
        return {}
    from vllm import sampling_params

    if hasattr(sampling_params, "StructuredOutputsParams"):
        return {"structured_outputs": sampling_params.StructuredOutputsParams(**spec)}
    if hasattr(sampling_params, "GuidedDecodingParams"):
        return {"guided_decoding": sampling_params.GuidedDecodingParams(**spec)}
    raise LLMError("vllm: this version has neither StructuredOutputsParams nor "
                   "GuidedDecodingParams; install vllm>=0.8")


def engine_dead_error() -> type[BaseException] | None:
    """vLLM's "the engine process died" exception, where this version has one: after it every
    later call would fail too, so the backend stops taking requests."""
    try:
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError:
        return None
    return EngineDeadError


def engine_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """Arguments of ``vllm.LLM``; the adapter folder is checked here, before weights load."""
    kwargs: dict[str, Any] = {
        "model": resolve_model_path(spec.model),
        "dtype": resolve_dtype(spec.dtype, resolve_device(spec.device)),
        "enable_prefix_caching": spec.prefix_caching,
    }
    if spec.adapter:
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank(spec.adapter))
    return kwargs


@dataclass
class _Request:
    messages: Messages
    params: Any  # vllm.SamplingParams
    future: asyncio.Future = field(repr=False)


class VLLMChatModel(ChatModel):
    """Collects concurrent requests and runs them through ``LLM.chat`` in one offline batch."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise LLMError("backend 'vllm' needs: pip install 'agentinstruct[vllm]'") from None
        self.spec = spec
        self.name = spec.display_name()
        kwargs = engine_kwargs(spec)
        self.lora_request = (LoRARequest(ADAPTER_NAME, ADAPTER_ID, spec.adapter)
                             if spec.adapter else None)
        self.llm = LLM(**kwargs)
        self._engine_dead = engine_dead_error()
        self._pending: list[_Request] = []
        self._inflight: list[_Request] = []
        self._worker: asyncio.Task | None = None
        self._dead: str | None = None  # why the backend stopped taking requests
        self._chat_lock = threading.Lock()  # one LLM.chat at a time, whatever loop asks

    async def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0,
                   response_format: dict[str, Any] | None = None, seed: int | None = None,
                   tools: list[dict[str, Any]] | None = None, tool_choice: str | None = None) -> Completion:
        from vllm import SamplingParams

        if tools is not None or tool_choice is not None:  # chat_with_tools uses the JSON fallback
            raise ValueError(f"model {self.name!r} (vllm backend) has no native tool calling; "
                             "use agentinstruct.llm.tools.chat_with_tools")
        if self._dead is not None:
            self.stats.failures += 1
            raise LLMError(self._dead)
        if seed is None:  # the same request gets the same sample, alone or in any batch
            key = request_key(self.name, messages, max_tokens=max_tokens, temperature=temperature,
                              response_format=response_format)
            seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed,
                                **structured_outputs_kwargs(response_format))
        loop = asyncio.get_running_loop()
        request = _Request(messages, params, loop.create_future())
        self.stats.calls += 1
        self._pending.append(request)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
            self._worker.add_done_callback(self._worker_ended)
        return await request.future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(self.spec.batch_wait_ms / 1000.0)
            batch, self._pending = self._pending, []
            self._inflight = batch  # failed by _worker_ended if this task dies mid-batch
            try:
                outputs = await asyncio.to_thread(self._generate, batch)
            except Exception as exc:  # noqa: BLE001 - every waiter of the batch must hear about it
                self._fail(batch, f"vllm {self.name!r}: generation failed: {type(exc).__name__}: {exc}")
                if self._engine_dead is not None and isinstance(exc, self._engine_dead):
                    self._dead = f"vllm {self.name!r}: the engine died ({exc}); restart the run"
                    self._fail(self._pending, self._dead)
                    self._pending = []
            else:
                self._deliver(batch, outputs)
            self._inflight = []

    def _generate(self, batch: list[_Request]) -> list[Any]:
        with self._chat_lock:
            return self.llm.chat([r.messages for r in batch], sampling_params=[r.params for r in batch],
                                 use_tqdm=False, lora_request=self.lora_request)

    def _deliver(self, batch: list[_Request], outputs: list[Any]) -> None:
        if len(outputs) != len(batch):
            self._fail(batch, f"vllm {self.name!r}: LLM.chat returned {len(outputs)} outputs "
                              f"for {len(batch)} requests")
            return
        for r, out in zip(batch, outputs):
            try:
                o = out.outputs[0]
                usage = Usage(len(out.prompt_token_ids or []), len(o.token_ids))
                completion = Completion(o.text, o.finish_reason or "stop", usage, self.name)
            except Exception as exc:  # noqa: BLE001 - a malformed output fails its request only
                self._fail([r], f"vllm {self.name!r}: unreadable output: {type(exc).__name__}: {exc}")
                continue
            self.stats.add_usage(usage)
            if not r.future.done():
                r.future.set_result(completion)

    def _fail(self, requests: list[_Request], message: str) -> None:
        for r in requests:
            if r.future.done():
                continue
            self.stats.failures += 1
            try:
                r.future.set_exception(LLMError(message))
            except RuntimeError:  # its event loop is already closed: nobody is waiting
                pass

    def _worker_ended(self, task: asyncio.Task) -> None:
        """The batching loop stopped: if not by finishing its queue, nothing it held may hang."""
        if task.cancelled():
            message = f"vllm {self.name!r}: request abandoned (the batching loop was cancelled)"
        elif task.exception() is not None:
            exc = task.exception()
            self._dead = message = (f"vllm {self.name!r}: the batching loop died "
                                    f"({type(exc).__name__}: {exc}); restart the run")
        else:
            return
        stranded, self._inflight, self._pending = [*self._inflight, *self._pending], [], []
        self._fail(stranded, message)
