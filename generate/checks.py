"""The validation checks a skill names in ``answer.checks``. Each returns a rejection reason,
or None when the pair passes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from agentinstruct.generate.skills import Skill, render

from agentinstruct.llm import ChatModel, chat_structured
from agentinstruct.llm.structured import boolean_schema

ANSWERABLE_SCHEMA = boolean_schema("answerable")


@dataclass
class Candidate:
    """A finished pair with what the checks need to judge it."""

    skill: Skill
    text: str  # the transformed text the task is about
    seed_text: str
    task: str
    previous_task: str | None  # the task before the last edit (refined versions only)
    instruction_type: str
    answer: str
    finish_reason: str
    target: str | None = None  # answer_first tasks: the span of the text the answer must state


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def check_non_empty(c: Candidate) -> str | None:
    return None if len(c.answer.strip()) >= c.skill.answer.min_chars else "empty answer"


def check_not_truncated(c: Candidate) -> str | None:
    return "answer truncated (finish_reason=length)" if c.finish_reason == "length" else None


def check_format(c: Candidate) -> str | None:
    if c.skill.answer.format == "json":
        try:
            json.loads(c.answer)
        except json.JSONDecodeError:
            return "answer is not valid JSON"
    return None


def check_contains_target(c: Candidate) -> str | None:
    """An answer-first task was built around a span of the text: the answer must state it."""
    if c.target is None:
        return None
    if f" {_norm(c.target)} " in f" {_norm(c.answer)} ":
        return None
    return f"answer does not state the target (span {c.target!r})"


def check_task_changed(c: Candidate) -> str | None:
    if c.previous_task is not None and _norm(c.previous_task) == _norm(c.task):
        return "editor returned the task unchanged"
    return None


async def check_answerable(c: Candidate, judge: ChatModel, max_tokens: int) -> str | None:
    prompt = render(c.skill.answer.answerable_prompt, text=c.text, task=c.task)
    res = await chat_structured(judge, [{"role": "user", "content": prompt}], ANSWERABLE_SCHEMA,
                                name="answerable", max_tokens=max_tokens, reasks=1)
    if not res.ok:
        return f"answerability check failed: {res.error}"
    return None if res.value["answerable"] else "not answerable from the text (judge)"


SYNC_CHECKS = {
    "non_empty": check_non_empty,
    "not_truncated": check_not_truncated,
    "format": check_format,
    "task_changed": check_task_changed,
    "contains_target": check_contains_target,
}


async def run_checks(c: Candidate, judge: ChatModel, check_max_tokens: int,
                     skip: list[str]) -> tuple[str, str] | None:
    """(check name, reason) of the first failing check, or None. Cheap checks run first."""
    checks = [n for n in c.skill.answer.checks if n not in skip]
    for name in checks:
        if name in SYNC_CHECKS:
            reason = SYNC_CHECKS[name](c)
            if reason:
                return name, reason
    if "answerable" in checks:
        reason = await check_answerable(c, judge, check_max_tokens)
        if reason:
            return "answerable", reason
    return None
