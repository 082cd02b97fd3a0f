"""Validators in pure Python (cost 0): they look at the pair's text only."""

from __future__ import annotations

import json

from agentinstruct.generate.validators.base import PURE, Candidate, Rejection, ValidatorContext, register

from agentinstruct.text import normalise


class TextValidator:
    """Base of the stateless validators: built from any context, ``reason`` says why not."""

    name = ""
    cost = PURE

    def __init__(self, ctx: ValidatorContext | None = None):
        self.ctx = ctx

    def reason(self, c: Candidate) -> str | None:
        raise NotImplementedError

    async def check(self, c: Candidate) -> Rejection | None:
        reason = self.reason(c)
        return Rejection(self.name, reason) if reason else None


@register("non_empty")
class NonEmpty(TextValidator):
    def reason(self, c: Candidate) -> str | None:
        return None if len(c.answer.strip()) >= c.skill.answer.min_chars else "empty answer"


@register("not_truncated")
class NotTruncated(TextValidator):
    def reason(self, c: Candidate) -> str | None:
        return "answer truncated (finish_reason=length)" if c.finish_reason == "length" else None


@register("format")
class Format(TextValidator):
    def reason(self, c: Candidate) -> str | None:
        if c.skill.answer.format == "json":
            try:
                json.loads(c.answer)
            except json.JSONDecodeError:
                return "answer is not valid JSON"
        return None


@register("contains_target")
class ContainsTarget(TextValidator):
    """An answer-first task was built around a span of the text: the answer must state it."""

    def reason(self, c: Candidate) -> str | None:
        if c.target is None or f" {normalise(c.target)} " in f" {normalise(c.answer)} ":
            return None
        return f"answer does not state the target (span {c.target!r})"


@register("task_changed")
class TaskChanged(TextValidator):
    def reason(self, c: Candidate) -> str | None:
        if c.previous_task is not None and normalise(c.previous_task) == normalise(c.task):
            return "editor returned the task unchanged"
        return None


@register("declines_without_answer")
class DeclinesWithoutAnswer(TextValidator):
    """Retrieval tasks whose passages all leave the answer out (passages, no answer passage):
    the answer must say the passages do not hold it (one of the skill's ``answer.no_answer_markers``)."""

    def reason(self, c: Candidate) -> str | None:
        if not c.passages or c.answer_passage_id is not None:
            return None
        text = c.answer.casefold()
        if any(m.casefold() in text for m in c.skill.answer.no_answer_markers):
            return None
        return "no passage holds the answer, but the answer does not say so"
