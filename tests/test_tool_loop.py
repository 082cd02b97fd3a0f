"""Tools while generating: the tool loop (native OpenAI tools and the JSON fallback), the built-in
tools (calculator, sandboxed python, search) and the cache key with tools.

The LLM side runs on the scripted OpenAI-compatible server (tests/fake_openai.py) and on small
scripted ChatModels, because the embedded 135M model cannot call tools reliably; one test runs the
real embedded model through the JSON fallback and checks only that the loop ends in bounds.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest
from agentinstruct.generate.agent_tools import (
    Calculator,
    CalculatorError,
    build_toolbox,
    calculator_tool,
    python_tool,
    search_tool,
)
from agentinstruct.generate.retrieval import BM25Retriever
from agentinstruct.generate.tools import calculate, check_arithmetic
from fake_openai import FakeOpenAIServer, default_responder, tool_calling_responder

from agentinstruct.cache import CachedChatModel, CallCache
from agentinstruct.llm import ChatModel, Completion, LLMError, ModelSpec, create_model
from agentinstruct.llm.tools import INVALID_TOOL_REQUEST, ToolBox, ToolSpec, chat_with_tools
from agentinstruct.recipes import RecipeError
from agentinstruct.records import Seed, ToolCall, ToolCallFunction
from agentinstruct.sandbox import Sandbox

QUESTION = [{"role": "system", "content": "You are a careful teacher."},
            {"role": "user", "content": "What is 17 * 23?"}]


def run(coro):
    return asyncio.run(coro)


def loop(model: ChatModel, messages, box: ToolBox, **kw: Any):
    """chat_with_tools in a fresh event loop, closing the model's client inside it."""
    async def go():
        try:
            return await chat_with_tools(model, messages, box, **{"max_tokens": 64, "temperature": 0.0, **kw})
        finally:
            await model.aclose()

    return run(go())


def last_tool_result(messages: list[dict[str, Any]]) -> str | None:
    """The content of the newest tool turn (native) or tool-result user turn (fallback)."""
    for m in reversed(messages):
        if m["role"] == "tool":
            return m["content"]
        if m["role"] == "user" and m["content"].startswith("Result of "):
            return m["content"].split("\n", 1)[1].split("\n\nNo more tool calls")[0]
        if m["role"] == "user":
            return None
    return None


def answer_with_result(body: dict[str, Any]) -> str:
    result = last_tool_result(body["messages"])
    return f"The answer is {result}." if result is not None else default_responder(body)


def openai_model(server: FakeOpenAIServer, **kw: Any) -> ChatModel:
    return create_model(ModelSpec(backend="openai", base_url=server.base_url, model="fake",
                                  max_retries=0, **kw))


# --- native path (scripted server) -----------------------------------------------------------


def asks_calculator_once(body: dict[str, Any]) -> list[tuple[str, Any]] | None:
    if any(m["role"] == "tool" for m in body["messages"]):
        return None  # the result is in: answer
    return [("calculator", {"expression": "17 * 23"})]


def test_native_calculator_round_trip():
    """The teacher calls the calculator, gets 391 back as a tool turn, and answers with it."""
    with FakeOpenAIServer(tool_calling_responder(asks_calculator_once, answer_with_result)) as server:
        model = openai_model(server)
        assert model.supports_tools
        result = loop(model, QUESTION, ToolBox([calculator_tool()]), max_rounds=3, max_tokens=64)
        requests = server.requests
    assert len(result.rounds) == 1 and not result.exhausted
    assert result.rounds[0].result == "391" and "391" in result.text
    assert result.finish_reason == "stop" and result.model_calls == 2
    assistant, tool, final = result.messages
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["function"]["name"] == "calculator"
    call_id = assistant["tool_calls"][0]["id"]
    assert call_id == "call_0"  # ours, not the server's "call_0" by chance: see the next test
    assert tool == {"role": "tool", "tool_call_id": call_id, "name": "calculator", "content": "391"}
    assert final == {"role": "assistant", "content": "The answer is 391."}
    # the first request offered the tool; the second carried the call and its result
    assert [t["function"]["name"] for t in requests[0]["tools"]] == ["calculator"]
    sent = requests[1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call_id, "content": "391"}
    assert result.trace() == [{"name": "calculator", "arguments": '{"expression": "17 * 23"}', "result": "391"}]
    assert ToolCall.model_validate(assistant["tool_calls"][0]) == result.rounds[0].call


def test_call_ids_are_ours_and_continue_through_the_conversation():
    """Ids come from the call's position in the conversation, not from the server."""
    def respond(body):
        if any(m["role"] == "tool" for m in body["messages"][-1:]):
            return "done"
        return {"content": "", "tool_calls": [{"id": "srv-random-xyz", "type": "function", "function": {
            "name": "calculator", "arguments": json.dumps({"expression": "1+1"})}}]}

    earlier = [*QUESTION, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "2"},
        {"role": "assistant", "content": "2"}, {"role": "user", "content": "And 1+1?"}]
    with FakeOpenAIServer(respond) as server:
        result = loop(openai_model(server), earlier, ToolBox([calculator_tool()]), max_rounds=2, max_tokens=32)
    assert result.rounds[0].call.id == "call_1"
    assert result.messages[1]["tool_call_id"] == "call_1"


def test_native_max_rounds_bound():
    """A model that always calls: after max_rounds tool turns the last request forbids tools
    (tool_choice none) and the model's plain answer ends the loop."""
    with FakeOpenAIServer(tool_calling_responder(lambda body: [("calculator", {"expression": "2 + 2"})])) as server:
        result = loop(openai_model(server), QUESTION, ToolBox([calculator_tool()]), max_rounds=2, max_tokens=32)
        requests = server.requests
    assert len(requests) == 3 and len(result.rounds) == 2 and result.exhausted
    assert [r.round for r in result.rounds] == [0, 1]
    assert "tool_choice" not in requests[0] and requests[2]["tool_choice"] == "none"
    assert result.text.startswith("Answer: ") and result.messages[-1]["role"] == "assistant"
    assert [m["role"] for m in result.messages] == ["assistant", "tool", "assistant", "tool", "assistant"]


def test_unknown_tool_and_bad_arguments_are_fed_back_as_errors():
    """Calls the box cannot run come back to the model as error texts; nothing raises."""
    def decide(body):
        if any(m["role"] == "tool" for m in body["messages"]):
            return None
        return [("weather", {"city": "Oslo"}), ("calculator", "{not json"), ("calculator", {"expr": "1"}),
                ("calculator", {"expression": "__import__('os')"})]

    with FakeOpenAIServer(tool_calling_responder(decide)) as server:
        result = loop(openai_model(server), QUESTION, ToolBox([calculator_tool()]), max_rounds=2, max_tokens=32)
        sent = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
    results = [r.result for r in result.rounds]
    assert results[0].startswith("error: unknown tool 'weather'") and "calculator" in results[0]
    assert results[1].startswith("error: the arguments are not valid JSON")
    assert results[2].startswith("error: bad arguments for calculator")
    assert results[3].startswith("error: calculator: unknown function '__import__'")
    assert [m["content"] for m in sent] == results  # the model saw every error
    assert [m["tool_call_id"] for m in sent] == ["call_0", "call_1", "call_2", "call_3"]


def test_native_call_failure_raises_llm_error():
    """A refused request is a failed call (LLMError), not a tool result."""
    with FakeOpenAIServer(tool_calling_responder(asks_calculator_once)) as server:
        server.script = [("ok", None), ("status", (400, None))]
        with pytest.raises(LLMError):
            loop(openai_model(server), QUESTION, ToolBox([calculator_tool()]), max_rounds=2, max_tokens=32)


# --- JSON fallback (scripted non-native model) ---------------------------------------------


class ScriptedToolRequests(ChatModel):
    """A model without native tools that answers JSON tool requests: calls the calculator until
    it has ``calls`` results (or the schema allows only ``final``), then answers with the last
    result."""

    name = "scripted-json"

    def __init__(self, calls: int = 1, reply: str | None = None):
        super().__init__()
        self.calls, self.reply, self.requests = calls, reply, []

    async def chat(self, messages, **kw):
        self.requests.append({"messages": messages, **kw})
        if self.reply is not None:
            return Completion(self.reply, "stop")
        schema = kw["response_format"]["json_schema"]["schema"]
        actions = {v["properties"]["action"]["const"] for v in schema.get("anyOf", [schema])}
        seen = sum(1 for m in messages if m["role"] == "user" and m["content"].startswith("Result of "))
        if seen < self.calls and "call" in actions:
            value = {"action": "call", "tool": "calculator", "arguments": {"expression": "17 * 23"}}
        else:
            value = {"action": "final", "content": f"The answer is {last_tool_result(messages)}."}
        return Completion(json.dumps(value), "stop")


def test_json_fallback_gives_the_same_result_shape_as_native():
    """The same exchange through the JSON tool-request fallback yields identical turns."""
    fallback_model = ScriptedToolRequests(calls=1)
    assert not fallback_model.supports_tools
    fallback = loop(fallback_model, QUESTION, ToolBox([calculator_tool()]), max_rounds=3, max_tokens=64)
    with FakeOpenAIServer(tool_calling_responder(asks_calculator_once, answer_with_result)) as server:
        native = loop(openai_model(server), QUESTION, ToolBox([calculator_tool()]), max_rounds=3, max_tokens=64)
    assert fallback.messages == native.messages
    assert fallback.trace() == native.trace() and fallback.text == native.text == "The answer is 391."
    # what the fallback model saw: the protocol in the system turn, a JSON schema, the result as a user turn
    first, second = fallback_model.requests
    assert "tools" not in first and "calculator" in first["messages"][0]["content"]
    assert first["messages"][0]["content"].startswith("You are a careful teacher.")
    call, final = first["response_format"]["json_schema"]["schema"]["anyOf"]
    assert call["properties"]["tool"] == {"type": "string", "const": "calculator"}
    assert call["properties"]["arguments"] == calculator_tool().parameters  # the tool's own arguments
    assert final["properties"]["action"]["const"] == "final" and "tool" not in final["properties"]
    assert second["messages"][-1] == {"role": "user", "content": "Result of calculator (call_0):\n391"}
    assert second["messages"][-2]["role"] == "assistant" and json.loads(second["messages"][-2]["content"])["action"] == "call"


def test_json_fallback_max_rounds_bound():
    """The fallback's last request only allows the final action, so the loop ends in bounds."""
    model = ScriptedToolRequests(calls=99)
    result = loop(model, QUESTION, ToolBox([calculator_tool()]), max_rounds=2, max_tokens=64)
    assert len(result.rounds) == 2 and result.exhausted and len(model.requests) == 3
    last_schema = model.requests[-1]["response_format"]["json_schema"]["schema"]
    assert "anyOf" not in last_schema and last_schema["properties"]["action"]["const"] == "final"
    assert "No more tool calls" in model.requests[-1]["messages"][-1]["content"]
    assert result.text == "The answer is 391."


def test_json_fallback_invalid_reply_ends_with_its_own_finish_reason():
    """A reply that stays invalid JSON after the re-ask is kept (raw) and marked, not dropped."""
    model = ScriptedToolRequests(reply="I think it is 391")
    result = loop(model, QUESTION, ToolBox([calculator_tool()]), max_rounds=2, max_tokens=64)
    assert result.finish_reason == INVALID_TOOL_REQUEST and result.text == "I think it is 391"
    assert result.model_calls == 2 and not result.rounds


def test_json_fallback_call_failure_raises_llm_error():
    class Down(ChatModel):
        name = "down"

        async def chat(self, messages, **kw):
            raise LLMError("connection refused")

    with pytest.raises(LLMError):
        loop(Down(), QUESTION, ToolBox([calculator_tool()]), max_rounds=1, max_tokens=16)


def test_openai_backend_without_native_tools_uses_the_json_fallback():
    """native_tools: false sends no `tools`: every request asks for the JSON tool request."""
    with FakeOpenAIServer() as server:
        model = openai_model(server, native_tools=False)
        assert not model.supports_tools
        result = loop(model, QUESTION, ToolBox([calculator_tool()]), max_rounds=2, max_tokens=64)
        requests = server.requests
    assert requests and all("tools" not in r and r["response_format"]["type"] == "json_schema" for r in requests)
    # the scripted server fills the first alternative (a calculator call with words for an
    # expression): two rounds of error texts, then the final-only request ends the loop
    assert len(result.rounds) == 2 and result.exhausted and result.finish_reason == "stop"
    assert all(r.result.startswith("error: calculator") for r in result.rounds)
    assert [m["role"] for m in result.messages] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert ModelSpec(native_tools=False).identity()["native_tools"] is False
    assert "native_tools" not in ModelSpec().identity()  # existing recipe hashes unchanged


# --- cache -------------------------------------------------------------------------------------


class CountingToolModel(ChatModel):
    name = "counting"
    supports_tools = True

    def __init__(self):
        super().__init__()
        self.calls = 0

    async def chat(self, messages, **kw):
        self.calls += 1
        calls = [ToolCall(id="c", function=ToolCallFunction(name="calculator", arguments="{}"))] if kw.get("tools") else None
        return Completion("", "tool_calls" if calls else "stop", tool_calls=calls)


def test_cache_key_includes_tools(tmp_path):
    """Same messages with and without tools are different requests; tool calls survive the cache."""
    inner = CountingToolModel()
    cache = CallCache(tmp_path / "calls.sqlite")
    model = CachedChatModel(inner, cache)
    assert model.supports_tools
    tools = ToolBox([calculator_tool()]).openai_tools()

    async def go():
        plain = await model.chat(QUESTION)
        with_tools = await model.chat(QUESTION, tools=tools)
        forced = await model.chat(QUESTION, tools=tools, tool_choice="none")
        again = await model.chat(QUESTION, tools=tools)
        return plain, with_tools, forced, again

    plain, with_tools, forced, again = run(go())
    assert inner.calls == 3 and again.cached and not with_tools.cached
    assert plain.tool_calls is None and again.tool_calls == with_tools.tool_calls
    assert isinstance(again.tool_calls[0], ToolCall)
    cache.close()


# --- calculator -------------------------------------------------------------------------------


@pytest.mark.parametrize("expression, expected", [
    ("(17 * 23) / 4", "97.75"), ("0.1 + 0.2", "0.3"), ("2 ** 10", "1024"), ("-2 ** 2", "-4"),
    ("10 % 3", "1"), ("sqrt(2) * pi", "4.44288293815837"), ("log(8, 2)", "3"), ("ln(e)", "1"),
    ("factorial(20)", "2432902008176640000"), ("round(pi, 3)", "3.142"), ("round(2.5)", "2"),
    ("floor(7 / 2) + ceil(7 / 2)", "7"), ("abs(-3.5)", "3.5"), ("sin(pi / 2) + cos(0)", "2"),
    ("1 / 3", "0.333333333333333"), ("10 ** 400 / 3", "3.33333333333333e+399"),
])
def test_calculator_values(expression, expected):
    assert Calculator().calculate(expression) == expected


@pytest.mark.parametrize("expression, reason", [
    ("__import__('os').system('true')", "only the named functions"), ("(1).real", "Attribute is not allowed"),
    ("lambda: 1", "Lambda is not allowed"), ("x + 1", "unknown name 'x'"), ("open('f')", "unknown function 'open'"),
    ("9 ** 9 ** 9", "out of range"), ("10 ** 10 ** 10", "out of range"), ("e ** e ** e ** e", "out of range"),
    ("factorial(10 ** 6)", "out of range"), ("exp(10 ** 6)", "out of range"), ("1 / 0", "division by zero"),
    ("sqrt(-1)", "not a real number"), ("log(0)", "log takes numbers > 0"), ("True + 1", "bool"),
    ("'a' * 3", "str constants"), ("[1, 2]", "List is not allowed"), ("1" * 600, "longer than"),
    ("round(2, 1000)", "round: digits"), ("sqrt(x=2)", "keyword arguments"),
])
def test_calculator_rejects_unsafe_or_unbounded(expression, reason):
    start = time.monotonic()
    with pytest.raises(CalculatorError, match=re.escape(reason)):
        Calculator().evaluate(expression)
    assert time.monotonic() - start < 2.0


def test_check_arithmetic_runs_through_the_new_calculator():
    assert calculate("1,500 / 3") == 500 and calculate("4 × 7") == 28
    assert check_arithmetic("So 12 × 3 = 36 and 7 + 5 = 13.") == "calculator: 7 + 5 = 13 is wrong (12)"
    with pytest.raises(ValueError):
        calculate("__import__('os')")


def test_toolbox_turns_tool_failures_into_error_text():
    async def boom(arguments):
        raise RuntimeError("disk on fire")

    box = ToolBox([ToolSpec("boom", "fails", {"type": "object", "properties": {}}, boom), calculator_tool()])
    assert run(box.call("boom", {})) == "error: boom: RuntimeError: disk on fire"
    assert run(box.call("calculator", {"expression": 7})).startswith("error: bad arguments for calculator")
    with pytest.raises(ValueError, match="unique"):
        ToolBox([calculator_tool(), calculator_tool()])


# --- python and search tools ------------------------------------------------------------------


def test_python_tool_output_is_redacted(monkeypatch):
    """The program's output comes back, but a secret it prints does not."""
    secret = "s3cr3t-value-0123456789"
    monkeypatch.setenv("TOOL_TEST_API_KEY", secret)
    tool = python_tool(Sandbox(), timeout_s=10.0)
    out = run(tool.run({"code": f"print('sum', 2 + 3)\nprint('leak', {secret!r})"}))
    assert out.startswith("exit: ok") and "sum 5" in out
    assert secret not in out and "[REDACTED]" in out
    failed = run(tool.run({"code": "raise SystemExit('bad input')"}))
    assert failed.startswith("exit: failed") and "bad input" in failed


def test_search_tool_returns_passages_with_ids():
    seeds = [Seed(id="s-kiln", text="The kiln fires clay at high heat to make pottery.", source="a.txt"),
             Seed(id="s-moth", text="The moth flies toward the lantern at night.", source="b.txt")]
    tool = search_tool(BM25Retriever.build(seeds), k=1)
    out = run(tool.run({"query": "how is pottery made in a kiln"}))
    assert out.startswith("[s-kiln] (a.txt) The kiln fires clay") and "s-moth" not in out
    assert run(tool.run({"query": "zebra"})) == "no passages found"


def test_build_toolbox_by_name():
    box = build_toolbox(["calculator", "python"], sandbox=Sandbox(level="none"), retriever=None)
    assert box.names == ["calculator", "python"]
    with pytest.raises(RecipeError, match="unknown tool 'abacus'"):
        build_toolbox(["calculator", "abacus"], sandbox=None, retriever=None)
    with pytest.raises(RecipeError, match="'python' needs the sandbox"):
        build_toolbox(["python"], sandbox=None, retriever=None)
    with pytest.raises(RecipeError, match="'search' needs a retrieval index"):
        build_toolbox(["search"], sandbox=None, retriever=None)


# --- the real embedded model ------------------------------------------------------------------


@pytest.mark.slow  # 50-80 s on the 2 shared cores: two grammar-constrained calls, the first compiling the grammar
def test_embedded_model_through_the_json_fallback(embedded_model):
    """SmolLM2-135M on the transformers backend, tool requests constrained by xgrammar. Only
    checks that the loop completes within max_rounds without raising. Observed here (greedy):
    it calls calculator {"expression": "17 * 23"}, gets 391 and answers "391" (one round, two
    calls); other prompts may get a made-up expression or an answer without a call."""
    assert not embedded_model.supports_tools
    result = loop(embedded_model, QUESTION, ToolBox([calculator_tool()]), max_rounds=2, max_tokens=48)
    assert len(result.rounds) <= 2 and result.model_calls <= 2 * 3
    assert result.messages[-1]["role"] == "assistant"
