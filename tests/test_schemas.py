"""Every shipped JSON schema passes OpenAI's strict-mode rules (after the length-style limits
that strict mode refuses are left for our own validation), and the openai backend sends
``strict: true`` only for schemas that do. Backend tests use the scripted fake server."""

import asyncio
import importlib
import json
import logging
import re
from pathlib import Path

import pytest
import yaml
from fake_openai import FakeOpenAIServer, value_for_schema

from agentinstruct.llm import ModelSpec, chat_structured, create_model
from agentinstruct.llm.structured import (
    boolean_schema,
    strict_schema_problems,
    validation_error,
    without_validation_only,
)

REPO = Path(__file__).parent.parent
CONSTANT = re.compile(r"^([A-Z][A-Z0-9_]*_SCHEMA)\s*=", re.MULTILINE)


def code_schemas() -> dict[str, dict]:
    """Every module-level ``*_SCHEMA`` constant in the stage folders, found by reading the
    source (so a new constant is covered without editing this test), plus the builders."""
    from agentinstruct.generate.steps.refine import suggestions_schema
    from agentinstruct.generate.steps.writing import TASK_SCHEMA

    found = {}
    for folder in ("generate", "evaluate", "train", "src/agentinstruct"):
        for path in sorted((REPO / folder).rglob("*.py")):
            names = CONSTANT.findall(path.read_text())
            if not names:
                continue
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[1:] if rel.parts[0] == "src" else ("agentinstruct", *rel.parts)
            module = importlib.import_module(".".join(parts))
            for name in names:
                found[f"{'.'.join(parts)}.{name}"] = getattr(module, name)
    assert "agentinstruct.generate.steps.writing.TASK_SCHEMA" in found and found[
        "agentinstruct.generate.steps.writing.TASK_SCHEMA"] is TASK_SCHEMA
    found["suggestions_schema(3)"] = suggestions_schema(3)
    found["boolean_schema('x')"] = boolean_schema("x")
    return found


def skill_schemas() -> dict[str, dict]:
    out = {}
    for path in sorted((REPO / "recipes" / "skills").glob("*.yaml")):
        schema = (yaml.safe_load(path.read_text()).get("answer") or {}).get("json_schema")
        if schema:
            out[path.name] = schema
    return out


def test_every_shipped_schema_qualifies_for_strict_mode():
    schemas = {**code_schemas(), **skill_schemas()}
    assert "tool_use.yaml" in schemas and len(schemas) >= 8, sorted(schemas)
    problems = {name: strict_schema_problems(without_validation_only(s)) for name, s in schemas.items()}
    assert all(not p for p in problems.values()), {n: p for n, p in problems.items() if p}


def test_length_limits_stay_in_our_validation():
    from agentinstruct.generate.flows import TASK_SCHEMA

    sent = without_validation_only(TASK_SCHEMA)
    assert "minLength" not in json.dumps(sent) and "minLength" in json.dumps(TASK_SCHEMA)
    assert validation_error({"task": "short"}, TASK_SCHEMA) is not None
    # a property that happens to be called like a keyword is data and is kept
    odd = {"type": "object", "properties": {"maxLength": {"type": "integer"}}, "required": ["maxLength"],
           "additionalProperties": False}
    assert without_validation_only(odd) == odd and strict_schema_problems(odd) == []


@pytest.mark.parametrize("schema, problem", [
    ({"type": "array", "items": {"type": "string"}}, "<root>: must be a schema of type object"),
    ({"type": "object", "properties": {"a": {"type": "object"}}, "required": ["a"], "additionalProperties": False},
     "<root>/a: free-form object (no properties)"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
     "<root>: additionalProperties must be false"),
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"],
      "additionalProperties": False}, "<root>: properties not in required: ['b']"),
    ({"type": "object", "properties": {"a": {"type": "string", "minLength": 2}}, "required": ["a"],
      "additionalProperties": False}, "<root>/a: keyword 'minLength' is not supported in strict mode"),
    ({"type": "object", "properties": {"a": {"type": "array"}}, "required": ["a"], "additionalProperties": False},
     "<root>/a: array without items"),
    ({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}, "required": ["a"],
      "additionalProperties": False}, "<root>/a: keyword 'allOf' is not supported in strict mode"),
])
def test_strict_rules_are_enforced(schema, problem):
    assert problem in strict_schema_problems(schema)


def test_optional_field_as_null_union_qualifies():
    schema = {"type": "object", "additionalProperties": False, "required": ["a", "b"],
              "properties": {"a": {"type": ["string", "null"]},
                             "b": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}}}
    assert strict_schema_problems(schema) == []


def _sent_formats(schema: dict, reply: str | None = None) -> tuple[list[dict], object]:
    def responder(body):
        return reply if reply is not None else json.dumps(value_for_schema(schema, "s"))

    with FakeOpenAIServer(responder=responder) as server:
        model = create_model(ModelSpec(backend="openai", model="m", base_url=server.base_url,
                                       backoff_base_s=0.01, timeout_s=5))

        async def go():
            try:
                return await chat_structured(model, [{"role": "user", "content": "hi"}], schema, reasks=0)
            finally:
                await model.aclose()

        res = asyncio.run(go())
        return [r["response_format"] for r in server.requests], res


def test_backend_sends_strict_only_for_qualifying_schemas(caplog):
    from agentinstruct.generate.flows import TASK_SCHEMA

    (sent,), res = _sent_formats(TASK_SCHEMA, reply=json.dumps({"task": "Which river drains the lake?"}))
    assert res.ok and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"] == without_validation_only(TASK_SCHEMA)

    free = {"type": "object", "properties": {"args": {"type": "object"}}, "required": ["args"]}
    with caplog.at_level(logging.DEBUG, logger="agentinstruct.llm.openai_backend"):
        (sent,), res = _sent_formats(free, reply=json.dumps({"args": {"x": 1}}))
    assert res.ok and sent["json_schema"]["strict"] is False and sent["json_schema"]["schema"] == free
    assert any("strict false" in r.getMessage() and "free-form object" in r.getMessage() for r in caplog.records)


def test_limits_left_out_of_the_request_are_still_enforced():
    from agentinstruct.generate.flows import TASK_SCHEMA

    (sent,), res = _sent_formats(TASK_SCHEMA, reply=json.dumps({"task": "short"}))
    assert sent["json_schema"]["strict"] is True
    assert not res.ok and "too short" in res.error
