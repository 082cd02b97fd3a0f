"""Record gates that run while a unit is processed (their LLM calls are cached like all
others): tool checks, grounding in the seed, independent re-derivation, judge scores.

The gates are validators (``generate/validators``); the classes here keep the earlier
constructors (settings, models, skills by split or name) and ``check(record, seed) -> reason``
as thin wrappers over them."""

from __future__ import annotations

from agentinstruct.generate import gates_config as cfgs
from agentinstruct.generate.skills import Skill
from agentinstruct.generate.validators import RecordGate, ValidatorContext
from agentinstruct.generate.validators.judge_checks import (  # noqa: F401 - re-exported
    AGREE_SCHEMA,
    GROUNDED_SCHEMA,
    RUBRIC,
    SCORE_SCHEMA,
    STOPWORDS,
    Grounding,
    Rederive,
    checkable_answer,
    content_words,
    lexical_support,
    unanswerable_types,
)
from agentinstruct.generate.validators.judge_checks import (
    JudgeScore as JudgeScoreValidator,
)
from agentinstruct.generate.validators.tool_checks import Tools, open_sandbox  # noqa: F401 - re-exported

from agentinstruct.llm import ChatModel


def _context(skills: dict[str, Skill] | None = None, **models: ChatModel | None) -> ValidatorContext:
    return ValidatorContext(recipe=None, skills=dict(skills or {}), **models)


class ToolCheck(RecordGate):
    def __init__(self, cfg: cfgs.ToolGate, skills: dict[str, Skill]):
        super().__init__(Tools(cfg), _context(skills))
        self.cfg, self.skills, self.sandbox = cfg, skills, self.validator.sandbox


class GroundingCheck(RecordGate):
    def __init__(self, cfg: cfgs.GroundingGate, judge: ChatModel, skills: dict[str, Skill]):
        super().__init__(Grounding(cfg, judge), _context(skills, judge=judge))
        self.cfg, self.judge, self.skills = cfg, judge, skills


class RederivationCheck(RecordGate):
    def __init__(self, cfg: cfgs.RederiveGate, teacher: ChatModel, judge: ChatModel, skills: dict[str, Skill]):
        super().__init__(Rederive(cfg, teacher, judge), _context(skills, teacher=teacher, judge=judge))
        self.cfg, self.teacher, self.judge, self.skills = cfg, teacher, judge, skills


class JudgeScore(RecordGate):
    """The judge score gate; it needs no skill (any record's skill is accepted)."""

    def __init__(self, cfg: cfgs.JudgeScoreGate, judge: ChatModel):
        super().__init__(JudgeScoreValidator(cfg, judge), _context(judge=judge))
        self.cfg, self.judge = cfg, judge
