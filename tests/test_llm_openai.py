"""The openai backend against a real HTTP server on 127.0.0.1 with scripted faults."""

import asyncio
import logging
import time

import pytest

from agentinstruct.llm import LLMError, ModelSpec, create_model
from agentinstruct.llm.limits import RateLimiter

MSG = [{"role": "user", "content": "hello"}]


async def _closing(model, coro):
    try:
        return await coro
    finally:
        await model.aclose()


def call(model, messages=MSG, **kw):
    return asyncio.run(_closing(model, model.chat(messages, **kw)))


def spec(server, **kw):
    base = dict(backend="openai", model="fake-model", base_url=server.base_url, api_key_env="TEST_KEY",
                backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5, max_retries=3)
    base.update(kw)
    return ModelSpec(**base)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("TEST_KEY", "sk-secret-test-key-123")


def test_normal_reply_counts_tokens(fake_server):
    model = create_model(spec(fake_server))
    out = call(model, max_tokens=20)
    assert out.text.startswith("Answer:") and out.finish_reason == "stop"
    assert model.stats.calls == 1 and model.stats.retries == 0
    assert model.stats.prompt_tokens == 11 and model.stats.completion_tokens > 0
    assert fake_server.requests[0]["max_tokens"] == 20
    assert fake_server.headers[0]["authorization"] == "Bearer sk-secret-test-key-123"


def test_429_honours_retry_after(fake_server):
    fake_server.script = [("status", (429, 0.6)), ("ok", None)]
    model = create_model(spec(fake_server))
    t0 = time.monotonic()
    out = call(model)
    assert out.text and model.stats.retries == 1
    assert time.monotonic() - t0 >= 0.55, "Retry-After was not honoured"


def test_500_then_success_is_retried(fake_server):
    fake_server.script = [("status", (500, None)), ("status", (503, None)), ("ok", None)]
    model = create_model(spec(fake_server))
    assert call(model).text
    assert model.stats.retries == 2 and len(fake_server.requests) == 3


def test_timeout_is_retried(fake_server):
    fake_server.script = [("sleep", 1.5), ("ok", None)]
    model = create_model(spec(fake_server, timeout_s=0.5))
    assert call(model).text
    assert model.stats.retries == 1


def test_malformed_body_is_retried(fake_server):
    fake_server.script = [("malformed", None), ("ok", None)]
    model = create_model(spec(fake_server))
    assert call(model).text
    assert model.stats.retries == 1


def test_retry_budget_exhausted_is_clear_failure_without_key(fake_server, caplog):
    caplog.set_level(logging.DEBUG)
    fake_server.script = [("status", (500, None))] * 10
    model = create_model(spec(fake_server, max_retries=2))
    with pytest.raises(LLMError) as err:
        call(model)
    msg = str(err.value)
    assert "failed after 3 attempt(s)" in msg and "HTTP 500" in msg and "fake-model" in msg
    assert len(fake_server.requests) == 3
    assert model.stats.failures == 1 and model.stats.retries == 2
    assert "sk-secret" not in msg and "sk-secret" not in caplog.text and "sk-secret" not in repr(model)


def test_non_retryable_status_fails_at_once(fake_server):
    fake_server.script = [("status", (400, None))]
    model = create_model(spec(fake_server))
    with pytest.raises(LLMError, match="HTTP 400"):
        call(model)
    assert len(fake_server.requests) == 1


def test_missing_key_env_is_named(monkeypatch, fake_server):
    monkeypatch.delenv("TEST_KEY")
    with pytest.raises(LLMError, match="TEST_KEY is not set"):
        create_model(spec(fake_server))


def test_concurrency_limit_bounds_requests_in_flight(fake_server):
    fake_server.script = [("sleep", 0.3)] * 6
    model = create_model(spec(fake_server, max_concurrency=2))

    async def run():
        return await asyncio.gather(*(model.chat([{"role": "user", "content": str(i)}]) for i in range(6)))

    t0 = time.monotonic()
    asyncio.run(_closing(model, run()))
    assert time.monotonic() - t0 >= 0.85  # 6 requests of 0.3 s, 2 at a time: 3 waves


def test_rate_limiter_requests_per_minute():
    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=None)  # 10/s, burst 600
    limiter._req = 0  # empty bucket: next requests wait 0.1 s each

    async def run():
        for _ in range(3):
            await limiter.acquire()

    t0 = time.monotonic()
    asyncio.run(run())
    assert 0.25 <= time.monotonic() - t0 < 1.0


def test_json_object_mode_sends_schema(fake_server):
    from agentinstruct.llm import chat_structured

    model = create_model(spec(fake_server, structured_output="json_object"))
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    res = asyncio.run(_closing(model, chat_structured(model, MSG, schema)))
    assert res.ok
    sent = fake_server.requests[0]["response_format"]
    assert sent["type"] == "json_object" and sent["schema"] == schema
