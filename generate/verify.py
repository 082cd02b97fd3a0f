"""Record gates that run while a unit is processed (their LLM calls are cached like all
others): tool checks, grounding in the seed, independent re-derivation, judge scores."""

from __future__ import annotations

import re
from typing import Any

from agentinstruct.generate import gates_config as cfgs
from agentinstruct.generate.skills import Skill
from agentinstruct.generate.tools import check_arithmetic, check_code, check_tool_calls

from agentinstruct.llm import ChatModel, LLMError, chat_structured, conversation
from agentinstruct.llm.structured import boolean_schema
from agentinstruct.records import Record, Seed

STOPWORDS = frozenset(
    "the a an and or of to in on at for by with from is are was were be been it its this that these those "
    "as not no yes can could should would will which who whom what when where why how than then there "
    "their they them he she his her we you your our i me my do does did has have had so such also into "
    "about over under more most less only other some any each all both".split()
)


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS and len(w) > 1]


def lexical_support(answer: str, source: str) -> float:
    """Share of the answer's content words that occur in the source (1.0 for an empty answer)."""
    words = content_words(answer)
    if not words:
        return 1.0
    src = set(content_words(source))
    return sum(w in src for w in words) / len(words)


def _applies(skills: list[str] | None, record: Record, skill: Skill) -> bool:
    return skills is None or record.skill in skills or skill.name in skills


class ToolCheck:
    name = "tools"

    def __init__(self, cfg: cfgs.ToolGate, skills: dict[str, Skill]):
        self.cfg, self.skills = cfg, skills

    async def check(self, record: Record, seed: Seed) -> str | None:
        answer = record.messages[-1].content
        skill = self.skills[record.skill]
        if self.cfg.tool_calls and skill.answer.format == "json" and "calls" in (
                (skill.answer.json_schema or {}).get("properties", {})):
            reason = check_tool_calls(answer, record.messages[-2].content, record.instruction_type)
            if reason:
                return reason
        if self.cfg.calculator and (reason := check_arithmetic(answer)):
            return reason
        if self.cfg.sandbox and (reason := check_code(answer, self.cfg.sandbox_timeout_s)):
            return reason
        return None


GROUNDED_SCHEMA = boolean_schema("supported")
GROUNDING_PROMPT = """Source document:
{source}

Task:
{task}

Answer:
{answer}

Is every factual claim in the answer supported by the source document? Reply in JSON with key "supported" (true or false)."""


class GroundingCheck:
    """Answers from document seeds must be supported by the seed itself (a transformed text can
    invent facts). Extractive answers pass a cheap lexical check; the rest go to the judge."""

    name = "grounding"

    def __init__(self, cfg: cfgs.GroundingGate, judge: ChatModel, skills: dict[str, Skill]):
        self.cfg, self.judge, self.skills = cfg, judge, skills

    async def check(self, record: Record, seed: Seed) -> str | None:
        if seed.kind != "text" or not _applies(self.cfg.skills, record, self.skills[record.skill]):
            return None
        answer = record.messages[-1].content
        support = lexical_support(answer, seed.text)
        if support >= self.cfg.lexical_support:
            return None
        if not self.cfg.judge:
            return f"answer not supported by the source document (lexical support {support:.2f})"
        res = await chat_structured(self.judge, [{"role": "user", "content": GROUNDING_PROMPT.format(
            source=seed.text, task=record.instruction, answer=answer)}], GROUNDED_SCHEMA,
            name="grounding", max_tokens=self.cfg.max_tokens, reasks=1)
        if not res.ok:
            return f"grounding check failed: {res.error}"
        return None if res.value["supported"] else "answer not supported by the source document (judge)"


AGREE_SCHEMA = boolean_schema("agree")
AGREE_PROMPT = """Task:
{task}

Answer 1:
{a}

Answer 2:
{b}

Do the two answers give the same final answer to the task (wording may differ)? Reply in JSON with key "agree" (true or false)."""
_LETTER = re.compile(r"\(([A-D])\)|\b([A-D])\)|answer is \(?([A-D])\b")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def checkable_answer(text: str, fmt: str) -> Any:
    """What can be compared exactly: tool-call names, an MCQ letter, or a final number."""
    if fmt == "json":
        import json

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


class RederivationCheck:
    """A second teacher call answers the final instruction without seeing the first answer;
    exact comparison where the answer is checkable, a judge call otherwise."""

    name = "rederive"

    def __init__(self, cfg: cfgs.RederiveGate, teacher: ChatModel, judge: ChatModel, skills: dict[str, Skill]):
        self.cfg, self.teacher, self.judge, self.skills = cfg, teacher, judge, skills

    async def check(self, record: Record, seed: Seed) -> str | None:
        skill = self.skills[record.skill]
        if not _applies(self.cfg.skills, record, skill):
            return None
        if record.instruction_type in unanswerable_types(skill):
            return None
        policy = skill.answer
        system = f"{policy.system} {policy.step_by_step_hint}".strip() if policy.step_by_step else policy.system
        user = record.messages[-2].content
        if policy.context_template:  # closed-book skill: the teacher answered from the seed text
            from agentinstruct.generate.skills import render

            user = render(policy.context_template, text=seed.text, task=record.instruction, target=None)
        convo = conversation(system, user)
        try:
            second = await self.teacher.chat(convo, max_tokens=self.cfg.max_tokens,
                                             temperature=self.cfg.temperature, seed=1)
        except LLMError as exc:
            return f"re-derivation failed: {exc}"
        first = record.messages[-1].content
        a, b = checkable_answer(first, policy.format), checkable_answer(second.text, policy.format)
        if a is not None and b is not None and a[0] == b[0]:
            return None if a == b else f"re-derivation disagrees: {a[1]} vs {b[1]}"
        res = await chat_structured(self.judge, [{"role": "user", "content": AGREE_PROMPT.format(
            task=record.instruction, a=first, b=second.text)}], AGREE_SCHEMA, name="agree",
            max_tokens=self.cfg.judge_max_tokens, reasks=1)
        if not res.ok:
            return f"re-derivation judge failed: {res.error}"
        return None if res.value["agree"] else "re-derivation disagrees (judge)"


def unanswerable_types(skill: Skill) -> set[str]:
    """Types built to be unanswerable are not re-derived (any refusal agrees)."""
    return {t.name for t in skill.instruction.types if "answerable" in t.skip_checks}


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
SCORE_PROMPT = """Rate this instruction-response pair from 1 to 10 on correctness, instruction following, \
complexity of the task, and helpfulness, with a one-sentence rationale. Reply in JSON.

Instruction:
{user}

Response:
{answer}"""
RUBRIC = ("correctness", "instruction_following", "complexity", "helpfulness")


class JudgeScore:
    name = "judge_score"

    def __init__(self, cfg: cfgs.JudgeScoreGate, judge: ChatModel):
        self.cfg, self.judge = cfg, judge

    async def check(self, record: Record, seed: Seed) -> str | None:
        res = await chat_structured(self.judge, [{"role": "user", "content": SCORE_PROMPT.format(
            user=record.messages[-2].content, answer=record.messages[-1].content)}], SCORE_SCHEMA,
            name="score", max_tokens=self.cfg.max_tokens, reasks=1)
        if not res.ok:
            record.judge_rationale = f"unparseable judge reply: {res.error}"
            return None  # an unscored pair is kept (judge_score -1) and counted in the summary
        score = sum(res.value[k] for k in RUBRIC) / len(RUBRIC)
        record.scores["judge"] = score
        record.judge_rationale = res.value["rationale"]
        if self.cfg.min_score is not None and score < self.cfg.min_score:
            return f"judge score {score:.1f} below minimum {self.cfg.min_score}"
        return None
