"""OpenAI-compatible backend (OpenAI, vLLM serve, llama.cpp server, Ollama, ...)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

import openai

from agentinstruct.llm.base import ChatModel, Completion, LLMError, Messages, ModelSpec, Usage
from agentinstruct.llm.limits import RateLimiter, backoff_delay, estimate_tokens

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` / ``retry-after-ms``), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None  # HTTP-date form: fall back to our own backoff
    return None


class OpenAIChatModel(ChatModel):
    """``openai.AsyncOpenAI`` with our own retries, limits and counters.

    The client's own retries are off (``max_retries=0``) so that every retry is counted here and
    ``Retry-After`` is honoured uniformly. The API key is read from the environment variable the
    recipe names and is never logged or put into an error message.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if not spec.base_url and not os.environ.get("OPENAI_BASE_URL") and not spec.api_key_env:
            spec = spec.model_copy(update={"api_key_env": "OPENAI_API_KEY"})
        self.spec = spec
        self.name = spec.model
        self._api_key = self._read_key(spec)
        self._limiter = RateLimiter(spec.requests_per_minute, spec.tokens_per_minute)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None
        self._rng = random.Random(0)

    @staticmethod
    def _read_key(spec: ModelSpec) -> str:
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise LLMError(
                    f"model {spec.model!r}: environment variable {spec.api_key_env} is not set"
                )
            return key
        return "not-needed"  # local servers ignore the key

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIChatModel(model={self.spec.model!r}, base_url={self.spec.base_url!r})"

    def _ensure_client(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            http_client = None
            if hasattr(openai, "DefaultAioHttpClient"):
                try:  # aiohttp transport: about 2x the throughput of httpx at high concurrency
                    http_client = openai.DefaultAioHttpClient(timeout=self.spec.timeout_s)
                except Exception:  # extra not installed
                    http_client = None
            self._client = openai.AsyncOpenAI(
                base_url=self.spec.base_url,
                api_key=self._api_key,
                timeout=self.spec.timeout_s,
                max_retries=0,
                http_client=http_client,
            )
            self._sem = asyncio.Semaphore(self.spec.max_concurrency)
            self._loop = loop
        assert self._sem is not None
        return self._client, self._sem

    def _response_format(self, response_format: dict[str, Any] | None) -> dict[str, Any] | None:
        if response_format is None or self.spec.structured_output == "none":
            return None
        if self.spec.structured_output == "json_object" and response_format.get("type") == "json_schema":
            # llama.cpp's server: json_object plus the schema in the same object
            return {"type": "json_object", "schema": response_format["json_schema"]["schema"]}
        return response_format

    async def chat(
        self,
        messages: Messages,
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        client, sem = self._ensure_client()
        params: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if seed is not None:
            params["seed"] = seed
        fmt = self._response_format(response_format)
        if fmt is not None:
            params["response_format"] = fmt
        if self.spec.extra_body:
            params["extra_body"] = self.spec.extra_body
        estimate = sum(estimate_tokens(m.get("content", "")) for m in messages) + max_tokens
        last_error = ""
        self.stats.calls += 1
        for attempt in range(self.spec.max_retries + 1):
            await self._limiter.acquire(estimate)
            delay: float | None = None
            try:
                async with sem:
                    response = await client.chat.completions.create(**params)
                return self._to_completion(response)
            except openai.APIStatusError as exc:
                last_error = f"HTTP {exc.status_code}: {_short(exc.message)}"
                if exc.status_code not in RETRYABLE_STATUS:
                    break
                delay = _retry_after(exc)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                last_error = f"{type(exc).__name__}: {_short(str(exc))}"
            except (openai.APIResponseValidationError, ValueError, TypeError, KeyError, IndexError) as exc:
                last_error = f"malformed response: {type(exc).__name__}: {_short(str(exc))}"
            if attempt == self.spec.max_retries:
                break
            self.stats.retries += 1
            if delay is None:
                delay = backoff_delay(attempt, self.spec.backoff_base_s, self.spec.backoff_max_s, self._rng)
            log.debug("model %s: retry %d after %.2fs (%s)", self.spec.model, attempt + 1, delay, last_error)
            await asyncio.sleep(delay)
        self.stats.failures += 1
        raise LLMError(
            f"model {self.spec.model!r} at {self.spec.base_url or 'api.openai.com'}: "
            f"failed after {attempt + 1} attempt(s): {last_error}"
        )

    def _to_completion(self, response: Any) -> Completion:
        choice = response.choices[0]
        text = choice.message.content
        if text is None:
            raise ValueError("response has no message content")
        usage = Usage()
        if response.usage is not None:
            usage = Usage(response.usage.prompt_tokens or 0, response.usage.completion_tokens or 0)
        self.stats.add_usage(usage)
        return Completion(
            text=text,
            finish_reason=choice.finish_reason or "stop",
            usage=usage,
            model=response.model or self.spec.model,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except RuntimeError:  # loop already closed
                pass
            self._client = None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
