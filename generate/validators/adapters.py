"""Validators over finished records: a record and its seed as a :class:`Candidate`, and the
``check(record, seed) -> reason | None`` form the engine's per-record gates have."""

from __future__ import annotations

from typing import Any

from agentinstruct.generate.validators.base import Candidate, ValidatorContext

from agentinstruct.language import language_name
from agentinstruct.records import Record, Seed


def candidate_from_record(record: Record, seed: Seed, ctx: ValidatorContext) -> Candidate:
    """The candidate a finished record stands for. Its ``text`` is the seed text (a record does
    not keep the transformed text); passages and tool rounds come along where the record has them.
    A context without skills (a gate that needs none, e.g. judge_score) leaves ``skill`` None."""
    messages = [m.model_dump() for m in record.messages]
    answers = [m.content for m in record.messages if m.role == "assistant"]
    return Candidate(
        skill=ctx.skill(record.skill) if ctx.skills else None, seed=seed, text=seed.text, task=record.instruction, previous_task=None,
        instruction_type=record.instruction_type, answer=answers[-1] if answers else "", finish_reason="stop",
        target=record.answer_span or None, messages=messages, tool_trace=list(getattr(record, "tool_trace", []) or []),
        language=language_name(record.language))


class RecordGate:
    """A validator run on finished records (the engine's per-record gate protocol). What the
    validator learns about a kept pair (``scores``, ``judge_rationale``) goes onto the record."""

    def __init__(self, validator: Any, ctx: ValidatorContext):
        self.validator, self.ctx = validator, ctx
        self.name, self.cost = validator.name, validator.cost

    async def check(self, record: Record, seed: Seed) -> str | None:
        c = candidate_from_record(record, seed, self.ctx)
        rejection = await self.validator.check(c)
        record.scores.update(c.scores)
        if c.judge_rationale:
            record.judge_rationale = c.judge_rationale
        return rejection.reason if rejection else None
