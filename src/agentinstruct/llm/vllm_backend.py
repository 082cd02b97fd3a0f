"""vLLM offline batch backend (GPU boxes; ``pip install agentinstruct[vllm]``)."""

from __future__ import annotations

import asyncio
from typing import Any

from agentinstruct.embedded import resolve_model_path
from agentinstruct.llm.base import ChatModel, Completion, LLMError, Messages, ModelSpec, Usage, schema_of


class VLLMChatModel(ChatModel):
    """Collects concurrent requests and runs them through ``LLM.chat`` in one offline batch."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        try:
            from vllm import LLM
        except ImportError:
            raise LLMError("backend 'vllm' needs: pip install 'agentinstruct[vllm]'") from None
        self.spec = spec
        self.name = spec.model
        self.llm = LLM(model=resolve_model_path(spec.model), dtype=spec.dtype)
        self._pending: list[tuple[Messages, Any, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    async def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0,
                   response_format: dict[str, Any] | None = None, seed: int | None = None) -> Completion:
        from vllm import SamplingParams

        guided = None
        schema = schema_of(response_format)
        if schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            guided = StructuredOutputsParams(json=schema)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed,
                                structured_outputs=guided)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.stats.calls += 1
        self._pending.append((messages, params, fut))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(self.spec.batch_wait_ms / 1000.0)
            batch, self._pending = self._pending, []
            outputs = await asyncio.to_thread(
                self.llm.chat, [m for m, _, _ in batch], [p for _, p, _ in batch], use_tqdm=False
            )
            for (_, _, fut), out in zip(batch, outputs):
                o = out.outputs[0]
                usage = Usage(len(out.prompt_token_ids), len(o.token_ids))
                self.stats.add_usage(usage)
                fut.set_result(Completion(o.text, o.finish_reason or "stop", usage, self.name))
