"""Instruction refinement steps: the Suggester, the Editor, and the two judge steps that
decide which edits go on (``branches: best``) and whether an edit did more than reword
(``check_harder``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentinstruct.generate.skills import Refinement
from agentinstruct.generate.steps.base import LLMStep, Reply, chat, fill
from agentinstruct.generate.steps.writing import TASK_SCHEMA

from agentinstruct.llm.structured import boolean_schema

HARDER_SCHEMA = boolean_schema("harder")
# an edited passage may be longer than a task; a bound keeps a runaway reply from filling the budget
MAX_EDITED_TEXT_CHARS = 6000


def suggestions_schema(n: int) -> dict:
    """``n`` free-text suggestions: no enum, so the Suggester is guided, not limited, by the
    skill's proposal list."""
    return {
        "type": "object",
        "properties": {"suggestions": {"type": "array", "minItems": n, "maxItems": n,
                                       "items": {"type": "string", "minLength": 3, "maxLength": 300}}},
        "required": ["suggestions"],
        "additionalProperties": False,
    }


class SuggestStep(LLMStep):
    name = "suggest"
    inputs = ("text", "task", "proposals", "n", "passages", "language")
    outputs = ("suggestions",)
    budget = "suggest"

    def __init__(self, refinement: Refinement, n: int):
        self.refinement, self.n = refinement, n
        self.schema = suggestions_schema(n)

    def prompt(self, state: Mapping[str, Any]) -> str:
        return fill(self.refinement.suggester_prompt, self.require(state), self.inputs)

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        return chat(self.refinement.suggester_system, self.prompt(state))

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"suggestions": [s.strip() for s in reply.value["suggestions"]]}


class EditStep(LLMStep):
    """The Editor applies one suggestion. It sees what the instruction writer saw (the text,
    which for tool use is the API list, and the passages); with ``editor_may_change_text`` it
    returns the text too, edited or as it was."""

    name = "edit"
    inputs = ("text", "task", "suggestion", "passages", "language")
    budget = "edit"

    def __init__(self, refinement: Refinement):
        self.refinement = refinement
        self.changes_text = refinement.editor_may_change_text
        self.outputs = ("task", "text") if self.changes_text else ("task",)
        if self.changes_text:
            self.schema = {
                "type": "object",
                "properties": {"task": TASK_SCHEMA["properties"]["task"],
                               "text": {"type": "string", "minLength": 1, "maxLength": MAX_EDITED_TEXT_CHARS}},
                "required": ["task", "text"],
                "additionalProperties": False,
            }
        else:
            self.schema = TASK_SCHEMA

    def prompt(self, state: Mapping[str, Any]) -> str:
        return fill(self.refinement.editor_prompt, self.require(state), self.inputs)

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        return chat(self.refinement.editor_system, self.prompt(state))

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        out = {"task": reply.value["task"].strip()}
        if self.changes_text:
            out["text"] = reply.value["text"].strip() or state["text"]
        return out


class HarderStep(LLMStep):
    """check_harder: the judge says whether the edit made the task harder or different."""

    name = "check_harder"
    inputs = ("text", "previous_task", "task", "language")
    outputs = ("harder",)
    model = "judge"
    budget = "check"
    temperature = "answer"
    schema = HARDER_SCHEMA

    def __init__(self, refinement: Refinement):
        self.refinement = refinement

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        return chat("", fill(self.refinement.harder_prompt, self.require(state), self.inputs))

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"harder": bool(reply.value["harder"])}


class BestStep(LLMStep):
    """branches best: the judge picks the edit the next round builds on."""

    name = "pick_best"
    inputs = ("text", "task", "candidates", "language")
    outputs = ("best",)
    model = "judge"
    budget = "check"
    temperature = "answer"

    def __init__(self, refinement: Refinement, n: int):
        self.refinement = refinement
        self.schema = {"type": "object",
                       "properties": {"best": {"type": "integer", "minimum": 0, "maximum": max(n - 1, 0)}},
                       "required": ["best"], "additionalProperties": False}

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        return chat("", fill(self.refinement.best_prompt, self.require(state), self.inputs))

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        n = len(state["candidates"])
        return {"best": min(max(int(reply.value["best"]), 0), n - 1)}
