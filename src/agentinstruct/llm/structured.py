"""Structured output on every backend: constrained decoding or response_format where the
backend has it, then lenient extraction and a bounded re-ask. A reply that still fails comes
back as a failure carrying the raw text, never dropped silently."""

from __future__ import annotations

import functools
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


# OpenAI Structured Outputs (strict mode) accepts only a subset of JSON Schema: these keywords,
# per schema kind. Length limits on strings (minLength/maxLength), uniqueItems, allOf/not,
# patternProperties and the like are refused; our own validation after the reply
# (``validation_error``) still enforces every constraint the schema states.
_STRICT_COMMON = frozenset({"type", "description", "title", "enum", "const", "anyOf", "$ref",
                            "$defs", "definitions", "default"})
_STRICT_BY_TYPE = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "string": frozenset({"pattern", "format"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
    "integer": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
    "boolean": frozenset(),
    "null": frozenset(),
}


# Constraints that narrow values without changing the shape: strict mode refuses them, so they
# are left out of the schema sent and enforced by validating the reply instead.
VALIDATION_ONLY_KEYWORDS = frozenset({"minLength", "maxLength", "uniqueItems", "minProperties",
                                      "maxProperties"})


def without_validation_only(schema: Any) -> Any:
    """``schema`` less the ``VALIDATION_ONLY_KEYWORDS``, at every level (property names are
    data, not keywords, and are kept whatever they are called)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in VALIDATION_ONLY_KEYWORDS:
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: without_validation_only(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = without_validation_only(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [without_validation_only(sub) for sub in value]
        else:
            out[key] = value
    return out


def strict_schema_problems(schema: dict[str, Any]) -> list[str]:
    """Why ``schema`` can't be sent with ``strict: true`` to OpenAI (empty list: it can).

    The rules of Structured Outputs: the root is an object (not ``anyOf``); every object lists
    its ``properties``, names all of them in ``required`` (optional ones are a union with
    ``null``) and sets ``additionalProperties: false``; only the supported keywords appear."""
    problems: list[str] = []
    if not isinstance(schema, dict) or schema.get("type") != "object":
        problems.append("<root>: must be a schema of type object")

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            problems.append(f"{path}: not a schema object")
            return
        for key in ("$defs", "definitions"):
            for name, sub in (node.get(key) or {}).items():
                walk(sub, f"{path}/{key}/{name}")
        for i, sub in enumerate(node.get("anyOf") or []):
            walk(sub, f"{path}/anyOf/{i}")
        kinds = node.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        if not kinds and not ({"anyOf", "$ref", "enum", "const"} & node.keys()):
            problems.append(f"{path}: no type")
        allowed = set(_STRICT_COMMON)
        for kind in kinds:
            if kind not in _STRICT_BY_TYPE:
                problems.append(f"{path}: unknown type {kind!r}")
                continue
            allowed |= _STRICT_BY_TYPE[kind]
        for key in sorted(node.keys() - allowed):
            problems.append(f"{path}: keyword {key!r} is not supported in strict mode")
        if "object" in kinds:
            props = node.get("properties")
            if not isinstance(props, dict) or not props:
                problems.append(f"{path}: free-form object (no properties)")
                props = {}
            if node.get("additionalProperties") is not False:
                problems.append(f"{path}: additionalProperties must be false")
            missing = [k for k in props if k not in (node.get("required") or [])]
            if missing:
                problems.append(f"{path}: properties not in required: {missing}")
            for name, sub in props.items():
                walk(sub, f"{path}/{name}")
        if "array" in kinds:
            if "items" not in node:
                problems.append(f"{path}: array without items")
            else:
                walk(node["items"], f"{path}/items")

    walk(schema, "<root>")
    return problems


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


@functools.lru_cache(maxsize=256)
def _validator(schema_key: str) -> Any:
    """A checked validator per schema, built once: ``jsonschema.validate`` checks the schema
    against its metaschema on every call, milliseconds each, on the event loop."""
    schema = json.loads(schema_key)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validation_error(value: Any, schema: dict[str, Any]) -> str | None:
    """None when ``value`` matches ``schema``, else a one-line reason (the error
    ``jsonschema.validate`` would raise)."""
    exc = jsonschema.exceptions.best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value))
    if exc is None:
        return None
    path = "/".join(str(p) for p in exc.absolute_path) or "<root>"
    return f"{path}: {exc.message}"[:300]


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
    raise_call_errors: bool = False,
) -> StructuredResult:
    """Ask for JSON matching ``schema``; re-ask up to ``reasks`` times with the error shown.
    A failed call comes back as a failed result, or is raised (``raise_call_errors``: callers
    that must tell a transport failure from a bad reply, e.g. the tool loop)."""
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
            if raise_call_errors:
                raise
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
