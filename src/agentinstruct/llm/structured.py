"""Structured output on every backend: constrained decoding or response_format where the
backend has it, then lenient extraction and a bounded re-ask. A reply that still fails comes
back as a failure carrying the raw text, never dropped silently."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from agentinstruct.llm.base import ChatModel, LLMError, Messages, json_schema_format

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def boolean_schema(key: str) -> dict[str, Any]:
    """``{"<key>": true|false}`` and nothing else: the shape of every yes/no judge question."""
    return {"type": "object", "properties": {key: {"type": "boolean"}}, "required": [key],
            "additionalProperties": False}


def extract_json(text: str) -> Any:
    """The first JSON value in ``text``: the whole text, a fenced block, or the first balanced
    object/array. Raises ``ValueError`` when there is none."""
    stripped = text.strip()
    candidates = [stripped] + [m.group(1).strip() for m in _FENCE.finditer(text)]
    for cand in candidates:
        try:
            return json.loads(cand)
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(text, i)
                return value
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object or array found in the reply")


def validation_error(value: Any, schema: dict[str, Any]) -> str | None:
    """None when ``value`` matches ``schema``, else a one-line reason."""
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        return f"{path}: {exc.message}"[:300]
    return None


def parse_structured(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    try:
        value = extract_json(text)
    except ValueError as exc:
        return None, str(exc)
    return value, validation_error(value, schema)


@dataclass
class StructuredResult:
    ok: bool
    value: Any
    raw: str
    error: str | None = None
    attempts: int = 1
    finish_reason: str = ""


async def chat_structured(
    model: ChatModel,
    messages: Messages,
    schema: dict[str, Any],
    *,
    name: str = "reply",
    max_tokens: int = 256,
    temperature: float = 0.0,
    reasks: int = 1,
    seed: int | None = None,
) -> StructuredResult:
    """Ask for JSON matching ``schema``; re-ask up to ``reasks`` times with the error shown."""
    history = list(messages)
    raw, error = "", None
    finish = ""
    for attempt in range(reasks + 1):
        try:
            completion = await model.chat(
                history,
                max_tokens=max_tokens,
                temperature=temperature,
                response_format=json_schema_format(schema, name),
                seed=seed,
            )
        except LLMError as exc:
            return StructuredResult(False, None, raw, f"call failed: {exc}", attempt + 1)
        raw, finish = completion.text, completion.finish_reason
        value, error = parse_structured(raw, schema)
        if error is None:
            return StructuredResult(True, value, raw, None, attempt + 1, finish)
        history = history + [
            {"role": "assistant", "content": raw},
            {
                "role": "user",
                "content": f"That reply is not valid: {error}. Reply again with only a JSON value "
                f"matching this schema: {json.dumps(schema)}",
            },
        ]
    return StructuredResult(False, None, raw, error, reasks + 1, finish)
