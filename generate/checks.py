"""The checks a skill names in ``answer.checks``, in the form the flows call them today.

The checks themselves are validators (``generate/validators``: one registry for a skill's checks
and a recipe's gates); this module keeps the earlier entry points as thin wrappers over them:
:class:`Candidate` (the flows' positional form), ``check_<name>(c)`` and :func:`run_checks`."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentinstruct.generate import validators as v
from agentinstruct.generate.skills import Skill
from agentinstruct.generate.validators.judge_checks import ANSWERABLE_SCHEMA  # noqa: F401 - re-exported

from agentinstruct.llm import ChatModel
from agentinstruct.records import Seed


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
    language: str = "English"  # the language name the pair is written in (templates' ``language``)
    passages: list = field(default_factory=list)  # retrieval skills: the passages shown (retrieval.Passage)
    answer_passage_id: str | None = None  # the passage holding the answer; None with passages: none does

    def to_candidate(self) -> v.Candidate:
        """The validators' candidate (its seed holds only the seed text)."""
        return v.Candidate(self.skill, Seed(id="", text=self.seed_text, source=""), self.text, self.task,
                           self.previous_task, self.instruction_type, self.answer, self.finish_reason,
                           self.target, passages=list(self.passages), answer_passage_id=self.answer_passage_id,
                           language=self.language)


def _text_check(name: str):
    validator = v.REGISTRY[name]()

    def check(c: Candidate) -> str | None:
        return validator.reason(c.to_candidate())

    check.__name__ = check.__qualname__ = f"check_{name}"
    check.__doc__ = validator.__doc__
    return check


check_non_empty = _text_check("non_empty")
check_not_truncated = _text_check("not_truncated")
check_format = _text_check("format")
check_contains_target = _text_check("contains_target")
check_declines_without_answer = _text_check("declines_without_answer")
check_task_changed = _text_check("task_changed")


async def check_answerable(c: Candidate, judge: ChatModel, max_tokens: int) -> str | None:
    rejection = await v.judge_checks.Answerable(judge, max_tokens).check(c.to_candidate())
    return rejection.reason if rejection else None


async def run_checks(c: Candidate, judge: ChatModel, check_max_tokens: int,
                     skip: list[str]) -> tuple[str, str] | None:
    """(check name, reason) of the first failing check of the skill, or None; cheapest first
    (an LLM check is not called when a cheaper one rejected)."""
    ctx = v.ValidatorContext(recipe=None, judge=judge, check_max_tokens=check_max_tokens)
    rejection = await v.first_rejection(v.skill_validators(c.skill, ctx, skip), c.to_candidate())
    return (rejection.validator, rejection.reason) if rejection else None
