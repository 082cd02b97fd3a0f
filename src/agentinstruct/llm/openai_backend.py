"""OpenAI-compatible backend (OpenAI, vLLM serve, llama.cpp server, Ollama, ...)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from typing import TYPE_CHECKING, Any

import aiohttp
import openai
from openai.types.chat import ChatCompletion

from agentinstruct.llm.base import ChatModel, Completion, LLMError, Messages, ModelSpec, Usage
from agentinstruct.llm.limits import AIMDSettings, ConcurrencyLimit, RateLimiter, backoff_delay, estimate_tokens
from agentinstruct.llm.structured import strict_schema_problems, without_validation_only
from agentinstruct.redact import add_secret_names

if TYPE_CHECKING:
    from agentinstruct.records import ToolCall

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
PERMANENT_STATUS = {400, 413, 422}  # this request is refused as sent; others (401, 404) are setup
# errors the SDK may let through unwrapped when a body is cut mid-read
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError,)


class MalformedResponse(ValueError):
    """A 200 reply that is not a chat completion."""


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return chain


def describe_transport_error(exc: BaseException, timeout_s: float) -> str:
    """What went wrong on the wire, from the root cause: the transport may report a refused
    connection as a ``ConnectTimeout``, so the SDK's exception type alone misleads."""
    chain = _causes(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused (is the server running?)"
    root = chain[-1]
    if isinstance(root, TimeoutError) or "Timeout" in type(root).__name__:
        return f"timed out after {timeout_s:g} s"
    if len(chain) == 1:
        return f"connection error: {_short(str(exc))}"
    return f"connection error: {type(root).__name__}: {_short(str(root))}"


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
        self._slots: ConcurrencyLimit | None = None
        self._rng = random.Random(0)
        self._not_strict: set[str] = set()  # schemas already logged as sent without strict

    @staticmethod
    def _read_key(spec: ModelSpec) -> str:
        if spec.api_key_env:
            add_secret_names(spec.api_key_env)  # its value is redacted wherever text is saved
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise LLMError(
                    f"model {spec.model!r}: environment variable {spec.api_key_env} is not set"
                )
            return key
        return "not-needed"  # local servers ignore the key

    @property
    def supports_tools(self) -> bool:  # type: ignore[override]
        """Native OpenAI ``tools`` unless the recipe turned them off for this server."""
        return self.spec.native_tools

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIChatModel(model={self.spec.model!r}, base_url={self.spec.base_url!r})"

    def _new_limit(self) -> ConcurrencyLimit:
        spec = self.spec
        if spec.adaptive_concurrency:
            return ConcurrencyLimit(spec.concurrency_limit, AIMDSettings(
                start=spec.initial_concurrency, minimum=spec.min_concurrency, maximum=spec.concurrency_limit))
        return ConcurrencyLimit(spec.concurrency_ceiling())

    def capacity(self) -> int:
        return self._slots.limit if self._slots is not None else self._new_limit().limit

    @property
    def slots(self) -> ConcurrencyLimit | None:
        """The in-flight limit of the current event loop (its peak, its adaptive value)."""
        return self._slots

    def _ensure_client(self) -> tuple[openai.AsyncOpenAI, ConcurrencyLimit]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            http_client = None
            if hasattr(openai, "DefaultAioHttpClient"):
                # the SDK's pool holds 1,000 connections: more requests in flight than that
                # would wait for a connection, not the server; size it to the ceiling
                pool = max(self.spec.concurrency_ceiling(), openai.DEFAULT_CONNECTION_LIMITS.max_connections or 0)
                limits = openai.DEFAULT_CONNECTION_LIMITS.__class__(
                    max_connections=pool, max_keepalive_connections=pool)
                try:  # aiohttp transport: about 2x the throughput of httpx at high concurrency
                    http_client = openai.DefaultAioHttpClient(timeout=self.spec.timeout_s, limits=limits)
                except Exception:  # extra not installed
                    http_client = None
            self._client = openai.AsyncOpenAI(
                base_url=self.spec.base_url,
                api_key=self._api_key,
                timeout=self.spec.timeout_s,
                max_retries=0,
                http_client=http_client,
            )
            self._slots = self._new_limit()
            self._loop = loop
        assert self._slots is not None
        return self._client, self._slots

    def _response_format(self, response_format: dict[str, Any] | None) -> dict[str, Any] | None:
        if response_format is None or self.spec.structured_output == "none":
            return None
        if self.spec.structured_output == "json_object" and response_format.get("type") == "json_schema":
            # llama.cpp's server: json_object plus the schema in the same object
            return {"type": "json_object", "schema": response_format["json_schema"]["schema"]}
        if response_format.get("type") == "json_schema":
            return self._with_strict(response_format)
        return response_format

    def _with_strict(self, response_format: dict[str, Any]) -> dict[str, Any]:
        """``strict: true`` only for schemas OpenAI's strict mode accepts (it answers HTTP 400 to
        the others), sent less the length-style limits strict mode refuses; the rest go whole
        as ``strict: false``, where the schema guides but does not bind. Our validation of the
        reply against the full schema applies either way."""
        spec = response_format["json_schema"]
        sendable = without_validation_only(spec["schema"])
        problems = strict_schema_problems(sendable)
        if problems:
            key = json.dumps(spec["schema"], sort_keys=True)
            if key not in self._not_strict:
                self._not_strict.add(key)
                log.debug("schema %r sent with strict false: %s", spec.get("name"), "; ".join(problems))
            return {**response_format, "json_schema": {**spec, "strict": False}}
        return {**response_format, "json_schema": {**spec, "schema": sendable, "strict": True}}

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
        client, slots = self._ensure_client()
        params: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if seed is not None:
            params["seed"] = seed
        if tools is not None:
            params["tools"] = tools
        if tool_choice is not None:  # "none": answer without calling the tools declared
            params["tool_choice"] = tool_choice
        fmt = self._response_format(response_format)
        if fmt is not None:
            params["response_format"] = fmt
        if self.spec.extra_body:
            params["extra_body"] = self.spec.extra_body
        estimate = sum(estimate_tokens(m.get("content") or "") for m in messages) + max_tokens
        if tools:
            estimate += estimate_tokens(json.dumps(tools))
        last_error = ""
        permanent = False
        self.stats.calls += 1
        for attempt in range(self.spec.max_retries + 1):
            await self._limiter.acquire(estimate)
            delay: float | None = None
            ticket = await slots.acquire()
            overloaded = succeeded = False
            try:
                response = await _create(client, params)
                completion = self._to_completion(response)
                succeeded = True
                return completion
            except openai.APIStatusError as exc:
                overloaded = exc.status_code == 429
                last_error = f"HTTP {exc.status_code}: {_short(exc.message)}"
                if exc.status_code not in RETRYABLE_STATUS:
                    # the request itself was refused (400, 413, 422): resending it cannot help
                    permanent = exc.status_code in PERMANENT_STATUS
                    break
                delay = _retry_after(exc)
            except openai.APIConnectionError as exc:  # APITimeoutError is one of these
                overloaded = isinstance(exc, openai.APITimeoutError)
                last_error = describe_transport_error(exc, self.spec.timeout_s)
            except (openai.APIResponseValidationError, ValueError, TypeError, KeyError, IndexError,
                    AttributeError) as exc:
                # a 200 that is not a chat completion: cut JSON, an HTML page from a proxy, ...
                last_error = f"malformed response: {type(exc).__name__}: {_short(str(exc))}"
            except (OSError, *_TRANSPORT_ERRORS) as exc:  # a body cut mid-read, outside the SDK
                last_error = f"connection error: {type(exc).__name__}: {_short(str(exc))}"
            finally:  # the slot is free before any backoff sleep; AIMD learns from the outcome
                slots.release(ticket, overloaded=overloaded, succeeded=succeeded)
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
            f"failed after {attempt + 1} attempt(s): {last_error}",
            permanent=permanent,
        )

    def _to_completion(self, response: Any) -> Completion:
        if not isinstance(response, ChatCompletion) or not getattr(response, "choices", None):
            # the SDK hands back the body text when a 200 is not JSON (an HTML page)
            shown = response if isinstance(response, str) else type(response).__name__
            raise MalformedResponse(f"the 200 reply is not a chat completion: {_short(str(shown), 120)}")
        choice = response.choices[0]
        text = choice.message.content
        tool_calls = _tool_calls(choice.message)
        if text is None and not tool_calls:
            raise ValueError("response has no message content")
        usage = Usage()
        if response.usage is not None:
            usage = Usage(response.usage.prompt_tokens or 0, response.usage.completion_tokens or 0)
        self.stats.add_usage(usage)
        return Completion(
            text=text or "",
            finish_reason=choice.finish_reason or "stop",
            usage=usage,
            model=response.model or self.spec.model,
            tool_calls=tool_calls,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except RuntimeError:  # loop already closed
                pass
            self._client = None


def _tool_calls(message: Any) -> list[ToolCall] | None:
    """The function calls of a reply message (None when it makes none)."""
    calls = [c for c in (getattr(message, "tool_calls", None) or [])
             if getattr(c, "type", "function") == "function" and getattr(c, "function", None) is not None]
    if not calls:
        return None
    from agentinstruct.records import ToolCall, ToolCallFunction

    return [ToolCall(id=c.id or f"call_{i}", function=ToolCallFunction(
        name=c.function.name or "", arguments=c.function.arguments or "")) for i, c in enumerate(calls)]


try:  # the SDK's own request options, so the request is the one ``create`` sends
    from openai._base_client import make_request_options as _request_options
except ImportError:  # another SDK layout: use ``create`` itself
    _request_options = None


async def _create(client: openai.AsyncOpenAI, params: dict[str, Any]) -> Any:
    """``client.chat.completions.create(**params)`` without its request transform: that walks
    every message and the whole JSON schema through the SDK's type hints, about a millisecond
    of event-loop time a call, to send the plain JSON our params already are."""
    if _request_options is None:
        return await client.chat.completions.create(**params)
    body = {k: v for k, v in params.items() if k != "extra_body"}
    options = _request_options(extra_body=params.get("extra_body"), security={"bearer_auth": True})
    return await client.post("/chat/completions", body=body, options=options, cast_to=ChatCompletion)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
