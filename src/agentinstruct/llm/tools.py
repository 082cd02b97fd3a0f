"""Tools while generating: a bounded loop of tool calls inside one agent step.

:func:`chat_with_tools` lets a model call the tools of a :class:`ToolBox` (calculator, sandboxed
Python, retrieval: ``generate/agent_tools.py``) before it answers. Two paths, one result:

* **native** (``model.supports_tools``: the openai backend): the request carries OpenAI
  ``tools``; the reply's ``tool_calls`` are run and fed back as ``tool`` turns.
* **JSON fallback** (the transformers and vllm backends, servers with ``native_tools: false``):
  every turn is a JSON tool request, ``{"action": "call", "tool", "arguments"}`` or
  ``{"action": "final", "content"}`` (:func:`tool_request_schema`), asked for through
  :func:`~agentinstruct.llm.structured.chat_structured`, so the transformers backend constrains
  it with xgrammar; a call's result comes back as a user turn.

Either way the loop returns a :class:`ToolLoopResult` whose ``messages`` are OpenAI-format
turns (assistant with ``tool_calls``, one ``tool`` turn per call, the final assistant turn), with
call ids numbered through the conversation (``call_0``, ``call_1``, ...) rather than the
server's random ones, so a resumed or cached run writes identical records. A tool that is
unknown, gets bad arguments or fails answers with an error text the model sees; only a failed
model call raises (:class:`~agentinstruct.llm.base.LLMError`, which the engine counts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agentinstruct.llm.base import ChatModel, LLMError, Messages
from agentinstruct.llm.structured import chat_structured, validation_error
from agentinstruct.records import ToolCall, ToolCallFunction
from agentinstruct.redact import redact_secrets

log = logging.getLogger(__name__)

ToolRunner = Callable[[dict[str, Any]], Awaitable[str]]

# A tool result longer than this is cut (the model's context is the limit that matters; each
# tool also bounds its own output)
MAX_RESULT_CHARS = 4000
# Calls one model turn may make; the ones past it are answered with an error text, not run
MAX_CALLS_PER_ROUND = 8
# finish_reason of a loop whose JSON tool request stayed invalid after the re-ask
INVALID_TOOL_REQUEST = "invalid_tool_request"

FALLBACK_INSTRUCTIONS = """You can use tools before you answer. Reply with one JSON object and nothing else:
- to call a tool: {{"action": "call", "tool": TOOL NAME, "arguments": {{...}}}}; its result comes back in the next message;
- to answer: {{"action": "final", "content": YOUR ANSWER}}.
Tools:
{tools}"""
FALLBACK_RESULT = "Result of {name} ({call_id}):\n{result}"
FALLBACK_LAST_ROUND = "\n\nNo more tool calls are possible: reply with action final and your answer."


class ToolError(ValueError):
    """A tool refused its input; the message goes back to the model as the call's result."""


@dataclass
class ToolSpec:
    """One tool: what the model is told (name, description, JSON schema of the arguments) and
    the coroutine that runs a call (its arguments already validated against ``parameters``)."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: ToolRunner = field(repr=False)

    def openai_tool(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


class ToolBox:
    """The tools one agent step may call, by name."""

    def __init__(self, tools: list[ToolSpec], *, max_result_chars: int = MAX_RESULT_CHARS):
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tool names must be unique, got {duplicates} more than once")
        self._tools = {t.name: t for t in tools}
        self.max_result_chars = max_result_chars

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    @property
    def tools(self) -> list[ToolSpec]:
        return list(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def openai_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` of an OpenAI chat request."""
        return [t.openai_tool() for t in self._tools.values()]

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one call; an unknown tool, bad arguments or a failing tool give an error text
        (redacted, bounded like every result), never an exception."""
        tool = self._tools.get(name)
        if tool is None:
            return self._bounded(f"error: unknown tool {name!r}; the tools are: {', '.join(self.names)}")
        if not isinstance(arguments, dict):
            return self._bounded(f"error: the arguments of {name} must be a JSON object")
        problem = validation_error(arguments, tool.parameters)
        if problem is not None:
            return self._bounded(f"error: bad arguments for {name}: {problem}")
        try:
            result = await tool.run(arguments)
        except LLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model sees what went wrong, the step goes on
            log.debug("tool %s failed: %s: %s", name, type(exc).__name__, exc)
            reason = str(exc) if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}"
            return self._bounded(f"error: {name}: {reason}")
        return self._bounded(result)

    def _bounded(self, text: str) -> str:
        text = redact_secrets(text)
        if len(text) > self.max_result_chars:
            text = text[: self.max_result_chars] + f"\n[... cut at {self.max_result_chars} characters]"
        return text


@dataclass
class ToolRound:
    """One executed call and its result; ``round``: the model turn (0-based) that made it."""

    call: ToolCall
    result: str
    round: int = 0


@dataclass
class ToolLoopResult:
    """The answer of a tool-using step and how it was reached.

    ``messages``: the turns the step added, OpenAI format: each assistant turn with
    ``tool_calls``, one ``tool`` turn per call (``tool_call_id``, ``name``), the final assistant
    turn. ``exhausted``: all ``max_rounds`` tool turns were used and the model was then made to
    answer without tools. ``model_calls``: requests sent (re-asks of the fallback included)."""

    text: str
    finish_reason: str
    rounds: list[ToolRound]
    messages: list[dict[str, Any]]
    exhausted: bool = False
    model_calls: int = 0

    def trace(self) -> list[dict[str, str]]:
        """The rounds as provenance (``Record.tool_trace``): name, arguments, result."""
        return [{"name": r.call.function.name, "arguments": r.call.function.arguments, "result": r.result}
                for r in self.rounds]


def call_id(ordinal: int) -> str:
    """The id of the conversation's ``ordinal``-th tool call (0-based): stable across runs."""
    return f"call_{ordinal}"


def _calls_so_far(messages: Messages) -> int:
    return sum(len(m.get("tool_calls") or []) for m in messages if m.get("role") == "assistant")


def parse_arguments(text: str) -> dict[str, Any] | str:
    """A call's JSON arguments as an object, or the error text the model gets back."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"error: the arguments are not valid JSON ({exc.msg} at position {exc.pos})"
    if not isinstance(value, dict):
        return "error: the arguments must be a JSON object"
    return value


async def _run_call(toolbox: ToolBox, call: ToolCall, index: int, max_calls: int) -> str:
    if index >= max_calls:
        return f"error: not run: at most {max_calls} tool calls per turn"
    arguments = parse_arguments(call.function.arguments)
    if isinstance(arguments, str):
        return f"{arguments} (tool {call.function.name})"
    return await toolbox.call(call.function.name, arguments)


def _tool_turn(call: ToolCall, result: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call.id, "name": call.function.name, "content": result}


async def chat_with_tools(
    model: ChatModel,
    messages: Messages,
    toolbox: ToolBox,
    *,
    max_rounds: int,
    max_tokens: int,
    temperature: float,
    seed: int | None = None,
    max_calls_per_round: int = MAX_CALLS_PER_ROUND,
) -> ToolLoopResult:
    """Let ``model`` call ``toolbox``'s tools for up to ``max_rounds`` turns, then answer.

    Native tool calling where the model has it, the JSON tool-request fallback otherwise (see
    the module docstring); the result has the same shape either way. Raises ``LLMError`` when a
    model call fails for good; everything a tool does wrong goes back to the model as text."""
    if max_rounds < 0:
        raise ValueError(f"max_rounds must be at least 0, got {max_rounds}")
    if model.supports_tools:
        return await _native(model, messages, toolbox, max_rounds=max_rounds, max_tokens=max_tokens,
                             temperature=temperature, seed=seed, max_calls=max_calls_per_round)
    return await _json_fallback(model, messages, toolbox, max_rounds=max_rounds, max_tokens=max_tokens,
                                temperature=temperature, seed=seed)


async def _native(model: ChatModel, messages: Messages, toolbox: ToolBox, *, max_rounds: int,
                  max_tokens: int, temperature: float, seed: int | None, max_calls: int) -> ToolLoopResult:
    history, added, rounds = list(messages), [], []
    tools = toolbox.openai_tools() or None  # an empty box: a plain request (OpenAI refuses tools: [])
    ordinal = _calls_so_far(messages)
    if tools is None:
        max_rounds = 0
    for r in range(max_rounds + 1):
        last = r == max_rounds
        # the last request still declares the tools (the history holds tool turns) but forbids them
        forbid = {"tool_choice": "none"} if last and tools is not None else {}
        completion = await model.chat(history, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                      tools=tools, **forbid)
        if not completion.tool_calls or last:
            # (a server that calls tools despite tool_choice none: the calls are dropped, the text kept)
            added.append({"role": "assistant", "content": completion.text})
            return ToolLoopResult(completion.text, completion.finish_reason, rounds, added,
                                  exhausted=last and max_rounds > 0, model_calls=r + 1)
        calls = [ToolCall(id=call_id(ordinal + i), function=ToolCallFunction(
            name=c.function.name, arguments=c.function.arguments)) for i, c in enumerate(completion.tool_calls)]
        ordinal += len(calls)
        turn = {"role": "assistant", "content": completion.text,
                "tool_calls": [c.model_dump(mode="json") for c in calls]}
        history.append(turn)
        added.append(turn)
        for i, call in enumerate(calls):
            result = await _run_call(toolbox, call, i, max_calls)
            rounds.append(ToolRound(call, result, r))
            tool_turn = _tool_turn(call, result)
            added.append(tool_turn)
            # the request gets the OpenAI tool message (no "name": not part of it)
            history.append({k: v for k, v in tool_turn.items() if k != "name"})
    raise AssertionError("unreachable: the last round always returns")


def tool_request_schema(toolbox: ToolBox, *, final_only: bool = False) -> dict[str, Any]:
    """The JSON tool request of the fallback path: ``{"action": "call", "tool", "arguments"}``
    with one alternative per tool (its name as a constant, its own argument schema), or
    ``{"action": "final", "content"}``. Properties are written in this order. Each action carries
    only its own keys, and the arguments are the tool's, not a free-form object: under
    constrained decoding a small model otherwise fills unused keys, or a free object, with
    whatever it likes until its token budget runs out. ``final_only``: the answer is the only
    action (the last round)."""
    final = {"type": "object",
             "properties": {"action": {"type": "string", "const": "final"}, "content": {"type": "string"}},
             "required": ["action", "content"], "additionalProperties": False}
    if final_only:
        return final
    calls = [{"type": "object",
              "properties": {"action": {"type": "string", "const": "call"},
                             "tool": {"type": "string", "const": t.name}, "arguments": t.parameters},
              "required": ["action", "tool", "arguments"], "additionalProperties": False}
             for t in toolbox.tools]
    return {"anyOf": [*calls, final]}


def describe_arguments(parameters: dict[str, Any]) -> str:
    """A tool's arguments as a short example object (``{"expression": string: e.g. ...}``),
    which small models follow better than the JSON schema itself (they copy the schema)."""
    props = parameters.get("properties") or {}
    if not props:
        return "{}"
    parts = []
    for name, sub in props.items():
        kind = sub.get("type", "value") if isinstance(sub, dict) else "value"
        note = f" ({sub['description']})" if isinstance(sub, dict) and sub.get("description") else ""
        parts.append(f'"{name}": {kind}{note}')
    return "{" + ", ".join(parts) + "}"


def _with_instructions(messages: Messages, toolbox: ToolBox) -> Messages:
    """``messages`` with the tool protocol and the tools appended to the system turn."""
    listing = "\n".join(f"- {t.name}: {t.description} Arguments: {describe_arguments(t.parameters)}"
                        for t in toolbox.tools)
    text = FALLBACK_INSTRUCTIONS.format(tools=listing)
    out = list(messages)
    if out and out[0].get("role") == "system":
        out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{text}".strip()}
    else:
        out.insert(0, {"role": "system", "content": text})
    return out


async def _json_fallback(model: ChatModel, messages: Messages, toolbox: ToolBox, *, max_rounds: int,
                         max_tokens: int, temperature: float, seed: int | None) -> ToolLoopResult:
    history = _with_instructions(messages, toolbox)
    added: list[dict[str, Any]] = []
    rounds: list[ToolRound] = []
    ordinal = _calls_so_far(messages)
    model_calls = 0
    for r in range(max_rounds + 1):
        last = r == max_rounds
        schema = tool_request_schema(toolbox, final_only=last)
        reply = await chat_structured(model, history, schema, name="tool_request", max_tokens=max_tokens,
                                      temperature=temperature, seed=seed, raise_call_errors=True)
        model_calls += reply.attempts
        if not reply.ok:
            finish = reply.finish_reason if reply.finish_reason == "length" else INVALID_TOOL_REQUEST
            log.debug("tool request invalid after %d attempt(s): %s", reply.attempts, reply.error)
            added.append({"role": "assistant", "content": reply.raw})
            return ToolLoopResult(reply.raw, finish, rounds, added, model_calls=model_calls)
        value = reply.value
        if value["action"] == "final":
            added.append({"role": "assistant", "content": value["content"]})
            return ToolLoopResult(value["content"], reply.finish_reason or "stop", rounds, added,
                                  exhausted=last and max_rounds > 0, model_calls=model_calls)
        call = ToolCall(id=call_id(ordinal), function=ToolCallFunction(
            name=value["tool"], arguments=json.dumps(value["arguments"], ensure_ascii=False)))
        ordinal += 1
        result = await toolbox.call(call.function.name, value["arguments"])
        rounds.append(ToolRound(call, result, r))
        added += [{"role": "assistant", "content": "", "tool_calls": [call.model_dump(mode="json")]},
                  _tool_turn(call, result)]
        fed_back = FALLBACK_RESULT.format(name=call.function.name, call_id=call.id, result=result)
        if r + 1 == max_rounds:
            fed_back += FALLBACK_LAST_ROUND
        # the model sees its own JSON and the result as a user turn: chat templates without
        # tool roles render it, and the turns keep alternating
        history += [{"role": "assistant", "content": reply.raw}, {"role": "user", "content": fed_back}]
    raise AssertionError("unreachable: the last round always returns")
