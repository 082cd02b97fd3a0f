"""The answer step: the teacher answers the task (or the latest follow-up turn), as free
text, as JSON matching the skill's schema, or after calling tools (``answer.tools``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agentinstruct.generate.skills import Answer, Instruction
from agentinstruct.generate.steps.base import LLMStep, Reply, fill


class AnswerStep(LLMStep):
    """``history``: the teacher's view of the earlier turns (empty on the first turn). The
    first user turn is what the student sees (``instruction.user_template``) unless the skill
    gives the teacher more (``answer.context_template``, closed-book skills); later user turns
    are the follow-up messages themselves."""

    name = "answer"
    inputs = ("text", "task", "target", "passages", "language", "history")
    outputs = ("answer", "finish_reason")
    budget = "answer"
    temperature = "answer"

    def __init__(self, answer: Answer, instruction: Instruction):
        self.policy, self.instruction = answer, instruction
        self.schema = answer.json_schema if answer.format == "json" and answer.json_schema else None
        self.tools = list(answer.tools)
        self.max_tool_rounds = answer.max_tool_rounds

    @property
    def system(self) -> str:
        system = self.policy.system
        if self.policy.step_by_step:
            system = f"{system} {self.policy.step_by_step_hint}".strip()
        return system

    def user_turn(self, state: Mapping[str, Any]) -> str:
        """The first user turn of the training pair (the student's view)."""
        return fill(self.instruction.user_template, state, ("text", "task", "passages", "language"))

    def teacher_turn(self, state: Mapping[str, Any]) -> str:
        """What the teacher is shown for the first turn."""
        if self.policy.context_template:
            return fill(self.policy.context_template, state, ("text", "task", "target", "passages", "language"))
        return self.user_turn(state)

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        s = self.require(state)
        messages = [{"role": "system", "content": self.system}] if self.system else []
        if not s["history"]:
            return messages + [{"role": "user", "content": self.teacher_turn(s)}]
        return messages + list(s["history"]) + [{"role": "user", "content": s["task"]}]

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        answer = json.dumps(reply.value, ensure_ascii=False) if self.schema else reply.text.strip()
        return {"answer": answer, "finish_reason": reply.finish_reason}
