"""Steps that write the material of a pair: the transformed text, the task, a follow-up turn."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agentinstruct.generate.skills import Agent, Conversation, Instruction
from agentinstruct.generate.steps.base import LLMStep, Reply, chat, fill

TASK_SCHEMA = {
    "type": "object",
    "properties": {"task": {"type": "string", "minLength": 8, "maxLength": 600}},
    "required": ["task"],
    "additionalProperties": False,
}


def trim_to_sentence(text: str) -> str:
    """Cut a truncated generation back to its last complete sentence or line."""
    ends = [m.end() for m in re.finditer(r"[.!?](\s|$)|\n", text)]
    return text[: ends[-1]].strip() if ends else text.strip()


class TransformStep(LLMStep):
    """Content transformation: one agent rewrites the seed (free text; a reply cut by the
    token limit is trimmed back to its last whole sentence)."""

    name = "transform"
    inputs = ("text", "kind", "source", "language")
    outputs = ("text", "finish_reason")
    budget = "transform"

    def __init__(self, agent: Agent):
        self.agent = agent

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        return chat(self.agent.system, self.prompt(state))

    def prompt(self, state: Mapping[str, Any]) -> str:
        return fill(self.agent.prompt, self.require(state), self.inputs)

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        text = reply.text.strip()
        if reply.finish_reason == "length":
            text = trim_to_sentence(text)
        return {"text": text, "finish_reason": reply.finish_reason}


class InstructStep(LLMStep):
    """Seed instruction generation: one task of a taxonomy type about the text (and the
    passages shown with it, for a retrieval skill)."""

    name = "instruction"
    inputs = ("text", "type", "passages", "language")
    outputs = ("task",)
    budget = "instruction"
    schema = TASK_SCHEMA

    def __init__(self, instruction: Instruction):
        self.instruction = instruction

    def prompt(self, state: Mapping[str, Any]) -> str:
        return fill(self.instruction.prompt, self.require(state), self.inputs)

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        return chat(self.instruction.system, self.prompt(state))

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"task": reply.value["task"].strip()}


class FollowUpStep(LLMStep):
    """Multi-turn: the teacher writes the user's next message, grounded in the same text."""

    name = "follow_up"
    inputs = ("text", "task", "history", "turn", "passages", "language")
    outputs = ("task",)
    budget = "instruction"
    schema = TASK_SCHEMA

    def __init__(self, conversation: Conversation):
        self.conversation = conversation

    def prompt(self, state: Mapping[str, Any]) -> str:
        return fill(self.conversation.follow_up_prompt, self.require(state), self.inputs)

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        return chat(self.conversation.follow_up_system, self.prompt(state))

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"task": reply.value["task"].strip()}
