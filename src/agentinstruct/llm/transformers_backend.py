"""Local Hugging Face model backend with batched generation in a worker thread.

Requests arriving together are batched (left padding, the model's chat template) and generated
by one ``model.generate`` call off the event loop. JSON schemas are enforced with xgrammar's
grammar-constrained decoding, so even the 135M embedded model returns schema-valid JSON.

Sampling is seeded per request (a seed derived from the request unless one is given), so a
request gets the same reply whether it runs alone or inside any batch; that is what makes an
interrupted run reproduce the records of an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from agentinstruct.embedded import resolve_model_path
from agentinstruct.llm.adapters import adapter_config
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
from agentinstruct.llm.dtypes import resolve_device, resolve_dtype, torch_dtype

log = logging.getLogger(__name__)


class RowSampler:
    """Logits processor giving every row its own temperature, seed and token budget.

    It returns scores that keep only the chosen token, so ``generate`` runs greedy
    (``do_sample=False``) while each row samples with its own generator: a row's choice does
    not depend on the other rows. A row that reaches its budget is forced to end (EOS), which
    lets rows with different ``max_tokens`` share one batch.
    """

    def __init__(self, seeds: list[int], temperatures: list[float], budgets: list[int],
                 prompt_len: int, eos_id: int, top_p: float = 1.0):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperatures = temperatures
        self.budgets = budgets
        self.prompt_len = prompt_len
        self.eos_id = eos_id
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        out = torch.full_like(scores, float("-inf"))
        for row, gen in enumerate(self.generators):
            if step >= self.budgets[row]:
                out[row, self.eos_id] = 0.0
                continue
            t = self.temperatures[row]
            if t <= 0:
                token = int(torch.argmax(scores[row]))
            else:
                p = torch.softmax(scores[row].float() / t, dim=-1)
                if self.top_p < 1.0:
                    sorted_p, idx = torch.sort(p, descending=True)
                    keep = torch.cumsum(sorted_p, 0) - sorted_p < self.top_p
                    p = torch.zeros_like(p).scatter(0, idx[keep], sorted_p[keep])
                token = int(torch.multinomial(p, 1, generator=gen))
            out[row, token] = 0.0
        return out


@dataclass
class _Request:
    messages: Messages
    max_tokens: int
    temperature: float
    schema: dict[str, Any] | None
    seed: int
    future: asyncio.Future = field(repr=False)


class TransformersChatModel(ChatModel):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        self.name = spec.display_name()
        path = resolve_model_path(spec.model)
        device = resolve_device(spec.device)
        dtype = torch_dtype(resolve_dtype(spec.dtype, device))
        if spec.adapter:
            adapter_config(spec.adapter)  # a one-line error before the base weights load
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except OSError as exc:
            raise LLMError(f"cannot load model {spec.model!r}: {exc}") from None
        if spec.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, spec.adapter)
        self.model = model.to(device).eval()
        self.device = device
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._eos_ids = self._eos_token_ids()
        self._pending: list[_Request] = []
        self._worker: asyncio.Task | None = None
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}
        self._gen_lock = threading.Lock()

    def _eos_token_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif isinstance(gen_eos, list):
            ids.update(gen_eos)
        return sorted(i for i in ids if i is not None)

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
        if tools is not None or tool_choice is not None:  # chat_with_tools uses the JSON fallback
            raise ValueError(f"model {self.name!r} (transformers backend) has no native tool calling; "
                             "use agentinstruct.llm.tools.chat_with_tools")
        if seed is None:
            key = request_key(self.name, messages, max_tokens=max_tokens, temperature=temperature,
                              response_format=response_format)
            seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        loop = asyncio.get_running_loop()
        request = _Request(messages, max_tokens, temperature, schema_of(response_format), seed,
                           loop.create_future())
        self.stats.calls += 1
        self._pending.append(request)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await request.future

    async def _drain(self) -> None:
        """Form batches of compatible requests and run them one generate() at a time."""
        while self._pending:
            if self.spec.batch_wait_ms and len(self._pending) < self.spec.batch_size:
                await asyncio.sleep(self.spec.batch_wait_ms / 1000.0)
            # rows may differ in max_tokens and temperature; grammar-constrained rows batch together
            constrained = self._pending[0].schema is not None
            batch = [r for r in self._pending if (r.schema is not None) == constrained][: self.spec.batch_size]
            ids = {id(r) for r in batch}
            self._pending = [r for r in self._pending if id(r) not in ids]
            try:
                results = await asyncio.to_thread(self._generate, batch)
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                self.stats.failures += len(batch)
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(LLMError(f"model {self.name!r}: generation failed: {exc}"))
                continue
            for r, completion in zip(batch, results):
                if not r.future.done():
                    r.future.set_result(completion)

    def _compiled_grammar(self, schema: dict[str, Any]) -> Any:
        import xgrammar as xgr

        if self._grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.model.config.vocab_size
            )
            self._grammar_compiler = xgr.GrammarCompiler(info)
        # the schema's own key order: xgrammar emits properties in this order, so a schema that
        # puts its reasoning (or the tool name) before the answer is generated that way round
        text = json.dumps(schema)
        if text not in self._grammars:
            self._grammars[text] = self._grammar_compiler.compile_json_schema(
                text, any_whitespace=False
            )
        return self._grammars[text]

    def _generate(self, batch: list[_Request]) -> list[Completion]:
        from transformers import GenerationConfig, LogitsProcessorList

        with self._gen_lock:
            prompts = [
                self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
                for r in batch
            ]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            processors = LogitsProcessorList()
            if batch[0].schema is not None:
                import xgrammar as xgr

                processors.append(
                    xgr.contrib.hf.LogitsProcessor([self._compiled_grammar(r.schema) for r in batch])
                )
            prompt_len = enc["input_ids"].shape[1]
            budgets = [r.max_tokens for r in batch]
            processors.append(RowSampler([r.seed for r in batch], [r.temperature for r in batch],
                                         budgets, prompt_len, self._eos_ids[0]))
            config = GenerationConfig(
                max_new_tokens=max(budgets) + 1,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self._eos_ids,
            )
            with torch.inference_mode():
                out = self.model.generate(**enc, generation_config=config, logits_processor=processors)
            results = []
            for row, r in enumerate(batch):
                tokens = out[row, prompt_len:].tolist()
                finish = "length"
                for i, tok in enumerate(tokens):
                    if tok in self._eos_ids:
                        # an EOS at the budget was forced by RowSampler: the reply was cut
                        tokens, finish = (tokens[:i], "length") if i >= r.max_tokens else (tokens[: i + 1], "stop")
                        break
                tokens = tokens[: r.max_tokens]
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                usage = Usage(int(enc["attention_mask"][row].sum()), len(tokens))
                self.stats.add_usage(usage)
                results.append(Completion(text=text, finish_reason=finish, usage=usage, model=self.name))
            return results
