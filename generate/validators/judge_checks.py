"""Validators that ask a model (cost 2): answerability, grounding in the seed, independent
re-derivation, judge scores. Their prompts are templates (``validators/prompts.py``) a recipe
or skill may override; their calls go through the run's call cache like every other."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from agentinstruct.generate.skills import Skill, render
from agentinstruct.generate.validators.base import LLM, Candidate, Rejection, ValidatorContext, register
from agentinstruct.generate.validators.prompts import shipped_prompt

from agentinstruct.llm import ChatModel, LLMError, chat_structured, conversation
from agentinstruct.llm.structured import boolean_schema
from agentinstruct.text import ENGLISH_STOPWORDS as STOPWORDS  # noqa: F401 - re-exported
from agentinstruct.text import content_words as text_content_words

if TYPE_CHECKING:
    from agentinstruct.generate import gates_config as cfgs


class JudgeValidator:
    """A validator that renders one prompt template and reads a structured reply."""

    name = ""
    cost = LLM
    prompt_name = ""  # the shipped template, recipes/prompts/<prompt_name>.jinja

    def template(self, override: str | None) -> str:
        return override if override is not None else shipped_prompt(self.prompt_name)

    def reject(self, reason: str | None) -> Rejection | None:
        return Rejection(self.name, reason) if reason else None


ANSWERABLE_SCHEMA = boolean_schema("answerable")


@register("answerable")
class Answerable(JudgeValidator):
    """The judge says whether the task can be done from the text alone (the skill's
    ``answer.answerable_prompt`` replaces the shipped prompt)."""

    prompt_name = "answerable"

    def __init__(self, judge: ChatModel, max_tokens: int):
        self.judge, self.max_tokens = judge, max_tokens

    @classmethod
    def from_context(cls, ctx: ValidatorContext) -> Answerable:
        return cls(ctx.judge, ctx.max_tokens)

    async def check(self, c: Candidate) -> Rejection | None:
        prompt = render(self.template(c.skill.answer.answerable_prompt), text=c.text, task=c.task,
                        language=c.language)
        res = await chat_structured(self.judge, [{"role": "user", "content": prompt}], ANSWERABLE_SCHEMA,
                                    name="answerable", max_tokens=self.max_tokens, reasks=1)
        if not res.ok:
            return self.reject(f"answerability check failed: {res.error}")
        return None if res.value["answerable"] else self.reject("not answerable from the text (judge)")


def content_words(text: str, language: str | None = None) -> list[str]:
    """The words a lexical comparison counts (stop words of ``language`` dropped; see agentinstruct.text)."""
    return text_content_words(text, language)


def lexical_support(answer: str, source: str, language: str | None = None) -> float:
    """Share of the answer's content words that occur in the source (1.0 for an empty answer)."""
    words = content_words(answer, language)
    if not words:
        return 1.0
    src = set(content_words(source, language))
    return sum(w in src for w in words) / len(words)


def applies(skills: list[str] | None, skill: Skill) -> bool:
    """A gate's ``skills`` setting (names or splits; None: all) covers ``skill``."""
    return skills is None or skill.name in skills or skill.split in skills


GROUNDED_SCHEMA = boolean_schema("supported")


@register("grounding")
class Grounding(JudgeValidator):
    """Answers from document seeds must be supported by the seed itself (a transformed text can
    invent facts). Extractive answers pass a cheap lexical check; the rest go to the judge."""

    prompt_name = "grounding"

    def __init__(self, cfg: cfgs.GroundingGate, judge: ChatModel):
        self.cfg, self.judge = cfg, judge

    @classmethod
    def from_context(cls, ctx: ValidatorContext) -> Grounding:
        return cls(ctx.gates.grounding, ctx.judge)

    async def check(self, c: Candidate) -> Rejection | None:
        if c.seed.kind != "text" or not applies(self.cfg.skills, c.skill):
            return None
        support = lexical_support(c.answer, c.seed.text, c.seed.language)
        if support >= self.cfg.lexical_support:
            return None
        if not self.cfg.judge:
            return self.reject(f"answer not supported by the source document (lexical support {support:.2f})")
        prompt = render(self.template(self.cfg.prompt), source=c.seed.text, task=c.task, answer=c.answer,
                        language=c.language)
        res = await chat_structured(self.judge, [{"role": "user", "content": prompt}], GROUNDED_SCHEMA,
                                    name="grounding", max_tokens=self.cfg.max_tokens, reasks=1)
        if not res.ok:
            return self.reject(f"grounding check failed: {res.error}")
        return None if res.value["supported"] else self.reject("answer not supported by the source document (judge)")


AGREE_SCHEMA = boolean_schema("agree")
_LETTER = re.compile(r"\(([A-D])\)|\b([A-D])\)|answer is \(?([A-D])\b")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def checkable_answer(text: str, fmt: str) -> Any:
    """What can be compared exactly: tool-call names, an MCQ letter, or a final number."""
    if fmt == "json":
        try:
            return ("calls", sorted(c.get("name", "") for c in json.loads(text).get("calls", [])))
        except (ValueError, AttributeError, TypeError):
            return None
    tail = text.strip().splitlines()[-1] if text.strip() else ""
    m = _LETTER.search(tail)
    if m:
        return ("letter", next(g for g in m.groups() if g))
    nums = _NUMBER.findall(tail)
    if nums:
        return ("number", float(nums[-1].replace(",", "")))
    return None


def unanswerable_types(skill: Skill) -> set[str]:
    """Types built to be unanswerable are not re-derived (any refusal agrees)."""
    return {t.name for t in skill.instruction.types if "answerable" in t.skip_checks}


@register("rederive")
class Rederive(JudgeValidator):
    """A second teacher call answers the final instruction without seeing the first answer;
    exact comparison where the answer is checkable, a judge call otherwise."""

    prompt_name = "rederive"

    def __init__(self, cfg: cfgs.RederiveGate, teacher: ChatModel, judge: ChatModel):
        self.cfg, self.teacher, self.judge = cfg, teacher, judge

    @classmethod
    def from_context(cls, ctx: ValidatorContext) -> Rederive:
        return cls(ctx.gates.rederive, ctx.teacher, ctx.judge)

    async def check(self, c: Candidate) -> Rejection | None:
        skill = c.skill
        if not applies(self.cfg.skills, skill) or c.instruction_type in unanswerable_types(skill):
            return None
        policy = skill.answer
        system = f"{policy.system} {policy.step_by_step_hint}".strip() if policy.step_by_step else policy.system
        user = c.user
        if policy.context_template:  # closed-book skill: the teacher answered from the seed text
            user = render(policy.context_template, text=c.seed.text, task=c.task, target=None, language=c.language)
        try:
            second = await self.teacher.chat(conversation(system, user), max_tokens=self.cfg.max_tokens,
                                             temperature=self.cfg.temperature, seed=1)
        except LLMError as exc:
            return self.reject(f"re-derivation failed: {exc}")
        a, b = checkable_answer(c.answer, policy.format), checkable_answer(second.text, policy.format)
        if a is not None and b is not None and a[0] == b[0]:
            return None if a == b else self.reject(f"re-derivation disagrees: {a[1]} vs {b[1]}")
        prompt = render(self.template(self.cfg.prompt), task=c.task, first=c.answer, second=second.text,
                        language=c.language)
        res = await chat_structured(self.judge, [{"role": "user", "content": prompt}], AGREE_SCHEMA, name="agree",
                                    max_tokens=self.cfg.judge_max_tokens, reasks=1)
        if not res.ok:
            return self.reject(f"re-derivation judge failed: {res.error}")
        return None if res.value["agree"] else self.reject("re-derivation disagrees (judge)")


SCORE_SCHEMA = {
    "type": "object",
    "properties": {
        "correctness": {"type": "integer", "minimum": 1, "maximum": 10},
        "instruction_following": {"type": "integer", "minimum": 1, "maximum": 10},
        "complexity": {"type": "integer", "minimum": 1, "maximum": 10},
        "helpfulness": {"type": "integer", "minimum": 1, "maximum": 10},
        "rationale": {"type": "string", "maxLength": 300},
    },
    "required": ["correctness", "instruction_following", "complexity", "helpfulness", "rationale"],
    "additionalProperties": False,
}
RUBRIC = ("correctness", "instruction_following", "complexity", "helpfulness")


@register("judge_score")
class JudgeScore(JudgeValidator):
    """The judge rates the pair; the mean of the rubric goes to ``scores["judge"]`` (kept pairs
    too) and rejects below ``min_score``. An unparseable reply keeps the pair, unscored."""

    prompt_name = "judge_score"

    def __init__(self, cfg: cfgs.JudgeScoreGate, judge: ChatModel):
        self.cfg, self.judge = cfg, judge

    @classmethod
    def from_context(cls, ctx: ValidatorContext) -> JudgeScore:
        return cls(ctx.gates.judge_score, ctx.scorer or ctx.judge)

    async def check(self, c: Candidate) -> Rejection | None:
        prompt = render(self.template(self.cfg.prompt), user=c.user, answer=c.answer, language=c.language)
        res = await chat_structured(self.judge, [{"role": "user", "content": prompt}], SCORE_SCHEMA,
                                    name="score", max_tokens=self.cfg.max_tokens, reasks=1)
        if not res.ok:
            c.judge_rationale = f"unparseable judge reply: {res.error}"
            return None  # an unscored pair is kept (judge_score -1) and counted in the summary
        score = sum(res.value[k] for k in RUBRIC) / len(RUBRIC)
        c.scores["judge"] = score
        c.judge_rationale = res.value["rationale"]
        if self.cfg.min_score is not None and score < self.cfg.min_score:
            return self.reject(f"judge score {score:.1f} below minimum {self.cfg.min_score}")
        return None
